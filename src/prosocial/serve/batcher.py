"""Micro-batching: concurrent requests share one `detector.predict` call, run off the event loop, and clients
share the batches fairly.

Detectors are much faster per context in batches, and a single worker thread keeps model work from
competing with itself for the CPU; the event loop only queues work and awaits futures.

One worker serves everyone, so it must not be monopolised: each client (`CLIENT`: its API key, or its address)
waits in its own queue and a batch is filled from the queues in turn, a job larger than a batch going in
batch-sized pieces, so a one-context request is never stuck behind all of another client's 64-context jobs.
The queue is bounded (`QueueFull`, a 429 for the client), and a job whose caller was cancelled (its client hung
up) leaves the queue at once instead of running for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field

from prosocial.canary.base import SafetyDetector, Verdict

log = logging.getLogger(__name__)

#: who is asking (set by the service per request): the unit of fairness between callers of `predict`
CLIENT: ContextVar[str] = ContextVar("prosocial_client", default="-")


class QueueFull(Exception):
    """The batcher already holds `max_queued` contexts; the caller should come back later."""


@dataclass(eq=False)  # jobs are told apart by identity (a deque's remove)
class _Job:
    contexts: list[list[str]]
    with_rots: bool
    future: asyncio.Future[list[Verdict]]
    taken: int = 0  # contexts handed to batches so far
    settled: int = 0  # contexts with a verdict so far
    verdicts: list[Verdict | None] = field(init=False)

    def __post_init__(self) -> None:
        self.verdicts = [None] * len(self.contexts)

    @property
    def left(self) -> int:
        return len(self.contexts) - self.taken

    def settle(self, start: int, verdicts: list[Verdict]) -> None:
        if self.future.done():  # the client went away, or another piece of the job failed
            return
        self.verdicts[start : start + len(verdicts)] = verdicts
        self.settled += len(verdicts)
        if self.settled == len(self.contexts):
            self.future.set_result(self.verdicts)  # type: ignore[arg-type]  # every slot is filled now

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Piece:
    """The contexts `start:stop` of a job, as one batch takes them."""

    job: _Job
    start: int
    stop: int

    @property
    def contexts(self) -> list[list[str]]:
        return self.job.contexts[self.start : self.stop]


#: a client with at most this many contexts waiting is light: a batch it shares with other clients' work holds
#: at most `LIGHT_BATCH` contexts, so its answer comes after a short batch, not a full one (a one-context request
#: beside three clients sending 64-context jobs, batches of 8: p50 526 ms → 376 ms; 2 instead of 4 gave 362 ms)
LIGHT_JOB = 2
LIGHT_BATCH = 4


class MicroBatcher:
    """Collects jobs until `max_size` contexts are queued or `max_wait_ms` passed since the first, then runs them.

    A batch takes up to `max_size` contexts round robin from the clients' queues; at most `max_queued` contexts
    wait (None: no bound), though a job is always taken into an empty queue. `on_batch(size, seconds)` is told
    about every model call (for metrics).
    """

    def __init__(
        self,
        detector: SafetyDetector,
        max_size: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        max_queued: int | None = None,
    ):
        self.detector = detector
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self.max_queued = max_queued
        self._waiting: OrderedDict[str, deque[_Job]] = OrderedDict()  # per client, the next one to serve first
        self._queued = 0  # contexts waiting for a batch
        self._busy = False  # a batch is being run
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prosocial-model")
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Contexts waiting for a batch."""
        return self._queued

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="prosocial-batcher")

    async def stop(self) -> None:
        """Finish queued jobs, then stop the worker (called after the server stopped taking requests)."""
        await self._drained.wait()
        if self._task:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)  # only a warm-up can still be running

    async def run_in_model_thread(self, fn: Callable[[], object]) -> object:
        """Other model work (warm-up, the agent) shares the same thread, so it never runs beside a batch."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def predict(
        self, contexts: Sequence[Sequence[str]], with_rots: bool = True, client: str | None = None
    ) -> list[Verdict]:
        """The verdicts of `contexts`, in order; `client` (default: `CLIENT`) is whose turn they take."""
        if not contexts:
            return []
        if self.max_queued is not None and self._queued and self._queued + len(contexts) > self.max_queued:
            raise QueueFull(f"{self._queued} contexts are waiting (max_queue_contexts {self.max_queued})")
        client = CLIENT.get() if client is None else client
        job = _Job([list(c) for c in contexts], with_rots, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(client, deque()).append(job)
        self._queued += len(job.contexts)
        self._drained.clear()
        self._arrived.set()
        try:
            return await job.future
        except asyncio.CancelledError:  # the caller is gone: what no batch took yet is not run
            self._withdraw(client, job)
            raise

    def _withdraw(self, client: str, job: _Job) -> None:
        self._queued -= job.left
        job.taken = len(job.contexts)
        queue = self._waiting.get(client)
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                del self._waiting[client]
        self._note_idle()

    def _note_idle(self) -> None:
        if not self._queued and not self._busy:
            self._drained.set()

    async def _collect(self) -> list[_Piece]:
        """Wait for work, then up to `max_wait` for a full batch, and take one."""
        while not self._queued:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = time.monotonic() + self.max_wait
        while self._queued < self.max_size and (remaining := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return self._take()

    def _take(self) -> list[_Piece]:
        """Up to `max_size` contexts, round robin: each waiting client in turn gives an equal share of the room left
        (one context at least) until the batch is full or nobody waits; the client served first this time is
        served last the next time."""
        pieces: list[_Piece] = []
        room = self.max_size
        if len(self._waiting) > 1 and any(sum(j.left for j in q) <= LIGHT_JOB for q in self._waiting.values()):
            room = min(room, LIGHT_BATCH)  # a client with a small request waits beside bulk work: keep its batch short
        while room and self._waiting:
            share = max(1, room // len(self._waiting))
            for client in list(self._waiting):
                room -= self._take_from(client, min(share, room), pieces)
                if not room:
                    break
        return pieces

    def _take_from(self, client: str, want: int, pieces: list[_Piece]) -> int:
        """Up to `want` contexts from the head of `client`'s queue into `pieces`; the client goes to the back."""
        queue = self._waiting[client]
        got = 0
        while queue and got < want:
            job = queue[0]
            if job.future.done():  # its client is gone, or a piece of it failed: no more of it runs
                self._queued -= job.left
                job.taken = len(job.contexts)
            else:
                n = min(want - got, job.left)
                pieces.append(_Piece(job, job.taken, job.taken + n))
                job.taken += n
                self._queued -= n
                got += n
            if not job.left:
                queue.popleft()
        if queue:
            self._waiting.move_to_end(client)
        else:
            del self._waiting[client]
        return got

    async def _run(self) -> None:
        while True:
            pieces = await self._collect()
            self._busy = True
            try:
                # RoTs cost extra, so label-only jobs are not made to pay for them.
                for with_rots in (True, False):
                    group = [p for p in pieces if p.job.with_rots == with_rots and not p.job.future.done()]
                    if group:
                        await self._predict_group(group, with_rots)
            finally:
                self._busy = False
                self._note_idle()

    async def _predict_group(self, pieces: list[_Piece], with_rots: bool) -> None:
        contexts = [c for piece in pieces for c in piece.contexts]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            verdicts = await loop.run_in_executor(self._executor, self.detector.predict, contexts, with_rots)
            if len(verdicts) != len(contexts):
                raise RuntimeError(f"the detector returned {len(verdicts)} verdicts for {len(contexts)} contexts")
        except Exception as exc:
            if len(pieces) > 1:  # one bad job must not fail the others that happened to share its batch
                for piece in pieces:
                    if not piece.job.future.done():
                        await self._predict_group([piece], with_rots)
                return
            log.exception("detector failed on a batch of %d contexts", len(contexts))
            pieces[0].job.fail(exc)
            return
        if self.on_batch:
            self.on_batch(len(contexts), time.perf_counter() - started)
        start = 0
        for piece in pieces:
            piece.job.settle(piece.start, verdicts[start : start + len(piece.contexts)])
            start += len(piece.contexts)
