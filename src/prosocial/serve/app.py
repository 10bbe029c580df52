"""The HTTP service: safety verdicts, agent replies, and an OpenAI-compatible guard proxy in front of any LLM.

`create_app(settings)` builds a FastAPI app whose lifespan loads the detector in the background (so
/healthz answers at once and /readyz tells when models are loaded), runs all model work through one
micro-batching thread, and on shutdown lets in-flight requests and escalation deliveries finish.
"""

import asyncio
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prosocial.canary.base import SafetyDetector, Verdict, load_detector
from prosocial.canary.language import UNSUPPORTED_ROT, LanguageGuard
from prosocial.canary.norms import NormedDetector
from prosocial.data.context import check_context
from prosocial.data.danger import handover_for
from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.errors import ModelError
from prosocial.lm.base import UpstreamError
from prosocial.serve.batcher import CLIENT, MicroBatcher, QueueFull
from prosocial.serve.events import EscalationCallback, EscalationNotifier, escalation_event
from prosocial.serve.inputs import InputJudgement, VerdictCache, judge_messages
from prosocial.serve.metrics import UNMATCHED_ROUTE, Metrics, method_label
from prosocial.serve.outputs import Judge, ModeratedStream, Replace, moderate_completion, worst
from prosocial.serve.proxy import (
    GENERIC_ROT,
    REQUEST_ID,
    ProxyError,
    Upstream,
    error_ending,
    escalation_completion,
    escalation_stream,
    guided_messages,
    message_text,
    strict_json_loads,
    unavailable,
    upstream_failure,
)
from prosocial.serve.settings import ServeSettings
from prosocial.steer.agent import ProsocialAgent
from prosocial.steer.moderation import ReplyModerator, ReplyVerdict, replacement, reply_contexts, worst_labels

log = logging.getLogger(__name__)

VERDICT_HEADER = "X-Prosocial-Safety-Label"
COARSE_HEADER = "X-Prosocial-Coarse"
DANGER_HEADER = "X-Prosocial-Danger"
ACTION_HEADER = "X-Prosocial-Action"
#: the RoTs a guided request was steered with, as a JSON list (ASCII-escaped, so any text fits a header)
ROTS_HEADER = "X-Prosocial-Rots"
#: which text of a chat request decided its verdict: "dialogue" (the paper's view) or where the other text is
DECIDED_BY_HEADER = "X-Prosocial-Decided-By"
#: the upstream reply's verdict (non-streamed answers; a stream carries it in its last event's `prosocial.output`)
OUTPUT_COARSE_HEADER = "X-Prosocial-Output-Coarse"
OUTPUT_ACTION_HEADER = "X-Prosocial-Output-Action"
REQUEST_ID_HEADER = "X-Request-ID"
#: every response: never cached (verdicts are per conversation), never content-sniffed
SECURITY_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
#: a client's own request id is reused only when it is this tame (it is echoed into headers and logs)
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
AGENT_DISABLED = ("the agent is not enabled: start the service with a generator, e.g. `prosocial serve --generator "
                  "prost-mini` (setting `generator`)")


class ReplyOut(BaseModel):
    safety_label: SafetyLabel = Field(description="The reply's label, judged as the latest turn of its dialogue.")
    coarse: Coarse
    danger: str | None = None
    sides_with: bool = Field(description="The reply agrees with, encourages or reassures about a flagged turn.")
    reason: str | None = Field(description="sides_with, needs_intervention or needs_caution, the first acted on.")
    action: str = Field(description="What the guard proxy does with it: pass, replace or refuse (`output_actions`).")


class VerdictOut(BaseModel):
    safety_label: SafetyLabel = Field(description="The five-level ProsocialDialog label.")
    coarse: Coarse = Field(description="casual / needs caution / needs intervention.")
    scores: dict[str, float] = Field(description="A score per label (detector-dependent).")
    rots: list[str] = Field(description="Rules-of-thumb for non-casual contexts (empty for detectors without).")
    norm: str | None = Field(None, description="The id of the user norm (`norms` setting) that decided the verdict.")
    danger: str | None = Field(None, description="The danger category (self_harm, medical, poisoning, violence, "
                               "threat_to_others, hazard, endangerment; dangerous acts: impaired_driving, "
                               "chemical_mixing, unsafe_medicine, unsafe_childcare, risky_act), if any.")
    language: str | None = Field(None, description="The judged text's language, ISO 639-1 (None: too little text "
                                 "to tell).")
    decoded: str | None = Field(None, description="The encodings undone before judging (base64, hex, rot13), if any.")
    language_policy: str | None = Field(None, description="flag, pass or judge when the models could not read the "
                                        "text (`unsupported_language` setting); None when they could.")
    rationale: str | None = Field(None, description="Why, in a sentence, where the detector says (an LLM judge).")
    reply: ReplyOut | None = Field(None, description="The judgement of the context's reply, when one was sent.")


