"""`ModeratedStream` on its own: what reaches the client of a streamed reply, chunk by chunk, with a judge that
flags "kill myself" (the service-level tests are in test_guard_v2.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from prosocial.canary.base import Verdict
from prosocial.data.labels import SafetyLabel
from prosocial.serve.outputs import ModeratedStream
from prosocial.serve.proxy import ProxyError
from prosocial.steer.moderation import ReplyVerdict


def _chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    payload = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(payload)}\n\n".encode()


def _run(pieces: list[str], action: str = "replace", window: int = 40, done: bool = True, fail: bool = False):
    judged: list[str] = []

    async def events():
        for piece in pieces:
            yield _chunk(piece)
        yield _chunk(None, "stop")
        if done:
            yield b"data: [DONE]\n\n"

    async def judge(texts: dict[int, str]) -> dict[int, ReplyVerdict]:
        if fail:
            raise ProxyError(429, "the detector's queue is full", "rate_limit_exceeded")
        judged.append(texts[0])
        bad = "kill myself" in texts[0]
        label = SafetyLabel.NEEDS_INTERVENTION if bad else SafetyLabel.CASUAL
        return {0: ReplyVerdict(Verdict(label), False, "needs_intervention" if bad else None,
                                action if bad else "pass")}

    async def replace() -> str:
        return "Let's talk about something else."

    async def collect() -> list[bytes]:
        return [chunk async for chunk in ModeratedStream(events(), judge, replace, min_chars=10, window_chars=window)]

    return asyncio.run(collect()), judged


def _text(chunks: list[bytes]) -> str:
    out = ""
    for chunk in chunks:
        data = chunk.decode()[len("data: "):].strip()
        if data != "[DONE]":
            out += "".join(c["delta"].get("content") or "" for c in json.loads(data)["choices"])
    return out


def test_a_harmless_stream_is_relayed_byte_for_byte_with_its_verdict_on_the_finish():
    pieces = ["Once ", "upon a time. ", "A fox read ", "books. ", "The end."]
    chunks, judged = _run(pieces)
    assert chunks[:len(pieces)] == [_chunk(p) for p in pieces]
    assert _text(chunks) == "".join(pieces) and chunks[-1] == b"data: [DONE]\n\n"
    finish = json.loads(chunks[-2].decode()[6:])
    assert finish["prosocial"]["output"][0]["action"] == "pass"
    assert judged[-1] == "".join(pieces)


@pytest.mark.parametrize("split", [["I will kill", " myself"], ["I will k", "ill mys", "elf"]])
def test_harmful_text_split_across_chunks_never_reaches_the_client(split):
    pieces = ["Here is a story about a day. ", "It was sunny. ", *split, " tonight. ", "Bye."]
    chunks, _ = _run(pieces)
    text = _text(chunks)
    assert "kill" not in text and "Here is a story" in text
    assert text.endswith("Let's talk about something else.") and chunks[-1] == b"data: [DONE]\n\n"
    assert json.loads(chunks[-2].decode()[6:])["choices"][0]["finish_reason"] == "stop"


def test_a_refusal_ends_with_content_filter():
    chunks, _ = _run(["I will kill myself now. "], action="refuse")
    last = json.loads(chunks[-2].decode()[6:])
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "content_filter"}
    assert "kill" not in _text(chunks)


def test_no_more_than_one_window_is_ever_unjudged():
    pieces = ["word "] * 60  # no sentence end: judged every `window` characters
    chunks, judged = _run(pieces, window=40)
    lengths = [len(t) for t in judged]
    assert all(b - a <= 40 for a, b in zip([0, *lengths], lengths, strict=False))
    assert _text(chunks) == "".join(pieces)


def test_a_stream_that_stops_without_done_is_still_judged():
    chunks, judged = _run(["I will kill myself"], done=False)
    assert "kill" not in _text(chunks) and judged


def test_a_reply_that_cannot_be_judged_is_not_relayed():
    chunks, _ = _run(["Here is a story about a day. ", "It was sunny."], fail=True)
    assert len(chunks) == 1  # the error event and [DONE], nothing of the held text
    body = chunks[0].decode()
    assert '"code": 429' in body and body.endswith("data: [DONE]\n\n") and "story" not in body
