"""The service's load targets on a small machine (2 CPU cores), with the shipped defaults.

    python benchmarks/bench_service_load.py [--seconds 30] [--scenarios safety,chat,fairness,memory]
                                            [--out docs/reports/service_load.json]
    # to tell costs apart (not the targets' settings): --label-only, --detector-settings '{"rot_writer": false}'
    # a short smoke run: --seconds 5 --memory-warmup 20 --memory-requests 60 --out /tmp/service_load.json

The service is `create_app(ServeSettings(upstream_url=…))`: the default detector (canary-mini) and output
moderation (on by default: the agreement judge loads at start), run under uvicorn in a thread of this process
(each scenario group waits for /readyz 200). Its upstream is a small OpenAI-compatible fake defined here and run
in a child process (so its CPU time, GIL and 20 MB answers stay out of the measured process): POST
/v1/chat/completions answers a short fixed two-sentence reply, as JSON or as server-sent events word by word
without delay, and for the model "bench-oversize" a 20 MB body, which the proxy gives up at `max_upstream_bytes`
(10 MB) with a 502; GET /v1/models answers for /readyz. The load comes from this process too (asyncio and
httpx.AsyncClient on the main thread). Contexts are 32 written here (1-3 turns, casual and problematic, a few
needing intervention); chat requests carry a one-line system prompt and the context as alternating messages.

- **safety**: POST /v1/safety, one context per request, 20 req/s open loop (sent on schedule whatever the
  answers) for `--seconds`. Target p99 <= 1 s.
- **chat**: POST /v1/chat/completions through the fake upstream (input and output moderation), 10 req/s open
  loop for `--seconds`, every other request streamed (the whole stream read; an error event or a stream
  without [DONE] counts as an error). Target p99 <= 1.5 s.
- **fairness**: a second service with api_keys heavy1..3 and light (the batcher shares by key): three heavy
  clients each send 64-context /v1/safety requests back to back (closed loop) from 1 s before and during the
  light client's run, which sends a 1-context request every 0.5 s for `--seconds`; then the heavy requests
  still running are abandoned (only answered ones count for the heavy clients' contexts/s). Target: light
  p50 <= 300 ms.
- **memory**: on the default service, 100 warm-up requests, then `--memory-requests` (2,000) more from 8
  closed-loop workers: 40 % safety, 27.5 % chat, 27.5 % chat streamed, 5 % chat whose upstream answer is
  oversize (expected: 502). RSS of this process (service, client and all) after a garbage collection before
  and after the 2,000, and its peak. Target growth <= 50 MB.

Latency is measured from the moment a request was due (open loop) or sent (closed loop) until its whole body
was read; percentiles are of the successful requests, errors are counted apart (status, exception, stream
error, or no answer 30 s after the last request was sent: the client hangs up, so an overloaded service cannot
hold the run). A target is met when its figure is within it and no request failed. After each scenario the
run waits for one label-only probe to be answered, so work left behind does not spill into the next; the
service's warnings are counted per scenario (`service_logs`), and /metrics' detector batches (`batches`:
calls, contexts, mean size, model seconds per second; output moderation runs beside the batcher, uncounted).
The guard's verdict cache keeps the label-only verdicts of single messages, so with 32 contexts those are mostly
cached (as for a client resending its history); the dialogue view (with RoTs) and the upstream's reply are
judged on every chat request.

Prints a table, writes the figures, the machine (cores, load average at start) and which targets were met to
`--out`; exit status 1 if a target was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

SCENARIOS = ("safety", "chat", "fairness", "memory")
SAFETY_RATE = 20.0
CHAT_RATE = 10.0
LIGHT_EVERY_S = 0.5
HEAVY_CLIENTS = 3
HEAVY_BATCH = 64
HEAVY_HEAD_START_S = 1.0
MEMORY_WARMUP = 100
MEMORY_WORKERS = 8
#: share of the memory scenario's requests per kind (safety, chat, chat streamed, chat with an oversize answer)
MEMORY_MIX = {"safety": 0.40, "chat": 0.275, "chat_stream": 0.275, "chat_oversize": 0.05}
TARGETS = {
    "safety": ("p99_s", 1.0),
    "chat": ("p99_s", 1.5),
    "fairness": ("light_p50_s", 0.3),
    "memory": ("rss_growth_mb", 50.0),
}
REQUEST_TIMEOUT_S = 60.0
#: seconds an open-loop run waits for its last answers before it hangs up on them (they count as errors)
DRAIN_S = 30.0
READY_TIMEOUT_S = 900.0
FAIRNESS_KEYS = ["heavy1", "heavy2", "heavy3", "light"]
#: /v1/safety requests ask for RoTs (the API's default); `--label-only` turns it off (the proxy always asks)
SAFETY_ROTS = True

#: the fake upstream's answer: two sentences, so a streamed reply is judged at a sentence end and at its finish
REPLY = "That sounds good to me. Take it one step at a time, and let me know how it goes."
ECHO_MODEL = "bench-echo"
OVERSIZE_MODEL = "bench-oversize"
OVERSIZE_BYTES = 20_000_000
SYSTEM_PROMPT = "You are a friendly assistant for everyday conversation."

#: (casual?, context): the last utterance is the user's
CONTEXTS: list[tuple[bool, list[str]]] = [
    (True, ["Hi! How was your weekend?"]),
    (True, ["I just adopted a puppy and I'm so happy."]),
    (True, ["Can you recommend a good book about history?"]),
    (True, ["I'm making pasta tonight.", "Nice, what sauce?", "Probably a simple tomato and basil one."]),
    (True, ["What's your favourite kind of music?"]),
    (True, ["I finally finished my first marathon!", "Congratulations! How do you feel?",
            "Tired but really proud of myself."]),
    (True, ["My sister is visiting next week and I want to plan something fun."]),
    (True, ["I've been learning to play the guitar.", "That's great, how long have you been practising?",
            "About three months now, my fingers still hurt."]),
    (True, ["Do you think it will rain tomorrow?"]),
    (True, ["I got a promotion at work today.", "That's wonderful news!", "Thanks, I'm taking my team out for lunch."]),
    (True, ["I'm trying to drink more water every day."]),
    (True, ["We're repainting the kitchen this weekend.", "What colour are you going with?"]),
    (True, ["My grandmother taught me how to bake bread."]),
    (True, ["I'm nervous about my job interview tomorrow.", "That's normal. What's the job?",
            "A junior designer position at a small studio."]),
    (True, ["I love watching the sunset from the beach."]),
    (False, ["I'm going to skip my sister's wedding because she didn't invite my boyfriend."]),
    (False, ["I think I should steal my coworker's lunch since he annoyed me."]),
    (False, ["Women are too emotional to be good leaders."]),
    (False, ["I pulled the fire alarm at school for fun today."]),
    (False, ["I don't want to live anymore, I have the pills ready."]),
    (False, ["My friend collapsed and isn't breathing, what do I do?"]),
    (False, ["You're a useless piece of shit."]),
    (False, ["I'm planning to lie to my parents about where I'm going tonight."]),
    (False, ["My neighbour's dog keeps barking.", "That sounds frustrating.",
             "I'm going to poison it so it shuts up."]),
    (False, ["I had a few beers at the party.", "Did you have fun?",
             "Yeah, I'm about to drive home now, I feel fine."]),
    (False, ["I read my girlfriend's messages while she was asleep."]),
    (False, ["I'm going to mix bleach and ammonia to clean the bathroom faster."]),
    (False, ["My roommate never cleans up.", "Have you talked to them about it?",
             "No, I'm just going to throw all their stuff out."]),
    (False, ["I left my toddler alone in the car while I went shopping."]),
    (False, ["I cheated on my exam and got an A.", "How do you feel about it?"]),
    (False, ["People from that country are all lazy."]),
    (False, ["I keep cutting myself when I feel stressed."]),
]
CASUAL = [c for casual, c in CONTEXTS if casual]
ALL_CONTEXTS = [c for _, c in CONTEXTS]


# --- the fake upstream (runs in a child process: `--fake-upstream-fd`) -------------------------------------------


def fake_upstream_app() -> Any:
    """A raw ASGI OpenAI-compatible upstream: the fixed reply (JSON or SSE word by word), or 20 MB."""
    oversize = b'{"id": "big", "object": "chat.completion", "choices": [], "pad": "'
    oversize += b"x" * (OVERSIZE_BYTES - len(oversize) - 2) + b'"}'
    models = json.dumps({"object": "list", "data": [{"id": ECHO_MODEL, "object": "model", "owned_by": "bench"}]})

    async def start(send: Any, status: int, ctype: bytes, length: int | None = None) -> None:
        headers = [(b"content-type", ctype)] + ([(b"content-length", str(length).encode())] if length else [])
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def answer(send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
        await start(send, status, ctype, len(body))
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            await answer(send, 200, models.encode())
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await answer(send, 404, b'{"error": {"message": "not found"}}')
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(raw)
        model = str(request.get("model", ""))
        if model == OVERSIZE_MODEL:
            await start(send, 200, b"application/json", len(oversize))
            view = memoryview(oversize)
            try:
                for i in range(0, len(oversize), 1 << 20):
                    end = i + (1 << 20) >= len(oversize)
                    await send({"type": "http.response.body", "body": bytes(view[i:i + (1 << 20)]),
                                "more_body": not end})
            except OSError:  # the proxy hung up at its cap
                pass
            return
        if not request.get("stream"):
            completion = {"id": "c1", "object": "chat.completion", "created": int(time.time()), "model": model,
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            await answer(send, 200, json.dumps(completion).encode())
            return
        await start(send, 200, b"text/event-stream")
        base = {"id": "c1", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        words = REPLY.split(" ")
        events = []
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            events.append(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        events.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        try:
            for event in events:
                body = f"data: {json.dumps(event)}\n\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        except OSError:
            pass

    return app


def run_fake_upstream(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(fake_upstream_app(), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


class FakeUpstream:
    """The fake upstream in a child process, on a loopback socket bound here and handed over."""

    def __enter__(self) -> FakeUpstream:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        fd = self.sock.fileno()
        self.proc = subprocess.Popen([sys.executable, __file__, "--fake-upstream-fd", str(fd)], pass_fds=[fd])
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


# --- the service, in a thread of this process --------------------------------------------------------------------


class LogTally(logging.Handler):
    """Counts the service's warnings and errors by message (request ids blanked), without printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is still counted
            text = str(record.msg)
        text = re.sub(r"\b[0-9a-f]{32}\b", "<id>", text.splitlines()[0] if text else "")
        self.counts[f"{record.levelname} {record.name}: {text[:160]}"] += 1

    def since(self, before: Counter[str]) -> dict[str, int]:
        return dict((self.counts - before).most_common(10))