class SafetyResponse(BaseModel):
    results: list[VerdictOut]


class RespondResponse(BaseModel):
    response: str = Field(description="The agent's reply (the fixed hand-over reply when escalated).")
    safety_label: SafetyLabel
    coarse: Coarse
    rots: list[str]
    escalated: bool = Field(description="True when the conversation was handed over to a person.")
    norm: str | None = Field(None, description="The id of the user norm that decided the verdict.")
    danger: str | None = Field(None, description="The danger category that chose the hand-over or warning, if any.")


class ErrorBody(BaseModel):
    error: dict[str, Any] = Field(
        description='OpenAI\'s shape: {"message": …, "type": …, "param": the field at fault or null, '
        '"code": HTTP status}.'
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "The request cannot be judged (e.g. no user message).",
        401: "Missing or wrong API key.",
        413: "The request body is larger than max_body_bytes.",
        422: "The body is not valid JSON or does not fit the schema (`param` names the field).",
        429: "The detector's queue is full (max_queue_contexts); retry after Retry-After seconds.",
        503: "The detector (or the agent's generator) is not available, or the service is shutting down.",
    }.items()
}
RESPOND_ERRORS: dict[int | str, dict[str, Any]] = ERRORS | {
    501: {"model": ErrorBody, "description": "The agent is not enabled: the service runs without a `generator`."},
}
PROXY_ERRORS: dict[int | str, dict[str, Any]] = ERRORS | {
    502: {"model": ErrorBody, "description": "The upstream LLM is down, answered something unusable or too large, "
          "or refused the proxy's upstream_api_key."},
    504: {"model": ErrorBody, "description": "The upstream LLM did not answer within upstream_deadline."},
}


class SafeJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped, so any text (even a lone surrogate a client smuggled in) encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None, param: str | None = None
) -> JSONResponse:
    return SafeJSONResponse(ProxyError(status, message, kind, param).body(), status_code=status, headers=headers)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path, ("body", "contexts", 0, 1) -> "contexts[0][1]", without the
    names pydantic gives union members ("list[ContentPart]", "function-after[…]")."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}" if path else part
    return path


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """The deepest problem (in a union, the member that got furthest), named by its field, without echoing the
    input (it can be huge, or not encodable)."""
    errors = exc.errors()
    first = max(errors, key=lambda e: len(e.get("loc", ()))) if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        message = f"the body is not valid JSON: {first.get('ctx', {}).get('error', 'decode error')}"
        return error_response(422, message[:500], "invalid_request_error")
    param = _field_path(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    text = f"{param or 'body'}: {first.get('msg', 'invalid value')}{more}"
    return error_response(422, text[:500], "invalid_request_error", param=param or None)


class _TooLarge(HTTPException):
    pass


class _HangUp:
    """Notices a client that disconnects before its answer is complete and cancels the request's task, so work
    queued for it (a batch slot, an upstream call) is dropped rather than done for nobody.

    Once the body is read the only message left is http.disconnect, so one background receive() waits for it;
    the app's own later receive() calls (a streaming response listens for the disconnect) share its result.
    """

    def __init__(self, receive: Receive):
        self.receive = receive
        self.task = asyncio.current_task()
        self.waiter: asyncio.Task[Message] | None = None
        self.gone = False
        self.finished = False  # the answer is complete: a disconnect from now on is the normal end

    async def next_message(self) -> Message:
        if self.waiter is not None:
            return await asyncio.shield(self.waiter)
        return await self.receive()

    def body_read(self) -> None:
        self.waiter = asyncio.get_running_loop().create_task(self.receive())
        self.waiter.add_done_callback(self._check)

    def _check(self, waiter: asyncio.Task[Message]) -> None:
        if self.finished or waiter.cancelled() or waiter.exception() is not None or self.task is None:
            return
        if waiter.result()["type"] == "http.disconnect":
            self.gone = True
            self.task.cancel()

    def close(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.cancel()


class _Guard:
    """ASGI middleware: gives each request an id, refuses bodies over the limit (even chunked ones), adds the
    security headers, records metrics per route, cancels a request whose client hung up (`_HangUp`), and answers
    whatever happens in JSON: a 503 for a request cut off by the shutdown grace (an event stream already under
    way ends with a 503 error event and [DONE] instead), a generic 500 (details in the log) for a bug."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = streaming = False
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = given if CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        limit = self.max_body_bytes
        too_large = f"the request body is larger than the limit of {limit:,} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        received = 0
        hang_up = _HangUp(receive)

        async def limited_receive() -> Message:
            nonlocal received
            message = await hang_up.next_message()
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge(413, too_large)
            if hang_up.waiter is None and message["type"] == "http.request" and not message.get("more_body"):
                hang_up.body_read()
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status, response_started, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                streaming = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                                for k, v in message.get("headers", []))
                message["headers"] = [
                    *message.get("headers", []), *SECURITY_HEADERS, (b"x-request-id", request_id.encode())
                ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                hang_up.finished = True
            await send(message)

        try:
            if length is not None and length.isdigit() and int(length) > limit:
                await error_response(413, too_large, "request_too_large")(scope, receive, recording_send)
            else:
                await self.app(scope, limited_receive, recording_send)
        except asyncio.CancelledError:
            if hang_up.gone:  # nobody is left to answer
                status = 499
            elif not response_started:  # the shutdown grace ran out while this request was still running
                retry = "the service is shutting down; retry the request"
                await error_response(503, retry, "service_unavailable")(scope, receive, recording_send)
            elif streaming and not hang_up.finished:
                ending = error_ending(ProxyError(503, "the service is shutting down; the answer was cut off",
                                                 "service_unavailable"))
                await recording_send({"type": "http.response.body", "body": ending, "more_body": False})
            else:
                raise
        except Exception:
            if response_started:
                raise
            log.exception("request %s failed", request_id)
            oops = f"internal error (request id {request_id})"
            await error_response(500, oops, "internal_error")(scope, receive, recording_send)
        finally:
            hang_up.close()
            REQUEST_ID.reset(token)
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            self.metrics.requests.labels(method_label(scope["method"]), route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class _Service:
    """What the routes share: settings, models, the batcher, the upstream, metrics and readiness."""

    def __init__(
        self,
        settings: ServeSettings,
        detector: SafetyDetector | None,
        agent: ProsocialAgent | None,
        callback: EscalationCallback | None,
    ):
        self.settings = settings
        self.metrics = Metrics()
        self.detector = detector
        self.agent = agent
        self.callback = callback
        self.batcher: MicroBatcher | None = None
        self.moderator: ReplyModerator | None = None
        #: label-only verdicts of single texts of chat requests (a client resends its history every turn)
        self.cache = VerdictCache()
        self.upstream: Upstream | None = None
        self.notifier: EscalationNotifier | None = None
        self.ready = False
        self.detector_error: str | None = None
        self.agent_error: str | None = None
        self._warmup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        self.notifier = EscalationNotifier(
            s.escalation_webhook, self.callback, on_failure=self.metrics.upstream_errors.labels("webhook").inc
        )
        if s.upstream_url:
            self.upstream = Upstream(
                s.upstream_url, s.upstream_api_key, s.upstream_timeout, s.upstream_connect_timeout,
                deadline=s.upstream_deadline, max_bytes=s.max_upstream_bytes,
                max_event_bytes=s.max_upstream_event_bytes,
            )
        try:
            if self.detector is None and s.judge:
                self.detector = _judged_detector(s, self.metrics)
            elif self.detector is None:
                self.detector = load_detector(s.detector, **(_latency_settings(s.detector) | s.detector_settings))
            if s.norms:
                self.detector = NormedDetector(self.detector, s.norms, matcher=s.norms_matcher)
            self.detector = LanguageGuard(self.detector, s.unsupported_language, languages=s.detector_languages)
        except Exception as exc:  # a bad configuration leaves the service up and /readyz saying why
            self.detector_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot build detector %r: %s", s.detector, exc)
            return
        self.batcher = MicroBatcher(
            self.detector, s.batch_size, s.batch_wait_ms, self.metrics.observe_batch, s.max_queue_contexts
        )
        self.batcher.start()
        self._warmup = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        """Load weights (detectors load lazily on first use) and the agent, off the event loop."""
        assert self.batcher is not None and self.detector is not None
        detector = self.detector
        try:  # a norms file that fails to load leaves the service failed (readyz), never running without it
            await self.batcher.run_in_model_thread(detector.warm_up)  # a norms file is read and checked here too
        except Exception as exc:
            self.detector_error = f"{type(exc).__name__}: {exc}"
            log.error("the detector failed to load: %s", self.detector_error)
            return
        if self.agent is None and self.settings.generator:
            try:
                self.agent = await self.batcher.run_in_model_thread(self._build_agent)
            except Exception as exc:  # /v1/safety and the proxy still work without the agent
                self.agent_error = f"{type(exc).__name__}: {exc}"
                log.error("the agent's generator failed to load: %s", self.agent_error)
                return
        if self.settings.moderate_output:
            try:
                self.moderator = await self.batcher.run_in_model_thread(self._build_moderator)
            except Exception as exc:  # a guard that cannot judge replies must not relay them unjudged
                self.detector_error = f"the reply moderator failed to load: {type(exc).__name__}: {exc}"
                log.error("%s", self.detector_error)
                return
        self.ready = True

    def _build_moderator(self) -> ReplyModerator:
        """The reply moderator on the service's detector and the agent's agreement judge (or the shipped one)."""
        from prosocial.prost.agreement import AgreementJudge

        guard = getattr(self.agent, "guard", None)
        judge = guard.judge if guard is not None and guard.judge is not None else AgreementJudge.load()
        judge.agrees(["hello"], ["hi"])  # load its encoder now, not on the first reply
        assert self.detector is not None
        return ReplyModerator(self.detector, judge, self.settings.output_actions)

    async def judge_replies(
        self, context: list[str], verdict: Verdict, texts: dict[int, str]
    ) -> dict[int, ReplyVerdict]:
        """The moderator's verdict on each reply text (by choice index): the detector's labels through the
        micro-batcher (shared with other requests), the agreement judge in the model thread when the turn was
        flagged, the rules on the event loop otherwise (they are a few regular expressions)."""
        moderator = self.moderator
        texts = {i: text for i, text in texts.items() if text.strip()}  # a blank reply (tool calls only) says nothing
        if moderator is None or not texts:
            return {}
        indices = sorted(texts)
        replies = [texts[i] for i in indices]
        contexts = [context] * len(indices)
        flagged = [not verdict.safety_label.is_casual] * len(indices)
        judged_contexts, owners = reply_contexts(contexts, replies)
        labels = worst_labels(await self.predict(judged_contexts, with_rots=False), owners, len(replies))
        if any(flagged):
            judged: list[ReplyVerdict] = await self.require_batcher().run_in_model_thread(  # type: ignore[assignment]
                lambda: moderator.decide(contexts, replies, flagged, labels)
            )
        else:
            judged = moderator.decide(contexts, replies, flagged, labels)
        for reply in judged:
            self.metrics.verdicts.labels("/v1/chat/completions:output", reply.verdict.safety_label.value).inc()
        return dict(zip(indices, judged, strict=True))

    async def replacement_for(self, context: list[str], verdict: Verdict) -> str:
        """A reply in place of a bad one: the agent's, when there is one, else one built from the input's RoTs."""
        agent = self.agent
        if agent is not None and self.batcher is not None:
            try:
                turn = await self.batcher.run_in_model_thread(lambda: agent.respond(context))
                return turn.response
            except Exception as exc:  # the fixed replacement is always there
                log.warning("request %s: the agent could not write a replacement: %s", REQUEST_ID.get(), exc)
        return replacement(verdict)

    def _build_agent(self) -> ProsocialAgent:
        """The agent on the configured generator; its hand-over events go through our notifier, not its own."""
        from prosocial.prost.base import load_generator

        s = self.settings
        generator = load_generator(s.generator, **s.generator_settings)
        agent = ProsocialAgent(self.detector, generator, handover=s.escalation_reply, region=s.region)
        agent.warm_up(generator=False, detector=False)  # the reply judge; the detector is warm, the LM may be remote
        return agent

    async def stop(self) -> None:
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.notifier is not None:
            await self.notifier.aclose()

    def require_batcher(self) -> MicroBatcher:
        if self.batcher is None or self.detector_error:
            raise unavailable("the detector", self.detector_error)
        return self.batcher

    async def predict(self, contexts: list[list[str]], with_rots: bool = True) -> list[Verdict]:
        """Verdicts through the micro-batcher (fair between clients, see `_KeyedRoute`); a full queue is a 429 to
        come back later, a model that cannot run a 503, not a crash."""
        try:
            return await self.require_batcher().predict(contexts, with_rots)
        except QueueFull as exc:
            log.warning("request %s: %s", REQUEST_ID.get(), exc)
            busy = "the service is busy (its detector queue is full); retry in a moment"
            raise ProxyError(429, busy, "rate_limit_error", headers={"Retry-After": "1"}) from None
        except ModelError as exc:
            raise unavailable("the detector", exc) from None

    @property
    def checks_upstream(self) -> bool:
        """Whether /readyz asks the upstream: as set, else whenever there is one."""
        wanted = self.settings.ready_checks_upstream
        return self.upstream is not None and (wanted is None or wanted)

    @property
    def metrics_need_key(self) -> bool:
        return bool(self.settings.api_keys) and not self.settings.metrics_public

    def escalate(self, route: str, context: list[str], verdict: Verdict) -> None:
        self.metrics.escalations.inc()
        assert self.notifier is not None
        self.notifier.notify(escalation_event(route, context, verdict))


#: settings a latency-bound service gives a detector that takes them, unless the configuration says otherwise:
#: Canary-mini's RoT writer is off (~0.25 s a context: always on, /v1/safety at 20 req/s of half-problematic
#: traffic had a 21.5 s p99 on 2 cores, and writing only for one-context batches still left chat at 24 s); the
#: RoT bank's nearest rule that fits the dialogue, or the general rule, gives every flagged verdict its reason
LATENCY_SETTINGS = {"rot_writer": False}


def _judged_detector(s: ServeSettings, metrics: Metrics) -> SafetyDetector:
    """Canary-mini (the `detector_settings` are its own) with the LLM judge of `s.judge` behind it: one try per
    context within `judge_timeout`, then Canary-mini's verdict stands (counted in `prosocial_judge_contexts`)."""
    if s.detector != "canary-mini":
        raise ModelError(f"judge: the first stage is Canary-mini, so detector must be canary-mini, not {s.detector!r} "
                         "(a folder of its own goes in detector_settings.model_dir)")
    base_url, model, api_key = s.judge_endpoint()
    judge = {"lm": "openai", "model": model, "base_url": base_url, "api_key": api_key, "timeout": s.judge_timeout,
             "adapter": s.judge_adapter, "lm_settings": {"max_retries": 0}, "policy": list(s.norms)}
    settings = {"observer": metrics.observe_judge} | s.judge_settings
    return load_detector("canary-judge", judge=judge, fast_settings=_latency_settings("canary-mini")
                         | s.detector_settings, **settings)


def _latency_settings(name: str) -> dict[str, Any]:
    import inspect

    from prosocial.canary.base import DETECTORS

    try:
        accepted = inspect.signature(DETECTORS.get(name)).parameters
    except Exception:  # an unknown name or a model folder: load_detector reports it
        return {}
    return {k: v for k, v in LATENCY_SETTINGS.items() if k in accepted}


def _encodable(text: str) -> str:
    """JSON's \\ud800-style escapes can smuggle lone surrogates in, which no model, LM or webhook can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it contains a lone surrogate)") from None
    return text


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


def _authorize(request: Request) -> int | None:
    """The index of the API key the request carries (None when the service has none); a 401 without one."""
    keys = request.app.state.service.settings.api_keys
    if not keys:
        return None
    given = request.headers.get("x-api-key") or ""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = token.strip()
    matches = [secrets.compare_digest(given.encode(), k.encode()) for k in keys]  # every key compared, always
    if not any(matches):
        raise HTTPException(401, "a valid API key is required (Authorization: Bearer KEY or X-API-Key: KEY)")
    return matches.index(True)


def _client_of(request: Request, key: int | None) -> str:
    """Who shares the detector fairly with whom: the API key when the service checks keys (a client cannot
    invent more of them), else the peer address (behind a reverse proxy, all its clients are one)."""
    if key is not None:
        return f"key {key}"
    return f"peer {request.client.host if request.client else '-'}"


class _KeyedRoute(APIRoute):
    """An API route that checks the key before reading the body (so nobody learns anything without one), names
    the client for the batcher's fair sharing (`CLIENT`), and reads the body as strict JSON (NaN and Infinity
    are refused like any other invalid JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            token = CLIENT.set(_client_of(request, _authorize(request)))
            try:
                return await handler(_StrictJSONRequest(request.scope, request.receive))
            finally:
                CLIENT.reset(token)

        return keyed


def _checked(context: list[str], where: str) -> list[str]:
    try:
        return check_context(context, where)
    except ValueError as exc:
        raise ProxyError(400, str(exc), "invalid_request_error") from None


def _verdict_headers(verdict: Verdict, action: str, guidance: list[str] | None = None) -> dict[str, str]:
    headers = {VERDICT_HEADER: verdict.safety_label.value, COARSE_HEADER: verdict.coarse.value, ACTION_HEADER: action}
    if verdict.danger:
        headers[DANGER_HEADER] = verdict.danger
    if guidance:
        headers[ROTS_HEADER] = json.dumps(guidance)
    return headers


def _output_headers(outputs: list[dict[str, Any]]) -> dict[str, str]:
    top = worst(outputs)
    return {OUTPUT_COARSE_HEADER: top["coarse"], OUTPUT_ACTION_HEADER: top["action"]} if top else {}


def create_app(
    settings: ServeSettings | None = None,
    detector: SafetyDetector | None = None,
    agent: ProsocialAgent | None = None,
    on_escalation: EscalationCallback | None = None,
) -> FastAPI:
    """The service. `detector` and `agent` replace the configured ones (embedding, tests); `on_escalation` is
    called with every escalation event, beside the configured webhook."""
    s = settings or ServeSettings()
    service = _Service(s, detector, agent, on_escalation)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="prosocial",
        summary="ProsocialDialog safety verdicts with rules-of-thumb, prosocial replies, and a guard proxy for LLMs.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.service = service
    app.add_middleware(_Guard, max_body_bytes=s.max_body_bytes, metrics=service.metrics)

    @app.exception_handler(ProxyError)
    async def _proxy_error(_: Request, exc: ProxyError) -> JSONResponse:
        if exc.kind.startswith("upstream"):
            service.metrics.upstream_errors.labels(exc.kind).inc()
        return SafeJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = {413: "request_too_large", 401: "authentication_error"}.get(exc.status_code, "invalid_request_error")
        return error_response(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    Utterance = Annotated[str, Field(max_length=s.max_utterance_chars), AfterValidator(_encodable)]
    Context = Annotated[list[Utterance], Field(min_length=1, max_length=s.max_turns)]

    class SafetyRequest(BaseModel):
        contexts: Annotated[list[Context], Field(min_length=1, max_length=s.max_batch)] = Field(
            description="Dialogue contexts, each a list of utterances, oldest first; the last is the user's."
        )
        with_rots: StrictBool = Field(True, description="False gives labels and scores only (faster).")
        replies: Annotated[list[Utterance | None], Field(max_length=s.max_batch)] | None = Field(
            None, description="A reply to judge per context (null: none), as the guard proxy judges an LLM's answer; "
            "each result then has `reply`.",
        )

        @model_validator(mode="after")
        def _one_reply_per_context(self) -> "SafetyRequest":
            if self.replies is not None and len(self.replies) != len(self.contexts):
                raise ValueError(f"replies: {len(self.replies)} replies for {len(self.contexts)} contexts")
            return self

    class RespondRequest(BaseModel):
        context: Context = Field(description="The dialogue so far, oldest utterance first; the last is the user's.")

    class ContentPart(BaseModel):
        """One part of a multimodal message; only text parts are read, the others pass to the upstream."""

        model_config = ConfigDict(extra="allow")
        type: str
        text: Utterance | None = None

    class ChatMessage(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str
        content: Utterance | Annotated[list[ContentPart], Field(max_length=s.max_turns)] | None = None

        @model_validator(mode="after")
        def _text_fits(self) -> "ChatMessage":
            if isinstance(self.content, list):
                text = message_text([part.model_dump() for part in self.content])
                if len(text) > s.max_utterance_chars:
                    raise ValueError(f"the text parts together exceed {s.max_utterance_chars} characters")
            return self

    class ChatCompletionRequest(BaseModel):
        """An OpenAI chat completion request; fields besides these pass to the upstream unchanged."""

        model_config = ConfigDict(extra="allow")
        model: Annotated[str, AfterValidator(_encodable)]
        messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=s.max_turns)]
        stream: StrictBool = False

    # The key is checked by `_KeyedRoute` before the body is read; these only document it in the OpenAPI schema.
    bearer = HTTPBearer(auto_error=False, description="Bearer API key (when the service has api_keys).")
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Alternative to the bearer key.")
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(bearer), Depends(header_key)], route_class=_KeyedRoute)

    @v1.post("/safety", response_model=SafetyResponse, response_model_exclude_unset=True, responses=ERRORS,
             tags=["safety"])
    async def safety(body: SafetyRequest) -> SafetyResponse:
        """Judge each context: the five-level label, its coarse class, a score per label, and rules-of-thumb."""
        contexts = [_checked(c, f"contexts[{i}]") for i, c in enumerate(body.contexts)]
        verdicts = await service.predict(contexts, body.with_rots)
        for v in verdicts:
            service.metrics.verdicts.labels("/v1/safety", v.safety_label.value).inc()
        results = [VerdictOut(**v.to_dict()) for v in verdicts]
        # a blank reply says nothing to judge (and a detector refuses an empty judged turn): it gets no judgement
        asked = [(i, reply) for i, reply in enumerate(body.replies or []) if reply is not None and reply.strip()]
        if asked and service.moderator is None:
            raise ProxyError(501, "judging replies is off: set `moderate_output = true`", "not_implemented")
        # at once, so the replies' labels share detector batches
        judged = await asyncio.gather(*(service.judge_replies(contexts[i], verdicts[i], {0: r}) for i, r in asked))
        for (i, _), verdict in zip(asked, judged, strict=True):
            results[i].reply = ReplyOut(**verdict[0].to_dict())
        return SafetyResponse(results=results)

    @v1.post("/respond", response_model=RespondResponse, responses=RESPOND_ERRORS, tags=["agent"])
    async def respond(body: RespondRequest) -> RespondResponse:
        """The prosocial agent's reply, with its safety label and RoTs; needs intervention hands over to a person
        (a fixed reply, `escalated: true`, and an escalation event)."""
        context = _checked(body.context, "context")
        batcher = service.require_batcher()
        if not s.generator and service.agent is None:
            raise ProxyError(501, AGENT_DISABLED, "not_enabled")
        if service.agent is None:
            raise unavailable("the agent", service.agent_error or service.detector_error or "still loading")
        agent = service.agent
        try:
            turn = await batcher.run_in_model_thread(lambda: agent.respond(context))
        except UpstreamError as exc:  # the generator's LM server failed (an LM behind the `steered` generator)
            raise upstream_failure(502, str(exc), what="the agent's language model") from None
        except ModelError as exc:
            raise unavailable("the agent", exc) from None
        result = turn.to_dict()
        out = RespondResponse(**{k: result[k] for k in RespondResponse.model_fields})
        service.metrics.verdicts.labels("/v1/respond", out.safety_label.value).inc()
        if out.escalated:
            verdict = Verdict(out.safety_label, rots=out.rots, danger=out.danger)
            service.escalate("/v1/respond", context, verdict)
        return out

    @v1.post(
        "/chat/completions",
        responses=PROXY_ERRORS | {200: {"description": "The upstream's completion (JSON, or SSE when streaming), "
                                                         "with the verdict in `prosocial` and X-Prosocial-* headers."}},
        tags=["proxy"],
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """OpenAI-compatible guard proxy. Casual conversations go to the upstream unchanged; needs caution adds the
        detector's RoTs (a generic rule where it has none) as a system message (the paper's Pr prompt), named in
        `prosocial.guidance` and the X-Prosocial-Rots header; needs intervention never reaches the upstream
        and gets the hand-over reply plus an escalation event. The verdict is in the response's `prosocial`
        field (first chunk when the hand-over reply streams) and the X-Prosocial-Safety-Label, X-Prosocial-Coarse
        and X-Prosocial-Action headers."""
        messages = [m.model_dump(exclude_unset=True) for m in body.messages]
        judgement = await judge_messages(
            messages, service.predict, service.cache, s.judge_system, s.max_judged_windows
        )
        verdict, context = judgement.verdict, judgement.context
        service.metrics.verdicts.labels("/v1/chat/completions", verdict.safety_label.value).inc()
        if verdict.coarse is Coarse.NEEDS_INTERVENTION:
            service.escalate("/v1/chat/completions", context, verdict)
            headers = _verdict_headers(verdict, "escalated") | {DECIDED_BY_HEADER: judgement.decided_by}
            reply = s.escalation_reply or handover_for(verdict.danger, s.region)
            extra = {"input": judgement.to_dict()}
            if body.stream:
                return StreamingResponse(
                    escalation_stream(body.model, reply, verdict, extra), media_type="text/event-stream",
                    headers=headers,
                )
            return JSONResponse(escalation_completion(body.model, reply, verdict, extra), headers=headers)
        if service.upstream is None:
            raise ProxyError(503, "no upstream LLM is configured (`upstream_url`)", "service_unavailable")
        raw = await request.body()
        action, guidance = "forwarded", []
        if verdict.coarse is Coarse.NEEDS_CAUTION:  # every flagged request is guided, by a generic rule at least
            # the user-facing reason of an unreadable text is no instruction for the LLM; its careful rule is
            guidance = [r for r in verdict.rots if r.strip() and r != UNSUPPORTED_ROT] or [GENERIC_ROT]
            payload = strict_json_loads(raw)
            payload["messages"] = guided_messages(payload["messages"], context, guidance)
            raw = json.dumps(payload).encode()
            action = "guided"
        headers = _verdict_headers(verdict, action, guidance) | {DECIDED_BY_HEADER: judgement.decided_by}
        auth = request.headers.get("authorization") if not s.api_keys else None
        judge, replace = _output_judges(judgement)
        if body.stream:
            chunks = await service.upstream.stream(raw, auth)
            if service.moderator is not None:
                report = verdict.to_dict() | {"action": action, "guidance": guidance, "input": judgement.to_dict()}
                chunks = ModeratedStream(chunks, judge, replace, s.stream_min_chars, s.stream_window_chars, report)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        data = await service.upstream.complete(raw, auth)
        outputs = await moderate_completion(data, judge, replace) if service.moderator is not None else []
        data["prosocial"] = verdict.to_dict() | {
            "action": action, "guidance": guidance, "input": judgement.to_dict(), "output": outputs,
        }
        headers |= _output_headers(outputs)
        # ASCII-escaped, so whatever text the upstream sent (even lone surrogates) re-encodes safely.
        return Response(json.dumps(data).encode(), media_type="application/json", headers=headers)

    def _output_judges(judgement: InputJudgement) -> tuple[Judge, Replace]:
        async def judge(texts: dict[int, str]) -> dict[int, ReplyVerdict]:
            return await service.judge_replies(judgement.context, judgement.verdict, texts)

        async def replace() -> str:
            return await service.replacement_for(judgement.context, judgement.verdict)

        return judge, replace

    @v1.get("/models", responses=PROXY_ERRORS, tags=["proxy"])
    async def models() -> dict[str, Any]:
        """OpenAI's model list: the configured `models`, else the upstream's own list."""
        if s.models:
            return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "prosocial"} for m in s.models]}
        if service.upstream is None:
            raise ProxyError(503, "no upstream LLM is configured (`upstream_url`)", "service_unavailable")
        return await service.upstream.models()

    app.include_router(v1)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "Models are still loading or failed."}})
    async def readyz() -> JSONResponse:
        """Models are loaded and requests will be answered without a loading delay, and the upstream LLM, if there
        is one, answers (unless `ready_checks_upstream` is false), so a load balancer can drain this instance
        while the proxy could only say 502. `agent` says whether /v1/respond is enabled."""
        upstream = service.upstream if service.checks_upstream else None
        if service.ready and upstream is not None and not await upstream.alive():
            return JSONResponse({"status": "upstream unavailable", "error": "the upstream LLM does not answer"}, 503)
        if service.ready:
            name = s.detector if detector is None else detector.name
            return JSONResponse({"status": "ready", "detector": name, "agent": service.agent is not None})
        error = service.detector_error or service.agent_error
        return JSONResponse({"status": "failed" if error else "loading", "error": error}, status_code=503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse, responses={401: ERRORS[401]})
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics: requests, latencies, safety labels, escalations, upstream errors, batch sizes. With
        `api_keys`, a key is needed here too (they tell how the service is used), unless `metrics_public`."""
        if service.metrics_need_key:
            _authorize(request)
        return PlainTextResponse(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
