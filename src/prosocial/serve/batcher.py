"""Micro-batching: concurrent requests share one `detector.predict` call, run off the event loop.

Detectors are much faster per context in batches, and a single worker thread keeps model work from
competing with itself for the CPU; the event loop only queues work and awaits futures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prosocial.canary.base import SafetyDetector, Verdict

log = logging.getLogger(__name__)


@dataclass
class _Job:
    contexts: list[list[str]]
    with_rots: bool
    future: asyncio.Future[list[Verdict]]


class MicroBatcher:
    """Collects jobs until `max_size` contexts are queued or `max_wait_ms` passed since the first, then runs them.

    `on_batch(size, seconds)` is told about every model call (for metrics).
    """

    def __init__(
        self,
        detector: SafetyDetector,
        max_size: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.detector = detector
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prosocial-model")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="prosocial-batcher")

    async def stop(self) -> None:
        """Finish queued jobs, then stop the worker (called after the server stopped taking requests)."""
        await self._queue.join()
        if self._task:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)  # only a warm-up can still be running

    async def run_in_model_thread(self, fn: Callable[[], object]) -> object:
        """Other model work (warm-up, the agent) shares the same thread, so it never runs beside a batch."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        if not contexts:
            return []
        future: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job([list(c) for c in contexts], with_rots, future))
        return await future

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        size = len(jobs[0].contexts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    job = self._queue.get_nowait()
                else:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            jobs.append(job)
            size += len(job.contexts)
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            try:
                # RoTs cost extra, so label-only jobs are not made to pay for them.
                for with_rots in (True, False):
                    group = [j for j in jobs if j.with_rots == with_rots and not j.future.cancelled()]
                    if group:
                        await self._predict_group(group, with_rots)
            finally:
                for _ in jobs:
                    self._queue.task_done()

    async def _predict_group(self, jobs: list[_Job], with_rots: bool) -> None:
        contexts = [c for job in jobs for c in job.contexts]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            verdicts = await loop.run_in_executor(self._executor, self.detector.predict, contexts, with_rots)
            if len(verdicts) != len(contexts):
                raise RuntimeError(f"the detector returned {len(verdicts)} verdicts for {len(contexts)} contexts")
        except Exception as exc:
            if len(jobs) > 1:  # one bad job must not fail the others that happened to share its batch
                for job in jobs:
                    await self._predict_group([job], with_rots)
                return
            log.exception("detector failed on a batch of %d contexts", len(contexts))
            _settle(jobs[0].future, exc=exc)
            return
        if self.on_batch:
            self.on_batch(len(contexts), time.perf_counter() - started)
        start = 0
        for job in jobs:
            _settle(job.future, result=verdicts[start : start + len(job.contexts)])
            start += len(job.contexts)


def _settle(future: asyncio.Future, result: object = None, exc: BaseException | None = None) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
