"""The guard proxy's parts: reading a chat request as a dialogue context, injecting RoT guidance, talking to
the upstream OpenAI-compatible server, and the hand-over reply that replaces it when a person is needed.

Failures of the upstream become `ProxyError`s with the status a client should see: 502 when it is down or
answers garbage, 504 when it is too slow, its own status when it rejected the request (4xx). What the upstream
said and where it lives are logged with the request id, never sent to the client: an upstream's error body can
be a traceback, and its address is internal.
"""

from __future__ import annotations

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


class ProxyError(Exception):
    """An error to answer in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "upstream_error", param: str | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param

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

    return json.loads(data, parse_constant=reject, parse_float=finite)


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


def _client_error_message(body: bytes) -> str | None:
    """The message of an OpenAI-shaped error body (meant for the client), or None for anything else."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message.strip():
        return None
    return " ".join(message.split())[:300]


class Upstream:
    """The upstream OpenAI-compatible server at `base_url` (with its version, e.g. http://host:8080/v1)."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, connect_timeout: float):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=connect_timeout))

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, client_auth: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        auth = f"Bearer {self.api_key}" if self.api_key else client_auth
        if auth:
            headers["Authorization"] = auth
        return headers

    async def _send(self, body: bytes, client_auth: str | None, stream: bool) -> httpx.Response:
        url = f"{self.base_url}/chat/completions"
        request = self._client.build_request("POST", url, content=body, headers=self._headers(client_auth))
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise upstream_failure(504, f"{url} did not answer within {self.timeout:g} s", "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise upstream_failure(502, f"cannot reach {url}: {_describe(exc)}") from None
        if response.status_code >= 400:
            try:
                text = await response.aread()
            except httpx.HTTPError:
                text = b"(body unreadable)"
            finally:
                await response.aclose()
            detail = f"{url} answered HTTP {response.status_code}: {text[:2000].decode('utf-8', 'replace')}"
            message = _client_error_message(text) if response.status_code < 500 else None
            if message is None:
                raise upstream_failure(502, detail)
            # A rejected request (4xx) is the client's to fix, so its status and message pass through.
            log.info("request %s: %s", REQUEST_ID.get(), detail)
            raise ProxyError(response.status_code, f"the upstream LLM rejected the request: {message}")
        return response

    async def complete(self, body: bytes, client_auth: str | None) -> dict[str, Any]:
        """A non-streaming completion, checked to be a JSON object with a `choices` list."""
        response = await self._send(body, client_auth, stream=True)
        try:
            raw = await response.aread()
        except httpx.TimeoutException:
            detail = f"did not finish answering within {self.timeout:g} s"
            raise upstream_failure(504, detail, "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise upstream_failure(502, f"broke off its answer: {_describe(exc)}") from None
        finally:
            await response.aclose()
        try:
            data = strict_json_loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            snippet = " ".join(raw.decode("utf-8", "replace").split())[:200] or "(empty body)"
            raise upstream_failure(502, f"answered something that is not a chat completion: {snippet}")
        return data

    async def stream(self, body: bytes, client_auth: str | None) -> AsyncIterator[bytes]:
        """Open a streaming completion; errors before the first byte raise, later ones end the stream with an
        SSE error event (the status line has already been sent by then)."""
        response = await self._send(body, client_auth, stream=True)
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            await response.aclose()
            raise upstream_failure(502, f"answered a stream request with {ctype or 'no content type'}, not SSE")
        return self._relay(response)

    async def models(self) -> dict[str, Any]:
        """The upstream's `GET /models` list (OpenAI tooling asks for it before anything else)."""
        try:
            response = await self._client.get(f"{self.base_url}/models", headers=self._headers(None))
        except httpx.TimeoutException:
            raise upstream_failure(504, "GET /models timed out", "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise upstream_failure(502, f"GET /models: {_describe(exc)}") from None
        try:
            data = strict_json_loads(response.content) if response.status_code == 200 else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise upstream_failure(502, f"GET /models answered HTTP {response.status_code}: {response.text[:300]}")
        return data

    async def alive(self) -> bool:
        """Whether the upstream server answers HTTP at all (any status below 500), within the connect timeout."""
        try:
            response = await self._client.get(f"{self.base_url}/models", timeout=self._client.timeout.connect)
        except httpx.HTTPError as exc:
            log.warning("readiness: the upstream %s does not answer: %s", self.base_url, _describe(exc))
            return False
        return response.status_code < 500

    async def _relay(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """Pass the upstream's events on, one whole event at a time, checking each: `data:` that is not JSON, or a
        stream that ends without `[DONE]`, ends the client's stream with an error event instead of a
        silently truncated or unreadable answer."""
        event: list[str] = []
        try:
            async for line in response.aiter_lines():
                if line:
                    event.append(line)
                    continue
                if not event:
                    continue
                data = [x[5:].lstrip() for x in event if x.startswith("data:")]
                payload = "\n".join(data)
                if data and payload != "[DONE]":  # an event of comments only (": keep-alive") has nothing to check
                    try:
                        strict_json_loads(payload)
                    except ValueError:
                        detail = f"sent a stream event that is not JSON: {payload[:200]}"
                        yield _error_event(upstream_failure(502, detail))
                        return
                yield ("\n".join(event) + "\n\n").encode()
                event = []
                if payload == "[DONE]":
                    return
            yield _error_event(upstream_failure(502, "ended its stream before [DONE]"))
        except httpx.HTTPError as exc:
            timeout = isinstance(exc, httpx.TimeoutException)
            failure = upstream_failure(504 if timeout else 502, f"stream broke off: {_describe(exc)}",
                                       "upstream_timeout" if timeout else "upstream_error")
            yield _error_event(failure)
        finally:
            await response.aclose()


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _error_event(error: ProxyError) -> bytes:
    return f"data: {json.dumps(error.body())}\n\n".encode()
