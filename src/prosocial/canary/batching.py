"""Batching shared by the classifier and the RoT-bank embedder."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def run_batches(
    lengths: Sequence[int],
    batch_size: int,
    workers: int,
    work: Callable[[list[int]], None],
    progress: bool = False,
) -> None:
    """Call `work` on batches of row indices of similar length (little padding), on `workers` threads at once
    (torch and ONNX Runtime release the GIL inside ops); `work` stores its own results by row. A single batch runs
    on the calling thread: starting threads costs about a millisecond, which matters for one short context.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) == 1 and not progress:
        work(batches[0])
        return
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in tqdm(pool.map(work, batches), total=len(batches), disable=not progress, desc="classify", unit="batch"):
            pass
