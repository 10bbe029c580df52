"""The guard proxy's way out: an upstream completion is judged before the client reads it, streamed or not.

A non-streamed completion is judged choice by choice (`moderate_completion`). A stream is judged as it grows
(`ModeratedStream`): the upstream's events are held back until their text reaches a sentence end (at least
`min_chars` of it) or `window_chars`, then the reply so far is judged in its dialogue and the held events are
relayed unchanged. So at most one window of text is ever unjudged, and none of it has reached the client. On a
flag the relay stops: the client gets the replacement (or a `content_filter` finish), `data: [DONE]`, and the
upstream connection is closed. The verdict of the reply rides on the event that carries the finish reason, as
`prosocial.output`, beside what `report` adds (the service: the input's verdict, action, guidance and `input`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prosocial.serve.proxy import ProxyError, error_ending, sse_data, strict_json_loads
from prosocial.steer.moderation import ReplyVerdict

log = logging.getLogger(__name__)

#: judge the streamed reply at a sentence end once this many characters are unjudged …
MIN_CHARS = 60
#: … and in any case once this many are
WINDOW_CHARS = 240
_SENTENCE_END = re.compile(r"[.!?…]['\")\]]*\s|\n")

Judge = Callable[[dict[int, str]], Awaitable[dict[int, ReplyVerdict]]]
Replace = Callable[[], Awaitable[str]]
ACTION_ORDER = {"pass": 0, "replace": 1, "refuse": 2}


def choice_texts(data: dict[str, Any]) -> dict[int, str]:
    """The text of each choice of a chat completion: its content, or its tool calls' arguments."""
    texts: dict[int, str] = {}
    for position, choice in enumerate(data.get("choices") or []):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", position)
        texts[index if isinstance(index, int) else position] = "\n".join(_pieces(choice.get("message")))
    return texts


def _pieces(message: Any) -> list[str]:
    """The text of a message, or of a streamed delta of one: its content and its tool calls' arguments."""
    if not isinstance(message, dict):
        return []
    calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
    functions = [call.get("function") for call in calls if isinstance(call, dict)]
    pieces = [message.get("content"), *(f.get("arguments") for f in functions if isinstance(f, dict))]
    return [p for p in pieces if isinstance(p, str) and p]


async def moderate_completion(data: dict[str, Any], judge: Judge, replace: Replace) -> list[dict[str, Any]]:
    """Judge every choice and carry out the actions in place; the verdicts, one per choice, with its index."""
    verdicts = await judge(choice_texts(data))
    replaced: str | None = None
    for position, choice in enumerate(data.get("choices") or []):
        verdict = verdicts.get(choice.get("index", position)) if isinstance(choice, dict) else None
        if verdict is None or verdict.action == "pass":
            continue
        if verdict.action == "refuse":
            choice["message"] = {"role": "assistant", "content": None}
            choice["finish_reason"] = "content_filter"
        else:
            replaced = replaced if replaced is not None else await replace()
            choice["message"] = {"role": "assistant", "content": replaced}
            choice["finish_reason"] = "stop"
    return [v.to_dict() | {"index": i} for i, v in sorted(verdicts.items())]