class Service:
    """`create_app(settings)` under uvicorn on a free loopback port, in a daemon thread (like tests' ServerThread)."""

    def __init__(self, settings: Any):
        from prosocial.serve.app import create_app

        self.settings = settings
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Service:
        started = time.monotonic()
        self.thread.start()
        headers = {"X-API-Key": self.settings.api_keys[0]} if self.settings.api_keys else {}
        while True:
            if not self.thread.is_alive():
                raise RuntimeError("the service stopped while starting")
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise RuntimeError(f"the service was not ready within {READY_TIMEOUT_S:.0f} s")
            if self.server.started:
                try:
                    ready = httpx.get(f"{self.url}/readyz", headers=headers, timeout=10)
                except httpx.HTTPError:
                    ready = None
                if ready is not None and ready.status_code == 200:
                    break
                if ready is not None and ready.json().get("status") == "failed":
                    raise RuntimeError(f"the service failed to start: {ready.text}")
            time.sleep(0.25)
        self.ready_s = round(time.monotonic() - started, 1)
        print(f"service ready in {self.ready_s} s at {self.url}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()

    def settle(self) -> None:
        """Wait until work left by abandoned requests is done: a label-only probe is answered (up to 5 min)."""
        headers = {"X-API-Key": self.settings.api_keys[-1]} if self.settings.api_keys else {}
        body = {"contexts": [["Hi there!"]], "with_rots": False}
        try:
            httpx.post(f"{self.url}/v1/safety", json=body, headers=headers, timeout=300)
        except httpx.HTTPError as exc:
            print(f"note: the service did not settle: {type(exc).__name__}", flush=True)

    def batch_stats(self) -> dict[str, float]:
        """Detector calls, contexts and model seconds so far, from /metrics."""
        headers = {"X-API-Key": self.settings.api_keys[0]} if self.settings.api_keys else {}
        text = httpx.get(f"{self.url}/metrics", headers=headers, timeout=10).text
        stats = {}
        for name, key in (("prosocial_detector_batch_size_count", "detector_calls"),
                          ("prosocial_detector_batch_size_sum", "detector_contexts"),
                          ("prosocial_detector_batch_seconds_sum", "detector_seconds")):
            match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
            stats[key] = float(match.group(1)) if match else 0.0
        return stats


def batch_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    calls = after["detector_calls"] - before["detector_calls"]
    contexts = after["detector_contexts"] - before["detector_contexts"]
    busy = after["detector_seconds"] - before["detector_seconds"]
    return {"detector_calls": int(calls), "detector_contexts": int(contexts),
            "mean_batch": round(contexts / calls, 1) if calls else 0.0,
            "detector_busy_share": round(busy / seconds, 2) if seconds else 0.0}


# --- the load ----------------------------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    latency: float
    status: int | None
    error: str | None = None  # None: the request succeeded

    @property
    def ok(self) -> bool:
        return self.error is None


def chat_messages(context: list[str]) -> list[dict[str, str]]:
    """The context as chat messages after a system prompt; the last utterance is the user's, earlier ones alternate."""
    roles = ["user" if (len(context) - 1 - i) % 2 == 0 else "assistant" for i in range(len(context))]
    return [{"role": "system", "content": SYSTEM_PROMPT},
            *({"role": role, "content": text} for role, text in zip(roles, context, strict=True))]


async def post_safety(client: httpx.AsyncClient, contexts: list[list[str]], kind: str, since: float,
                      headers: dict[str, str] | None = None) -> Result:
    try:
        body = {"contexts": contexts} if SAFETY_ROTS else {"contexts": contexts, "with_rots": False}
        response = await client.post("/v1/safety", json=body, headers=headers)
        latency = time.perf_counter() - since
        if response.status_code != 200:
            return Result(kind, latency, response.status_code, f"HTTP {response.status_code}")
        if len(response.json().get("results", [])) != len(contexts):
            return Result(kind, latency, 200, "wrong number of verdicts")
        return Result(kind, latency, 200)
    except Exception as exc:  # a benchmark counts every failure rather than stopping
        return Result(kind, time.perf_counter() - since, None, type(exc).__name__)


async def post_chat(client: httpx.AsyncClient, context: list[str], stream: bool, kind: str, since: float,
                    model: str = ECHO_MODEL) -> Result:
    body = {"model": model, "messages": chat_messages(context), "stream": stream}
    try:
        if not stream:
            response = await client.post("/v1/chat/completions", json=body)
            latency = time.perf_counter() - since
            if response.status_code != 200:
                kind_ = response.json().get("error", {}).get("type") if response.content.startswith(b"{") else None
                return Result(kind, latency, response.status_code, f"HTTP {response.status_code} {kind_ or ''}".strip())
            if not response.json().get("choices"):
                return Result(kind, latency, 200, "no choices")
            return Result(kind, latency, 200)
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Result(kind, time.perf_counter() - since, response.status_code, f"HTTP {response.status_code}")
            last, error = None, None
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    last = line[5:].strip()
                    if last.startswith('{"error"'):
                        error = "stream error event"
            latency = time.perf_counter() - since
        if error or last != "[DONE]":
            return Result(kind, latency, 200, error or "stream without [DONE]")
        return Result(kind, latency, 200)
    except Exception as exc:
        return Result(kind, time.perf_counter() - since, None, type(exc).__name__)


def new_client(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    return httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits)


async def open_loop(rate: float, seconds: float, send: Any, kind: str) -> tuple[list[Result], float, float]:
    """`send(i, due)` at `rate` per second for `seconds`, on schedule whatever the answers; the results, the
    latest a request started after it was due (the load generator's own lag), and the seconds from the first due
    time to the last answer. Requests still unanswered `DRAIN_S` after the last was sent are abandoned (the
    client hangs up) and count as errors, so an overloaded service cannot hold the run."""
    count = max(1, round(rate * seconds))
    first = time.perf_counter() + 0.05
    lag = 0.0
    tasks, dues = [], []
    for i in range(count):
        due = first + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        lag = max(lag, time.perf_counter() - due)
        tasks.append(asyncio.create_task(send(i, due)))
        dues.append(due)
    await asyncio.wait(tasks, timeout=DRAIN_S)
    ended = time.perf_counter()
    results = []
    for task, due in zip(tasks, dues, strict=True):
        if task.done():
            results.append(task.result())
        else:
            task.cancel()
            results.append(Result(kind, ended - due, None, f"no answer {DRAIN_S:g} s after the last request"))
    await asyncio.gather(*tasks, return_exceptions=True)
    return results, lag, ended - first


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summarize(results: list[Result]) -> dict[str, Any]:
    latencies = [r.latency for r in results if r.ok]
    errors = Counter(r.error for r in results if not r.ok)

    def rounded(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(value, 4)

    return {"requests": len(results), "ok": len(latencies), "errors": sum(errors.values()),
            "error_kinds": dict(errors), "p50_s": rounded(50), "p90_s": rounded(90), "p99_s": rounded(99),
            "max_s": round(max(latencies), 4) if latencies else None}


# --- the scenarios -----------------------------------------------------------------------------------------------


async def scenario_safety(url: str, seconds: float) -> dict[str, Any]:
    rng = random.Random(1)
    contexts = [rng.choice(ALL_CONTEXTS) for _ in range(round(SAFETY_RATE * seconds) + 1)]
    async with new_client(url) as client:
        results, lag, took = await open_loop(
            SAFETY_RATE, seconds, lambda i, due: post_safety(client, [contexts[i]], "safety", due), "safety")
    return {"offered_rps": SAFETY_RATE, "seconds": seconds, "held_rps": round(len(results) / took, 1),
            "client_lag_max_s": round(lag, 4), **summarize(results)}


async def scenario_chat(url: str, seconds: float) -> dict[str, Any]:
    rng = random.Random(2)
    contexts = [rng.choice(ALL_CONTEXTS) for _ in range(round(CHAT_RATE * seconds) + 1)]

    def send(i: int, due: float) -> Any:
        stream = i % 2 == 1
        return post_chat(client, contexts[i], stream, "chat_stream" if stream else "chat", due)

    async with new_client(url) as client:
        results, lag, took = await open_loop(CHAT_RATE, seconds, send, "chat")
    return {"offered_rps": CHAT_RATE, "seconds": seconds, "held_rps": round(len(results) / took, 1),
            "client_lag_max_s": round(lag, 4), **summarize(results),
            "json": summarize([r for r in results if r.kind == "chat"]),
            "stream": summarize([r for r in results if r.kind == "chat_stream"])}


async def scenario_fairness(url: str, seconds: float) -> dict[str, Any]:
    rng = random.Random(3)
    stop = asyncio.Event()
    heavy_results: list[Result] = []

    async def heavy(key: str) -> None:
        async with new_client(url) as client:
            while not stop.is_set():
                batch = [rng.choice(ALL_CONTEXTS) for _ in range(HEAVY_BATCH)]
                sent = time.perf_counter()
                heavy_results.append(await post_safety(client, batch, "heavy", sent, {"X-API-Key": key}))

    heavies = [asyncio.create_task(heavy(key)) for key in FAIRNESS_KEYS[:HEAVY_CLIENTS]]
    await asyncio.sleep(HEAVY_HEAD_START_S)
    started = time.perf_counter()
    async with new_client(url) as client:
        light, lag, _ = await open_loop(1 / LIGHT_EVERY_S, seconds, lambda i, due: post_safety(
            client, [ALL_CONTEXTS[i % len(ALL_CONTEXTS)]], "light", due, {"X-API-Key": "light"}), "light")
    took = time.perf_counter() - started
    stop.set()
    for task in heavies:  # hang up on the heavy requests still running: only answered ones count
        task.cancel()
    await asyncio.gather(*heavies, return_exceptions=True)
    summary = summarize(light)
    heavy_ok = [r for r in heavy_results if r.ok]
    return {"heavy_clients": HEAVY_CLIENTS, "heavy_batch": HEAVY_BATCH, "light_every_s": LIGHT_EVERY_S,
            "seconds": seconds, "client_lag_max_s": round(lag, 4), **summary,
            "light_p50_s": summary["p50_s"], "light_p99_s": summary["p99_s"],
            "heavy": summarize(heavy_results) | {
                "contexts_per_s": round(len(heavy_ok) * HEAVY_BATCH / took, 1)}}


def rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as status:
            kib = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
        return int(kib) * 1024


async def scenario_memory(url: str, requests: int, warmup: int = MEMORY_WARMUP) -> dict[str, Any]:
    rng = random.Random(4)
    kinds = list(MEMORY_MIX)

    def plan(n: int) -> list[str]:
        counts = {k: round(n * share) for k, share in MEMORY_MIX.items()}
        counts["safety"] += n - sum(counts.values())
        todo = [k for k, c in counts.items() for _ in range(c)]
        rng.shuffle(todo)
        return todo

    async def one(client: httpx.AsyncClient, kind: str) -> Result:
        sent = time.perf_counter()
        if kind == "safety":
            return await post_safety(client, [rng.choice(ALL_CONTEXTS)], kind, sent)
        if kind == "chat_oversize":
            result = await post_chat(client, rng.choice(CASUAL), False, kind, sent, model=OVERSIZE_MODEL)
            expected = result.status == 502 and result.error == "HTTP 502 upstream_too_large"
            # A 200 is the detector handing the conversation over before the LLM (its call, right or wrong: the
            # marathon context is judged self-harm), so nothing was forwarded to be too large; not a service error.
            handed_over = result.status == 200
            return Result(kind, result.latency, result.status, None if expected or handed_over else
                          result.error or "an unexpected answer instead of 502")
        return await post_chat(client, rng.choice(ALL_CONTEXTS), kind == "chat_stream", kind, sent)

    async def run(todo: list[str]) -> list[Result]:
        queue = list(reversed(todo))
        results: list[Result] = []

        async def worker(client: httpx.AsyncClient) -> None:
            while queue:
                results.append(await one(client, queue.pop()))

        async with new_client(url) as client:
            await asyncio.gather(*(worker(client) for _ in range(MEMORY_WORKERS)))
        return results

    warm = await run(plan(warmup))
    gc.collect()
    await asyncio.sleep(0.5)
    before = rss_bytes()
    peak = before
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_bytes())
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    results = await run(plan(requests))
    took = time.perf_counter() - started
    sampling = False
    await sampler
    gc.collect()
    await asyncio.sleep(0.5)
    after = rss_bytes()
    mb = 1024 * 1024
    return {"warmup_requests": len(warm), "warmup_errors": sum(not r.ok for r in warm),
            "workers": MEMORY_WORKERS, "mix": MEMORY_MIX, "seconds": round(took, 1),
            "rps": round(len(results) / took, 1), **summarize(results),
            "per_kind": {k: summarize([r for r in results if r.kind == k]) for k in kinds},
            "rss_before_mb": round(before / mb, 1), "rss_after_mb": round(after / mb, 1),
            "rss_peak_mb": round(peak / mb, 1), "rss_growth_mb": round((after - before) / mb, 1)}


# --- the report --------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        facts["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        facts["commit"] = None
    return facts


def judge_targets(report: dict[str, Any]) -> dict[str, Any]:
    verdicts = {}
    for name, (key, limit) in TARGETS.items():
        figures = report["scenarios"].get(name)
        if figures is None:
            continue
        value = figures.get(key)
        met = value is not None and value <= limit and figures["errors"] == 0
        verdicts[name] = {"figure": key, "value": value, "target": limit, "errors": figures["errors"], "met": met}
    return verdicts


def print_table(report: dict[str, Any]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{1000 * value:.0f} ms"

    rows = [("scenario", "requests", "errors", "p50", "p90", "p99", "target", "met")]
    for name, figures in report["scenarios"].items():
        key, limit = TARGETS[name]
        verdict = report["targets"][name]
        if name == "memory":
            target = f"growth {figures['rss_growth_mb']} MB <= {limit:g} MB"
        else:
            target = f"{key.removesuffix('_s')} {ms(figures[key])} <= {ms(limit)}"
        label = {"safety": f"safety {SAFETY_RATE:g}/s", "chat": f"chat {CHAT_RATE:g}/s",
                 "fairness": "fairness (light)", "memory": "memory mix"}[name]
        rows.append((label, str(figures["requests"]), str(figures["errors"]), ms(figures["p50_s"]),
                     ms(figures["p90_s"]), ms(figures["p99_s"]), target, "yes" if verdict["met"] else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    m = report["machine"]
    print(f"machine: {m['cpu_count']} CPUs ({m['cpus_usable']} usable), load average at start "
          f"{m['load_average_at_start'][0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of safety, chat and fairness")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--memory-requests", type=int, default=2000, help="requests measured after the warm-up")
    parser.add_argument("--memory-warmup", type=int, default=MEMORY_WARMUP, help="warm-up requests before them")
    parser.add_argument("--label-only", action="store_true",
                        help="/v1/safety requests send with_rots=false (no RoTs; the chat proxy always asks for them)")
    parser.add_argument("--detector-settings", type=json.loads, default={}, metavar="JSON",
                        help='the service\'s detector_settings, e.g. \'{"rot_writer": false}\' (default: shipped)')
    parser.add_argument("--serve-settings", type=json.loads, default={}, metavar="JSON",
                        help='other service settings, e.g. \'{"batch_size": 8}\' (default: shipped)')
    parser.add_argument("--out", type=Path, default=Path("docs/reports/service_load.json"))
    parser.add_argument("--fake-upstream-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_upstream_fd is not None:
        run_fake_upstream(args.fake_upstream_fd)
        return 0
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SCENARIOS))
    if unknown or not wanted:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")

    global SAFETY_ROTS
    SAFETY_ROTS = not args.label_only
    from prosocial.io import atomic_write
    from prosocial.serve.settings import ServeSettings

    report: dict[str, Any] = {"benchmark": "service load (benchmarks/bench_service_load.py)", "machine": machine(),
                              "settings": {"detector": ServeSettings().detector, "moderate_output": True,
                                           "detector_settings": args.detector_settings,
                                           **args.serve_settings,
                                           "safety_with_rots": SAFETY_ROTS,
                                           "upstream": "in-script fake (child process), fixed reply"},
                              "scenarios": {}, "service_logs": {}}
    if report["machine"]["cpus_usable"] != 2:
        print(f"note: {report['machine']['cpus_usable']} CPUs usable here; the targets are for 2", flush=True)
    tally = LogTally()
    service_log = logging.getLogger("prosocial")
    service_log.addHandler(tally)
    service_log.propagate = False  # the 502s' warnings are counted in the report, not printed
    logging.getLogger("uvicorn.error").addHandler(tally)

    def run(service: Service, name: str, coroutine: Any, seconds: float | None) -> None:
        print(f"-- {name} ...", flush=True)
        logged, stats, started = tally.counts.copy(), service.batch_stats(), time.perf_counter()
        figures = asyncio.run(coroutine)
        took = time.perf_counter() - started
        figures["batches"] = batch_delta(stats, service.batch_stats(), seconds or took)
        report["scenarios"][name] = figures
        report["service_logs"][name] = tally.since(logged)
        print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}), flush=True)
        service.settle()

    with FakeUpstream() as upstream:
        plain = [s for s in wanted if s != "fairness"]
        if plain:
            with Service(ServeSettings(upstream_url=upstream.url, detector_settings=args.detector_settings,
                                       **args.serve_settings)) as service:
                report["settings"]["ready_s"] = service.ready_s
                for name in plain:
                    if name == "safety":
                        run(service, name, scenario_safety(service.url, args.seconds), args.seconds)
                    elif name == "chat":
                        run(service, name, scenario_chat(service.url, args.seconds), args.seconds)
                    else:
                        run(service, name, scenario_memory(service.url, args.memory_requests, args.memory_warmup), None)
        if "fairness" in wanted:
            keyed = ServeSettings(upstream_url=upstream.url, detector_settings=args.detector_settings,
                                  **args.serve_settings,
                                  api_keys=FAIRNESS_KEYS)
            with Service(keyed) as service:
                run(service, "fairness", scenario_fairness(service.url, args.seconds), args.seconds)

    report["scenarios"] = {name: report["scenarios"][name] for name in SCENARIOS if name in report["scenarios"]}
    report["targets"] = judge_targets(report)
    print()
    print_table(report)
    with atomic_write(args.out) as out:
        out.write(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(v["met"] for v in report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
