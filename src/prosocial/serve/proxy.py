"""The guard proxy's parts: reading a chat request as a dialogue context, injecting RoT guidance, talking to
the upstream OpenAI-compatible server, and the hand-over reply that replaces it when a person is needed.

Failures of the upstream become `ProxyError`s with the status a client should see: 502 when it is down, answers
garbage or more than the byte caps, or refuses the proxy's own credentials; 504 when it is slower than the
deadline; its own status, with a fixed message, when it rejected the client's request (400, 404, 413, 422, 429).
What the upstream said and where it lives are logged with the request id, never sent to the client: an
upstream's error body can hold a traceback, an internal address or a key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import httpx

from prosocial.canary.base import Verdict
from prosocial.lm.prompts import chat_messages

log = logging.getLogger(__name__)

DIALOGUE_ROLES = {"user", "assistant"}
#: The guidance for a flagged request whose detector gave no RoT (one without RoTs, such as the keyword baseline):
#: a flagged request is never forwarded unguided.
GENERIC_ROT = "It's important to answer with care and not to encourage anything that could hurt someone."
#: the id of the request being served (set by the service's middleware), for logs and error messages
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
#: what a client is told when the upstream rejected its request: the upstream's own words go to the log only
UPSTREAM_REJECTIONS = {
    400: "the upstream LLM rejected the request as invalid (check its parameters)",
    404: "the upstream LLM does not have the requested model",
    413: "the request is too large for the upstream LLM",
    422: "the upstream LLM could not process the request (check its parameters)",
    429: "the upstream LLM is over its rate limit; retry later",
}
#: said instead of a 401 / 403 when the client's own Authorization was passed on (no `upstream_api_key`)
CLIENT_CREDENTIALS_REFUSED = "the upstream LLM did not accept the request's credentials"
#: how much of an upstream's failure answer is read, for the log
ERROR_LOG_BYTES = 2000
#: seconds one readiness probe of the upstream is trusted, so /readyz (unauthenticated) never multiplies calls
READY_PROBE_SECONDS = 2.0


class ProxyError(Exception):
    """An error to answer in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "upstream_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.status}}


