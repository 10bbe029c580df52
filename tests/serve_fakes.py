"""Test doubles for the service: a real OpenAI-compatible fake upstream on loopback, and a detector that can
ask for intervention (the keyword list alone only ever says "needs caution").

The fake upstream's behaviour is chosen by the request's `model`: "fake-fail" (HTTP 500 with a traceback),
"fake-reject" (HTTP 404), "fake-leaky:<status>" (that status with an error message full of internals: a
traceback, an internal URL, a token), "fake-garbage" (200 with HTML), "fake-deep:<depth>" (a completion with a
field nested that deep), "fake-slow:<seconds>" (waits, before answering or between stream chunks),
"fake-drip" (a byte every 0.2 s, never finishing), "fake-endless" (64 KiB chunks without end; streamed, one
endless line), and for streams "fake-truncated" (stops mid-event, no [DONE]) and "fake-nonjson" (a `data:` line
that is not JSON), "fake-keepalive" (a comment event first, as servers send to hold a connection),
"fake-keepalive-forever" (nothing but comments, every 0.2 s); "fake-say:<text>" answers <text> (a stream sends it
word by word); anything else echoes the last user message, as
JSON or as server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from prosocial.canary.base import Verdict
from prosocial.canary.baselines import KeywordDetector
from prosocial.data.context import check_context
from prosocial.data.labels import SafetyLabel

SWEAR_ROT = "It's wrong to swear at people."
TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/llm/server.py", line 12, in chat\nKeyError: \'secret\'\n'
#: what a careless upstream puts in an error message: a traceback, an internal address, a token
LEAKY_MESSAGE = TRACEBACK + " at http://10.1.2.3:9000/internal/admin, token sk-live-abc123secret"


async def _forever(piece: bytes, every: float, times: int = 200) -> AsyncIterator[bytes]:
    """`piece` every `every` seconds, up to `times` times (the test server stops it when the client hangs up)."""
    for _ in range(times):
        yield piece
        await asyncio.sleep(every)


class InterventionDetector(KeywordDetector):
    """The real keyword detector, plus: "kill myself" needs intervention, a keyword hit carries a RoT, and "(no rule)"
    needs caution without one (as a detector without RoTs would say)."""

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        verdicts = super().predict(contexts, with_rots)
        for context, verdict in zip(contexts, verdicts, strict=True):
            if "kill myself" in check_context(context)[-1].lower():
                verdict.safety_label = SafetyLabel.NEEDS_INTERVENTION
                verdict.rots = ["It's important to seek help when you are in danger."]
            elif "(no rule)" in context[-1]:
                verdict.safety_label, verdict.rots = SafetyLabel.NEEDS_CAUTION, []
            elif not verdict.safety_label.is_casual:
                verdict.rots = [SWEAR_ROT]
        return verdicts


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    texts = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    texts = [t for t in texts if isinstance(t, str)]
    return texts[-1] if texts else ""


def fake_upstream() -> tuple[FastAPI, dict[str, list[Any]]]:
    """The app and what it saw: "requests" (each body with its Authorization header) and webhook "events"."""
    seen: dict[str, list[Any]] = {"requests": [], "events": [], "models": []}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen["requests"].append({"body": body, "auth": request.headers.get("authorization")})
        model = str(body.get("model", ""))
        delay = float(model.split(":", 1)[1]) if model.startswith("fake-slow:") else 0.0
        if model == "fake-fail":
            return PlainTextResponse(TRACEBACK, status_code=500)
        if model == "fake-reject":
            return JSONResponse({"error": {"message": f"no model {model}"}}, status_code=404)
        if model.startswith("fake-leaky:"):
            headers = {"Retry-After": "7", "X-Internal": "http://10.1.2.3:9000"}
            return JSONResponse({"error": {"message": LEAKY_MESSAGE, "type": "internal"}},
                                status_code=int(model.split(":")[1]), headers=headers)
        if model == "fake-garbage":
            return PlainTextResponse("<html>502 Bad Gateway</html>")
        if model.startswith("fake-deep:"):
            depth = int(model.split(":")[1])
            deep = '{"id": "c1", "choices": [], "deep": ' + "[" * depth + "]" * depth + "}"
            return PlainTextResponse(deep, media_type="application/json")
        stream_type = "text/event-stream" if body.get("stream") else "application/json"
        if model == "fake-drip":
            return StreamingResponse(_forever(b" ", 0.2), media_type=stream_type)
        if model == "fake-endless":
            return StreamingResponse(_forever(b"data: " + b"x" * 65536 if body.get("stream") else b"x" * 65536, 0),
                                     media_type=stream_type)
        if model == "fake-keepalive-forever":
            return StreamingResponse(_forever(b": keep-alive\n\n", 0.2), media_type=stream_type)
        reply = model.split(":", 1)[1] if model.startswith("fake-say:") else f"echo: {_last_user_text(body)}"
        if body.get("stream"):

            async def events():
                if model == "fake-truncated":
                    yield 'data: {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "del'
                    return
                if model == "fake-nonjson":
                    yield "data: <html>upstream proxy error</html>\n\n"
                    return
                if model == "fake-keepalive":
                    yield ": keep-alive\n\n"
                for i, word in enumerate(reply.split(" ")):
                    await asyncio.sleep(delay)
                    delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
                    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": model,
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                finish = {"id": "c1", "object": "chat.completion.chunk", "model": model,
                          "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(finish)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        await asyncio.sleep(delay)
        return {"id": "c1", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        seen["models"].append(time.monotonic())
        return {"object": "list", "data": [{"id": "fake-echo", "object": "model", "owned_by": "tests"}]}

    @app.post("/hooks/escalation")
    async def hook(request: Request) -> dict[str, str]:
        seen["events"].append(await request.json())
        return {"status": "received"}

    return app, seen


class ServerThread:
    """Runs an ASGI app under real uvicorn on a free loopback port, in a thread, for the `with` block."""

    def __init__(self, app: Any, **config: Any):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.sock.close()