def worst(verdicts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The verdict whose action is most severe (then the most severe label), for the response headers."""
    if not verdicts:
        return None
    return max(verdicts, key=lambda v: (ACTION_ORDER[v["action"]], v["coarse"] != "casual",
                                        v["coarse"] == "needs intervention"))


class ModeratedStream:
    """Relays an upstream SSE stream of chat.completion.chunk events, judging it as it grows (see the module
    docstring). `judge({index: reply so far})` judges the text of each choice that grew; `replace()` writes the
    replacement. `stats` records the judgements made and the seconds they took, for the benchmark."""

    def __init__(self, events: AsyncIterator[bytes], judge: Judge, replace: Replace,
                 min_chars: int = MIN_CHARS, window_chars: int = WINDOW_CHARS, report: dict[str, Any] | None = None):
        self.events = events
        self.judge = judge
        self.replace = replace
        self.min_chars = min_chars
        self.window_chars = window_chars
        self.report = report or {}  # what else `prosocial` carries on the finishing event (the input's verdict)
        self.stats = {"judgements": 0, "seconds": 0.0}
        self._text: dict[int, str] = {}  # each choice's text so far (judged and held)
        self._unjudged: dict[int, int] = {}  # characters of it not judged yet
        self._held: list[tuple[bytes, dict[str, Any] | None]] = []  # events, with the payload of one that finishes
        self._last: dict[int, ReplyVerdict] = {}
        self._meta: dict[str, Any] = {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for event in self.events:
                payload = _payload(event)
                if payload is not None:  # a chunk: held until its window is judged
                    finishing = self._take(payload)
                    self._held.append((event, payload if finishing else None))
                    if not (finishing or self._due()):
                        continue
                # a window is full, a choice finished, or [DONE] / an error event / a comment came: judge what is held
                ending = await self._flush()
                if ending is not None:
                    for chunk in ending:
                        yield chunk
                    return
                for chunk in self._release() + ([event] if payload is None else []):
                    yield chunk
            ending = await self._flush()  # the upstream stopped without [DONE]: what it sent is still judged
            for chunk in ending if ending is not None else self._release():
                yield chunk
        finally:
            close = getattr(self.events, "aclose", None)
            if close is not None:
                await close()

    def _take(self, payload: dict[str, Any]) -> bool:
        """Add a chunk's text to its choice; whether the chunk finishes a choice."""
        for key in ("id", "model", "created"):
            self._meta.setdefault(key, payload.get(key))
        finishing = False
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
            added = "".join(_pieces(choice.get("delta")))
            self._text[index] = self._text.get(index, "") + added
            self._unjudged[index] = self._unjudged.get(index, 0) + len(added)
            finishing = finishing or choice.get("finish_reason") is not None
        return finishing

    def _due(self) -> bool:
        for index, count in self._unjudged.items():
            if count >= self.window_chars:
                return True
            if count >= self.min_chars and _SENTENCE_END.search(self._text[index][-count - 1:]):
                return True
        return False

    async def _flush(self) -> list[bytes] | None:
        """Judge every choice with unjudged text; None when all pass, else the events that end the stream."""
        grown = {i: self._text[i] for i, n in self._unjudged.items() if n > 0}
        if not grown:
            return None
        started = time.perf_counter()
        try:
            verdicts = await self.judge(grown)
        except Exception as exc:  # a full queue, a detector that cannot run: nothing unjudged goes out
            self._held = []
            log.warning("a streamed reply could not be judged; the stream ends with an error: %r", exc,
                        exc_info=not isinstance(exc, ProxyError))  # a bug's traceback goes to the log
            error = exc if isinstance(exc, ProxyError) else ProxyError(
                503, f"the reply could not be judged ({type(exc).__name__})", "service_unavailable")
            return [error_ending(error)]
        self.stats["judgements"] += 1
        self.stats["seconds"] += time.perf_counter() - started
        self._unjudged = dict.fromkeys(self._unjudged, 0)
        self._last |= verdicts
        acted = [(i, v) for i, v in sorted(verdicts.items()) if v.action != "pass"]
        if not acted:
            return None
        self._held = []  # flagged text never leaves
        index, verdict = max(acted, key=lambda item: ACTION_ORDER[item[1].action])
        return await self._ending(index, verdict)

    def _release(self) -> list[bytes]:
        """The held events, the verdicts added to the one that finishes a choice."""
        out = [event if finishing is None else _event(finishing | {"prosocial": self._prosocial()})
               for event, finishing in self._held]
        self._held = []
        return out

    def _prosocial(self) -> dict[str, Any]:
        return self.report | {"output": [v.to_dict() | {"index": i} for i, v in sorted(self._last.items())]}

    async def _ending(self, index: int, verdict: ReplyVerdict) -> list[bytes]:
        base = {"id": self._meta.get("id") or f"chatcmpl-prosocial-{uuid.uuid4().hex}",
                "object": "chat.completion.chunk", "created": self._meta.get("created") or int(time.time()),
                "model": self._meta.get("model") or ""}
        if verdict.action == "refuse":
            choices = [{"index": index, "delta": {}, "finish_reason": "content_filter"}]
        else:
            text = await self.replace()
            if self._text[index].strip():
                text = "\n\n" + text  # what was judged safe already reached the client; the replacement follows
            choices = [{"index": index, "delta": {"content": text}, "finish_reason": "stop"}]
        return [_event(base | {"choices": choices, "prosocial": self._prosocial()}), b"data: [DONE]\n\n"]


def _payload(event: bytes) -> dict[str, Any] | None:
    """The JSON object of a chunk event, None for [DONE], comments and error events."""
    data = "\n".join(sse_data(event.decode("utf-8", "replace").split("\n")))
    if not data or data == "[DONE]":
        return None
    try:
        payload = strict_json_loads(data)
    except ValueError:  # deep nesting too (strict_json_loads turns it into a decode error)
        return None
    return payload if isinstance(payload, dict) and "error" not in payload else None


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
