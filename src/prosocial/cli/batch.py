"""Batch JSON Lines jobs shared by `check` and `respond`: stream, validate, process in batches, write atomically."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from prosocial.data.context import check_context
from prosocial.errors import DataError
from prosocial.io import atomic_write

#: Given the contexts of a batch, return one output record per context, in order.
BatchFn = Callable[[list[list[str]]], list[dict]]


def _parse(path: Path, number: int, line: str) -> tuple[object, list[str]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError.at(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=number) from None
    if not isinstance(record, dict):
        raise DataError.at(path, "expected an object with a 'context' list", line=number)
    if "context" not in record:
        raise DataError.at(path, "missing field", line=number, field="context")
    try:
        context = check_context(record["context"])
    except ValueError as exc:
        raise DataError.at(path, str(exc), line=number, field="context") from None
    return record.get("id", number), context


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_jsonl(
    source: Path,
    target: Path,
    process: BatchFn,
    batch_size: int,
    skip_invalid: bool,
    console: Console,
    what: str,
    records: str,
) -> tuple[int, int]:
    """Read `{"id", "context"}` lines, write `{"id", **result}` lines, report the counts (`what` names the job in
    the progress bar, `records` the output lines in the summary); returns (written, skipped).

    A bad line stops the job with an error naming it, unless `skip_invalid`, which skips and counts it. The
    output appears only when the whole job succeeded (temporary file, then rename), so a crash loses nothing.
    """
    if not source.is_file():
        raise DataError.at(source, "no such file")
    written = 0
    skipped: list[str] = []
    pending: list[tuple[object, list[str]]] = []
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with atomic_write(target) as out, Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=_count_lines(source))

        def flush() -> None:
            nonlocal written
            results = process([context for _, context in pending])
            for (identifier, _), result in zip(pending, results, strict=True):
                out.write(json.dumps({"id": identifier, **result}, ensure_ascii=False) + "\n")
            written += len(pending)
            progress.advance(task, len(pending))
            pending.clear()

        with open(source, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    pending.append(_parse(source, number, line))
                except DataError as exc:
                    if not skip_invalid:
                        raise
                    skipped.append(str(exc))
                    progress.advance(task)
                    continue
                if len(pending) >= batch_size:
                    flush()
        if pending:
            flush()
    for message in skipped:  # after the progress bar, so no message is overdrawn
        console.print(f"[yellow]skipped[/yellow] {message}", highlight=False, soft_wrap=True)
    note = f"; skipped {len(skipped):,} bad lines" if skipped else ""
    console.print(f"wrote {written:,} {records} to {target}{note}", highlight=False)
    return written, len(skipped)
