"""The micro-batcher's queue bound, its fairness between clients, and dropping the work of callers that left,
driven directly (asyncio, and a detector that holds each batch until the test lets it run), so every ordering
is deterministic and nothing depends on timing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import httpx
import pytest

from prosocial.canary.base import Verdict
from prosocial.canary.baselines import KeywordDetector
from prosocial.serve.app import create_app
from prosocial.serve.batcher import LIGHT_BATCH, MicroBatcher, QueueFull
from prosocial.serve.settings import ServeSettings
from tests.serve_fakes import ServerThread
from tests.test_serve import _wait_ready


class GatedDetector(KeywordDetector):
    """Records each batch (the last utterances) and tags each verdict with its context; every batch waits for
    `gate`, so the test decides when the model thread is busy."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        self.entered.set()
        assert self.gate.wait(5), "the test never opened the gate"
        self.batches.append([c[-1] for c in contexts])
        verdicts = super().predict(contexts, with_rots)
        for context, verdict in zip(contexts, verdicts, strict=True):
            verdict.rots = [context[-1]]
        return verdicts


async def _busy(batcher: MicroBatcher, detector: GatedDetector) -> asyncio.Task[list[Verdict]]:
    """A first job that holds the model thread at the gate, so what comes next has to queue."""
    first = asyncio.ensure_future(batcher.predict([["first"]], client="a"))
    await asyncio.to_thread(detector.entered.wait, 5)
    return first


def _texts(verdicts: list[Verdict]) -> list[str]:
    return [v.rots[0] for v in verdicts]


def _run(test, max_queued: int | None = None, max_size: int = 4) -> None:
    async def main() -> None:
        detector = GatedDetector()
        batcher = MicroBatcher(detector, max_size=max_size, max_wait_ms=0, max_queued=max_queued)
        batcher.start()
        try:
            await asyncio.wait_for(test(batcher, detector), 10)
        finally:
            detector.gate.set()
            await batcher.stop()

    asyncio.run(main())


def test_a_full_queue_refuses_more_work_until_it_drains():
    async def test(batcher: MicroBatcher, detector: GatedDetector) -> None:
        first = await _busy(batcher, detector)
        queued = [asyncio.ensure_future(batcher.predict([[f"q{i}"]] * 4, client="a")) for i in range(2)]
        await asyncio.sleep(0)
        assert batcher.queued == 8
        with pytest.raises(QueueFull):
            await batcher.predict([["one more"]], client="b")
        detector.gate.set()
        await asyncio.gather(first, *queued)
        assert _texts(await batcher.predict([["now it fits"]], client="b")) == ["now it fits"]

    _run(test, max_queued=8)


def _small_beside_big(big: int, max_size: int) -> list[list[str]]:
    """Client a queues `big` contexts, then b one, while the model thread is busy; both get their verdicts whole
    and in order. The batches the detector saw, the busy first one included."""
    seen: list[list[str]] = []

    async def test(batcher: MicroBatcher, detector: GatedDetector) -> None:
        first = await _busy(batcher, detector)
        texts = [f"a{i}" for i in range(big)]
        heavy = asyncio.ensure_future(batcher.predict([[t] for t in texts], client="a"))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(batcher.predict([["b0"]], client="b"))
        await asyncio.sleep(0)
        detector.gate.set()
        assert _texts(await small) == ["b0"] and _texts(await heavy) == texts
        await first
        seen.extend(detector.batches)

    _run(test, max_size=max_size)
    return seen


def test_a_small_request_is_not_stuck_behind_another_client_s_big_jobs():
    """Client a's 8 contexts go in batch-sized pieces, shared round robin with b: b's one context is in the very
    next batch, not after all of a's."""
    batches = _small_beside_big(8, max_size=4)
    assert "b0" in batches[1] and len(batches) == 4  # first, then 9 contexts in 3 batches
    assert all(len(batch) <= 4 for batch in batches)


def test_a_small_request_beside_bulk_work_rides_in_a_short_batch():
    """With batches of 8, the batch that carries b's one context holds at most LIGHT_BATCH (4), so b waits for a
    short batch; when only a's bulk work is left, batches are full again."""
    batches = _small_beside_big(16, max_size=8)
    with_b = next(batch for batch in batches if "b0" in batch)
    assert len(with_b) <= LIGHT_BATCH and max(len(batch) for batch in batches) == 8


def test_work_of_a_caller_that_left_is_dropped_before_it_runs():
    async def test(batcher: MicroBatcher, detector: GatedDetector) -> None:
        first = await _busy(batcher, detector)
        abandoned = [asyncio.ensure_future(batcher.predict([[f"gone{i}"]] * 4, client="a")) for i in range(2)]
        await asyncio.sleep(0)
        for task in abandoned:
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        assert batcher.queued == 0
        waiting = asyncio.ensure_future(batcher.predict([["still here"]], client="b"))
        await asyncio.sleep(0)
        detector.gate.set()
        assert _texts(await waiting) == ["still here"]
        await first
        assert detector.batches == [["first"], ["still here"]]

    _run(test)


def _poll(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_through_the_service_a_full_queue_is_429_and_a_client_that_hung_up_is_not_served():
    """A request whose client disconnected is cancelled (the service watches for the hang-up), so its contexts
    leave the queue; a full queue answers 429 with Retry-After in OpenAI's shape."""
    detector = GatedDetector()
    detector.gate.set()  # the warm-up runs freely
    settings = ServeSettings(batch_size=4, batch_wait_ms=0, max_queue_contexts=4, max_batch=4)
    app = create_app(settings, detector=detector)
    service = app.state.service
    results: dict[str, int] = {}

    def post(name: str, texts: list[str], timeout: float = 10) -> None:
        with httpx.Client(base_url=running.url, timeout=timeout) as client:
            try:
                response = client.post("/v1/safety", json={"contexts": [[t] for t in texts]})
                results[name] = response.status_code
            except httpx.TimeoutException:
                results[name] = 0

    with ServerThread(app) as running:
        with httpx.Client(base_url=running.url) as client:
            _wait_ready(client)
            detector.gate.clear()
            detector.entered.clear()
            threads = [threading.Thread(target=post, args=("first", ["first"]))]
            threads[0].start()
            assert detector.entered.wait(5)
            post("abandoned", ["gone"] * 4, timeout=0.3)  # the client gives up and hangs up
            _poll(lambda: service.batcher.queued == 0)  # its contexts left the queue
            threads.append(threading.Thread(target=post, args=("queued", ["q0", "q1", "q2", "q3"])))
            threads[1].start()
            _poll(lambda: service.batcher.queued == 4)
            full = client.post("/v1/safety", json={"contexts": [["one more"]]})
            assert full.status_code == 429 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["type"] == "rate_limit_error"
            detector.gate.set()
            for thread in threads:
                thread.join()
            assert 'status="499"' in client.get("/metrics").text
    assert results == {"first": 200, "abandoned": 0, "queued": 200}
    assert "gone" not in {text for batch in detector.batches for text in batch}
