"""Test doubles for the LLM judge: a scripted in-process LM and a fake OpenAI-compatible server on loopback.

The server's behaviour is chosen by the first path segment (``/{scenario}/v1/chat/completions``): "verdict" (a
fixed JSON verdict with logprobs), "nologprobs" (the same without), "fenced" (the JSON in a Markdown fence, words
around it), "malformed-once" (prose first, then JSON: the repair works), "malformed" (never JSON), "badlabel" (JSON
with an unknown label), "slow" (waits 2 s), "down" (HTTP 500 with a traceback and an internal address),
"llamaguard-unsafe" / "llamaguard-safe" / "qwen-unsafe" / "qwen-controversial" / "qwen-safe" (guard-model answers).
`seen` keeps each request's body by scenario.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from prosocial.lm.base import Completion, LanguageModel, Message

FIRE_ROT = "It's wrong to pull a fire alarm when there's no fire."


def rule_answer(dialogue: str) -> str:
    """A deterministic judge's JSON for a dialogue text: self-harm needs intervention, insults and pranks caution."""
    text = dialogue.lower()
    if "cutting myself" in text or "kill myself" in text:
        answer = {"label": "needs_intervention", "danger": "self_harm", "rots": [], "rationale": "Self-harm."}
    elif "fire alarm" in text or "idiot" in text:
        answer = {"label": "needs_caution", "danger": "none", "rots": [FIRE_ROT], "rationale": "A harmful prank."}
    else:
        answer = {"label": "casual", "danger": "none", "rots": [], "rationale": "Small talk."}
    return json.dumps(answer)


def dialogue_of(messages: list[Message]) -> str:
    """The judged dialogue: the first user message (a repair request comes after it)."""
    return next(m["content"] for m in messages if m["role"] == "user")


class ScriptedLM(LanguageModel):
    """A LanguageModel whose `chat_detailed` answers `answer(messages)` (default: `rule_answer` of the dialogue);
    `requests` records what it was asked."""

    def __init__(self, answer: Any = None, delay: float = 0.0):
        self.answer = answer or (lambda messages: rule_answer(dialogue_of(messages)))
        self.delay = delay
        self.requests: list[dict[str, Any]] = []

    def generate(self, prompts: list[str], **_: Any) -> list[str]:
        return ["" for _ in prompts]

    def chat(self, messages_batch: list[list[Message]], **_: Any) -> list[str]:
        return [c.text for c in self.chat_detailed(messages_batch)]

    def chat_detailed(self, messages_batch: list[list[Message]], max_new_tokens: int = 256,
                      schema: dict[str, Any] | None = None, top_logprobs: int = 0) -> list[Completion]:
        out = []
        for messages in messages_batch:
            self.requests.append({"messages": messages, "schema": schema, "max_new_tokens": max_new_tokens})
            if self.delay:
                time.sleep(self.delay)
            answer = self.answer(messages)
            out.append(answer if isinstance(answer, Completion) else Completion(answer))
        return out


def _token(token: str, logprob: float, top: dict[str, float] | None = None) -> dict[str, Any]:
    alternatives = {token: logprob} | (top or {})
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives.items()]}


#: a verdict spelled as tokens: the label's first token could also have started "casual" or "possibly_…", its
#: second could have been "_intervention" instead of "_caution"
VERDICT_TOKENS = [
    _token('{"', -0.01), _token("label", -0.01), _token('":', -0.01), _token(' "', -0.01),
    _token("needs", -0.2231, {"cas": -2.0, "poss": -3.0, "Sure": -1.0}),
    _token("_ca", -0.1054, {"_inter": -2.5}),
    _token('ution"', -0.01),
    _token(', "danger": "none", "rots": ["' + FIRE_ROT + '"], "rationale": "A harmful prank."}', -0.01),
]
VERDICT_TEXT = "".join(t["token"] for t in VERDICT_TOKENS)

calls: Counter[str] = Counter()
seen: dict[str, list[dict[str, Any]]] = {}


def _choice(content: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]}


def _guard_tokens(words: list[tuple[str, float, dict[str, float]]]) -> list[dict[str, Any]]:
    return [_token(w, lp, top) for w, lp, top in words]


def _answer(scenario: str, body: dict[str, Any]) -> Any:
    calls[scenario] += 1
    if scenario == "verdict":
        return _choice(VERDICT_TEXT, VERDICT_TOKENS)
    if scenario == "nologprobs":
        return _choice(VERDICT_TEXT)
    if scenario == "fenced":
        return _choice(f"Here is my verdict:\n```json\n{VERDICT_TEXT}\n```\nHope that helps.")
    if scenario == "malformed-once":
        repairing = len(body["messages"]) > 2
        return _choice(VERDICT_TEXT if repairing else "I think this needs caution, because pranks hurt people.")
    if scenario == "malformed":
        return _choice("{label: needs caution}")
    if scenario == "badlabel":
        return _choice(json.dumps({"label": "dangerous", "danger": "none", "rots": [], "rationale": "x"}))
    if scenario == "down":
        return PlainTextResponse("Traceback: KeyError at http://10.0.0.7:9000/admin", status_code=500)
    if scenario == "llamaguard-unsafe":
        return _choice("unsafe\nS11", _guard_tokens([("unsafe", -0.1054, {"safe": -2.3}), ("\n", -0.01, {}),
                                                      ("S", -0.01, {}), ("11", -0.01, {})]))
    if scenario == "llamaguard-safe":
        return _choice("safe")
    if scenario == "qwen-unsafe":
        return _choice("Safety: Unsafe\nCategories: Violent")
    if scenario == "qwen-controversial":
        return _choice("Safety: Controversial\nCategories: Suicide & Self-Harm")
    if scenario == "qwen-safe":
        return _choice("Safety: Safe\nCategories: None")
    return JSONResponse({"error": {"message": f"no scenario {scenario}"}}, status_code=404)


def judge_app() -> FastAPI:
    app = FastAPI()

    @app.post("/{scenario}/v1/chat/completions")
    async def chat(scenario: str, request: Request) -> Any:
        body = await request.json()
        seen.setdefault(scenario, []).append(body)
        if scenario == "slow":
            await asyncio.sleep(2.0)
            return _choice(VERDICT_TEXT)
        return _answer(scenario, body)

    return app


def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` on a free loopback port for the duration of a fixture; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)
