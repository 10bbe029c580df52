"""The guard proxy's parts: reading a chat request as a dialogue context, injecting RoT guidance, talking to
the upstream OpenAI-compatible server, and the hand-over reply that replaces it when a person is needed.

Failures of the upstream become `ProxyError`s with the status a client should see: 502 when it is down or
answers garbage, 504 when it is too slow, its own status when it rejected the request (4xx).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from prosocial.canary.base import Verdict
from prosocial.steer.prompts import chat_messages

DIALOGUE_ROLES = {"user", "assistant"}


class ProxyError(Exception):
    """An error to answer in OpenAI's shape: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "upstream_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "code": self.status}}


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a multimodal content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
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

    The guidance text is the one `steer.prompts.chat_messages` builds; it goes after the application's own
    system prompt (which many chat templates require first) and before the dialogue.
    """
    guidance = chat_messages(context, rots)[0]
    lead = next((i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")), len(messages))
    return [*messages[:lead], guidance, *messages[lead:]]


def escalation_completion(model: str, reply: str, verdict: Verdict) -> dict[str, Any]:
    """A complete chat.completion carrying the hand-over reply, as an upstream would have answered."""
    return {
        "id": f"chatcmpl-prosocial-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "prosocial": verdict.to_dict() | {"action": "escalated"},
    }


async def escalation_stream(model: str, reply: str, verdict: Verdict) -> AsyncIterator[bytes]:
    """The hand-over reply as server-sent chat.completion.chunk events, for clients that asked to stream."""
    base = {"id": f"chatcmpl-prosocial-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    deltas = [({"role": "assistant", "content": reply}, None), ({}, "stop")]
    for i, (delta, finish) in enumerate(deltas):
        chunk = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if i == 0:
            chunk["prosocial"] = verdict.to_dict() | {"action": "escalated"}
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _error_text(response: httpx.Response, body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        text = str(err.get("message", err) if isinstance(err, dict) else err)
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split()) or "(empty body)"
    return text[:300]


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
            message = f"the upstream {url} did not answer within {self.timeout:g} s"
            raise ProxyError(504, message, "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise ProxyError(502, f"cannot reach the upstream {url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                text = _error_text(response, await response.aread())
            except httpx.HTTPError:
                text = "(body unreadable)"
            finally:
                await response.aclose()
            # A rejected request (4xx) is the client's to fix, so its status passes through; a failing server is ours.
            status = response.status_code if response.status_code < 500 else 502
            raise ProxyError(status, f"the upstream answered HTTP {response.status_code}: {text}")
        return response

    async def complete(self, body: bytes, client_auth: str | None) -> dict[str, Any]:
        """A non-streaming completion, checked to be a JSON object with a `choices` list."""
        response = await self._send(body, client_auth, stream=True)
        try:
            raw = await response.aread()
        except httpx.TimeoutException:
            message = f"the upstream did not finish answering within {self.timeout:g} s"
            raise ProxyError(504, message, "upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise ProxyError(502, f"the upstream broke off its answer: {exc or type(exc).__name__}") from None
        finally:
            await response.aclose()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            snippet = " ".join(raw.decode("utf-8", "replace").split())[:200] or "(empty body)"
            raise ProxyError(502, f"the upstream answered something that is not a chat completion: {snippet}")
        return data

    async def stream(self, body: bytes, client_auth: str | None) -> AsyncIterator[bytes]:
        """Open a streaming completion; errors before the first byte raise, later ones end the stream with an
        SSE error event (the status line has already been sent by then)."""
        response = await self._send(body, client_auth, stream=True)
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("text/event-stream"):
            await response.aclose()
            raise ProxyError(502, f"the upstream answered a stream request with {ctype or 'no content type'}, "
                                  "not server-sent events")
        return self._relay(response)

    async def _relay(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            kind = "upstream_timeout" if isinstance(exc, httpx.TimeoutException) else "upstream_error"
            error = ProxyError(504 if kind == "upstream_timeout" else 502, f"the upstream stream broke off: "
                               f"{exc or type(exc).__name__}", kind)
            yield f"\n\ndata: {json.dumps(error.body())}\n\n".encode()
        finally:
            await response.aclose()