def strict_json_loads(data: bytes | str) -> Any:
    """`json.loads` without NaN / Infinity (Python's extensions, not JSON) and without numbers too large for a
    float (1e400 would become Infinity): none of them could be written back as JSON to the upstream or client."""

    def reject(constant: str) -> Any:
        raise json.JSONDecodeError(f"{constant} is not valid JSON", constant, 0)

    def finite(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise json.JSONDecodeError(f"the number {text[:20]} is too large", text, 0)
        return value

    try:
        return json.loads(data, parse_constant=reject, parse_float=finite)
    except RecursionError:  # nesting deeper than Python's stack: invalid for us like any other JSON we cannot take
        raise json.JSONDecodeError("the JSON is nested too deeply", "", 0) from None


def upstream_failure(
    status: int, detail: str, kind: str = "upstream_error", what: str = "the upstream LLM"
) -> ProxyError:
    """Log what went wrong upstream; tell the client only what it can act on, and the id to quote."""
    log.warning("request %s: %s failed: %s", REQUEST_ID.get(), what, detail)
    outcome = {504: "did not answer in time"}.get(status, "failed")
    return ProxyError(status, f"{what} {outcome} (request id {REQUEST_ID.get()})", kind)


def unavailable(what: str, detail: object) -> ProxyError:
    """A 503 for a model that cannot run; the reason (paths, exceptions) goes to the log and /readyz only."""
    log.error("request %s: %s is not available: %s", REQUEST_ID.get(), what, detail)
    message = f"{what} is not available (request id {REQUEST_ID.get()}; see /readyz)"
    return ProxyError(503, message, "service_unavailable")


def message_text(content: Any) -> str:
    """A message's text: a string, or the text of a content list's parts (`text`, `input_text`, any with text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def dialogue_context(messages: list[dict[str, Any]]) -> list[str]:
    """User and assistant turns with text, oldest first, up to the last user turn (the one judged).

    System and tool messages are the application's, not the dialogue's, so the detector does not read them.
    """
    turns = [(m.get("role"), message_text(m.get("content")).strip()) for m in messages]
    turns = [(role, text) for role, text in turns if role in DIALOGUE_ROLES and text]
    last_user = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=-1)
    if last_user < 0:
        raise ProxyError(400, "messages: no user message with text to judge", "invalid_request_error")
    return [text for _, text in turns[: last_user + 1]]


def guided_messages(messages: list[dict[str, Any]], context: list[str], rots: list[str]) -> list[dict[str, Any]]:
    """The request's messages with the paper's Pr guidance as a system message after any leading system ones.

    The guidance text is the one `lm.prompts.chat_messages` builds; it goes after the application's own
    system prompt (which many chat templates require first) and before the dialogue.
    """
    guidance = chat_messages(context, rots)[0]
    lead = next((i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")), len(messages))
    return [*messages[:lead], guidance, *messages[lead:]]


def escalation_completion(
    model: str, reply: str, verdict: Verdict, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A complete chat.completion carrying the hand-over reply, as an upstream would have answered."""
    return {
        "id": f"chatcmpl-prosocial-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "prosocial": verdict.to_dict() | {"action": "escalated", "guidance": []} | (extra or {}),
    }


async def escalation_stream(
    model: str, reply: str, verdict: Verdict, extra: dict[str, Any] | None = None
) -> AsyncIterator[bytes]:
    """The hand-over reply as server-sent chat.completion.chunk events, for clients that asked to stream."""
    base = {"id": f"chatcmpl-prosocial-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    deltas = [({"role": "assistant", "content": reply}, None), ({}, "stop")]
    for i, (delta, finish) in enumerate(deltas):
        chunk = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if i == 0:
            chunk["prosocial"] = verdict.to_dict() | {"action": "escalated", "guidance": []} | (extra or {})
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
    yield b"data: [DONE]\n\n"


class Upstream:
    """The upstream OpenAI-compatible server at `base_url` (with its version, e.g. http://host:8080/v1).

    `timeout` bounds each read; `deadline` (default: `timeout`) bounds a whole answer, and for a stream the wait
    for each event, so an upstream that drips a byte at a time or sends only keep-alive comments cannot hold a
    request. `max_bytes` caps a whole answer and `max_event_bytes` one stream event: both are read incrementally
    and given up at the cap, never buffered whole.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        connect_timeout: float,
        deadline: float | None = None,
        max_bytes: int = 10_000_000,
        max_event_bytes: int = 1_000_000,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.deadline = deadline or timeout
        self.max_bytes = max_bytes
        self.max_event_bytes = max_event_bytes
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=connect_timeout))
        self._probe: asyncio.Task[bool] | None = None
        self._probed_at = -math.inf

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self._client.aclose()

    def _headers(self, client_auth: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        auth = f"Bearer {self.api_key}" if self.api_key else client_auth
        if auth:
            headers["Authorization"] = auth
        return headers

    def _late(self, what: str = "answer") -> ProxyError:
        return upstream_failure(504, f"did not {what} within the deadline of {self.deadline:g} s", "upstream_timeout")

    async def _open(
        self, method: str, path: str, client_auth: str | None, body: bytes | None = None, for_client: bool = True
    ) -> httpx.Response:
        """Send a request and return the response with its body unread; a failure status raises (`_rejection`;
        without `for_client`, the request is the proxy's own, so any failure status is a 502)."""
        url = f"{self.base_url}{path}"
        request = self._client.build_request(method, url, content=body, headers=self._headers(client_auth))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise upstream_failure(504, f"{url} did not answer in time", "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise upstream_failure(502, f"cannot reach {url}: {_describe(exc)}") from None
        if response.status_code >= 400:
            raise await self._rejection(response, url, for_client, bool(client_auth) and not self.api_key)
        return response

    async def _rejection(
        self, response: httpx.Response, url: str, for_client: bool, client_credentials: bool
    ) -> ProxyError:
        """The client's error for an upstream failure status. A refusal of the proxy's own credentials (401/403
        with `upstream_api_key`) is the service's fault, a 502; a rejected request keeps its status with a fixed
        message; the upstream's body goes to the log only."""
        status = response.status_code
        text = await _read_head(response, ERROR_LOG_BYTES)
        detail = f"{url} answered HTTP {status}: {text}"
        if self.api_key:
            detail = detail.replace(self.api_key, "<upstream_api_key>")
        message = UPSTREAM_REJECTIONS.get(status) if for_client else None
        if status in (401, 403) and client_credentials:
            message = CLIENT_CREDENTIALS_REFUSED
        if message is None:
            return upstream_failure(502, detail)
        log.info("request %s: %s", REQUEST_ID.get(), detail)
        retry = response.headers.get("retry-after", "")
        headers = {"Retry-After": retry} if status == 429 and retry.isdigit() and len(retry) < 6 else None
        return ProxyError(status, f"{message} (request id {REQUEST_ID.get()})", "upstream_rejected", headers=headers)

    async def _read(self, response: httpx.Response, what: str) -> bytes:
        """The whole body, read incrementally and given up past `max_bytes` (a 502; the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    break
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise upstream_failure(504, f"{what}: did not finish answering in time", "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise upstream_failure(502, f"{what}: broke off its answer: {_describe(exc)}") from None
        finally:
            await response.aclose()
        if size > self.max_bytes:
            detail = f"{what}: answered more than max_upstream_bytes ({self.max_bytes:,} bytes)"
            raise upstream_failure(502, detail, "upstream_too_large")
        return b"".join(chunks)

    async def complete(self, body: bytes, client_auth: str | None) -> dict[str, Any]:
        """A non-streaming completion, checked to be a JSON object with a `choices` list."""
        try:
            async with asyncio.timeout(self.deadline):
                response = await self._open("POST", "/chat/completions", client_auth, body)
                raw = await self._read(response, "chat/completions")
        except TimeoutError:
            raise self._late("finish answering") from None
        try:
            data = strict_json_loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            snippet = " ".join(raw[:1000].decode("utf-8", "replace").split())[:200] or "(empty body)"
            raise upstream_failure(502, f"answered something that is not a chat completion: {snippet}")
        return data

    async def stream(self, body: bytes, client_auth: str | None) -> AsyncIterator[bytes]:
        """Open a streaming completion; errors before the first byte raise, later ones end the stream with an
        SSE error event and [DONE] (the status line has already been sent by then)."""
        deadline = asyncio.get_running_loop().time() + self.deadline
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open("POST", "/chat/completions", client_auth, body)
        except TimeoutError:
            raise self._late() from None
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            await response.aclose()
            raise upstream_failure(502, f"answered a stream request with {ctype or 'no content type'}, not SSE")
        return self._relay(response, deadline)

    async def models(self) -> dict[str, Any]:
        """The upstream's `GET /models` list (OpenAI tooling asks for it before anything else)."""
        try:
            async with asyncio.timeout(self.deadline):
                raw = await self._read(await self._open("GET", "/models", None, for_client=False), "GET /models")
        except TimeoutError:
            raise self._late() from None
        try:
            data = strict_json_loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise upstream_failure(502, f"GET /models answered: {raw[:300].decode('utf-8', 'replace')}")
        return data

    async def alive(self) -> bool:
        """Whether the upstream server answers HTTP at all (any status below 500), within the connect timeout.

        /readyz needs no key, so one probe answers every caller for READY_PROBE_SECONDS and callers that come
        while it runs share it: a flood of readiness checks never becomes a flood of upstream calls.
        """
        loop = asyncio.get_running_loop()
        if self._probe is None or (self._probe.done() and loop.time() - self._probed_at > READY_PROBE_SECONDS):
            self._probe = loop.create_task(self._probe_once())
        return await asyncio.shield(self._probe)  # a caller that goes away does not cancel the others' probe

    async def _probe_once(self) -> bool:
        try:
            timeout = self._client.timeout.connect
            async with self._client.stream("GET", f"{self.base_url}/models", timeout=timeout) as response:
                return response.status_code < 500  # the status is enough; the body is never read
        except httpx.HTTPError as exc:
            log.warning("readiness: the upstream %s does not answer: %s", self.base_url, _describe(exc))
            return False
        finally:
            self._probed_at = asyncio.get_running_loop().time()

    async def _relay(self, response: httpx.Response, deadline: float) -> AsyncIterator[bytes]:
        """Pass the upstream's events on, one whole event at a time, checking each: `data:` that is not JSON, an
        event over `max_event_bytes`, no `data:` event within the deadline (a keep-alive comment is passed on but
        is no progress), or a stream that ends without `[DONE]` ends the client's stream with an error event
        and [DONE] instead of a silently truncated or unreadable answer."""
        loop = asyncio.get_running_loop()
        events = _sse_events(response.aiter_bytes(), self.max_event_bytes)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events, None)
                except TimeoutError:
                    raise self._late("send a stream event") from None
                if event is None:
                    raise upstream_failure(502, "ended its stream before [DONE]")
                data = sse_data(event)
                payload = "\n".join(data)
                if data and payload != "[DONE]":  # an event of comments only (": keep-alive") has nothing to check
                    try:
                        strict_json_loads(payload)
                    except ValueError:
                        raise upstream_failure(502, f"sent a stream event that is not JSON: {payload[:200]}") from None
                yield ("\n".join(event) + "\n\n").encode()
                if payload == "[DONE]":
                    return
                if data:
                    deadline = loop.time() + self.deadline
        except ProxyError as failure:
            yield error_ending(failure)
        except httpx.HTTPError as exc:
            timeout = isinstance(exc, httpx.TimeoutException)
            yield error_ending(upstream_failure(504 if timeout else 502, f"stream broke off: {_describe(exc)}",
                                                "upstream_timeout" if timeout else "upstream_error"))
        finally:
            await response.aclose()
            await events.aclose()


def sse_data(lines: list[str]) -> list[str]:
    """The values of an event's `data:` lines (its comments and other fields left out)."""
    return [line[5:].lstrip() for line in lines if line.startswith("data:")]


async def _sse_events(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[list[str]]:
    """Server-sent events, each as its lines (CR, LF or CRLF ended), from raw chunks; an event (or an unended line)
    over `limit` bytes raises a 502 at once, without reading on. An unfinished event at the end is dropped."""
    pending, event, size = b"", [], 0
    async for chunk in chunks:
        text = pending + chunk
        cr = text.endswith(b"\r")  # may be the first half of a CRLF split across chunks
        text = (text[:-1] if cr else text).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, pending = text.split(b"\n")
        for line in lines:
            if line:
                event.append(line.decode("utf-8", "replace"))
                size += len(line)
            elif event:
                yield event
                event, size = [], 0
        pending += b"\r" if cr else b""
        if size + len(pending) > limit:
            raise upstream_failure(502, f"sent a stream event over max_upstream_event_bytes ({limit:,})",
                                   "upstream_too_large")


async def _read_head(response: httpx.Response, limit: int) -> str:
    """At most `limit` bytes of a body (an error answer, for the log), and the response closed."""
    head = b""
    try:
        async for chunk in response.aiter_bytes():
            head += chunk
            if len(head) >= limit:
                break
    except httpx.HTTPError:
        head += b" (the rest unreadable)"
    finally:
        await response.aclose()
    return " ".join(head[:limit].decode("utf-8", "replace").split())


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def error_ending(error: ProxyError) -> bytes:
    """How a stream that already sent its status line ends on a failure: an OpenAI error event (which the
    openai client raises) and [DONE] (for clients that read until it)."""
    return f"data: {json.dumps(error.body())}\n\ndata: [DONE]\n\n".encode()
