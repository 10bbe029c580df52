"""Batch JSON Lines jobs shared by `check` and `respond`: stream, validate, process in batches, write atomically."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from prosocial.cli.logs import held_warnings
from prosocial.data.context import MAX_CONTEXT_CHARS, check_context, clip_context
from prosocial.errors import DataError, Problem
from prosocial.io import atomic_write, read_jsonl

#: Given the contexts of a batch, return one output record per context, in order.
BatchFn = Callable[[list[list[str]]], list[dict]]
STDOUT = Path("-")

# The --input/--output help of every batch command ("\\[" keeps Rich from reading "[utterances]" as markup).
INPUT_HELP = (
    'JSON Lines: {"id": …, "context": \\[utterances, oldest first]} per line. An empty file is no error: '
    f"it gives an empty output. Contexts over {MAX_CONTEXT_CHARS:,} characters keep their newest ones."
)
OUTPUT_HELP = (
    "JSON Lines output (needs --input), one line per good input line, written only when the whole job succeeds; "
    "'-' streams it to stdout. It may not be the input file."
)


def _record(path: Path, number: int, record: object) -> tuple[object, list[str]]:
    """The id (the line number when absent) and the validated context of one input line."""
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
        return sum(1 for _ in handle)


@contextmanager
def _output(target: Path) -> Iterator[IO[str]]:
    """Where the output lines go: `target`, all at once when the job succeeds, or stdout ('-') as they come."""
    if target == STDOUT:
        yield sys.stdout
        sys.stdout.flush()
    else:
        with atomic_write(target) as handle:
            yield handle


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
    output appears only when the whole job succeeded (temporary file, then rename), so a crash loses nothing,
    and it may not replace the input. Contexts over `MAX_CONTEXT_CHARS` keep their newest characters, so one
    huge line cannot stall the job; every row is kept. Summaries are never wrapped, so scripts can read them.
    """
    if not source.is_file():
        raise DataError.at(source, "no such file")
    if target != STDOUT and (target.resolve() == source.resolve() or target.exists() and target.samefile(source)):
        raise DataError.at(target, "the output would overwrite the input; write it to another file")
    written = 0
    problems: list[Problem] | None = [] if skip_invalid else None
    clipped: list[int] = []
    pending: list[tuple[int, object, list[str]]] = []
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        held_warnings(console),
        _output(target) as out,
        Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress,
    ):
        task = progress.add_task(what, total=_count_lines(source))

        def flush() -> None:
            nonlocal written
            results = process([context for _, _, context in pending])
            for (_, identifier, _), result in zip(pending, results, strict=True):
                out.write(json.dumps({"id": identifier, **result}, ensure_ascii=False) + "\n")
            written += len(pending)
            progress.update(task, completed=pending[-1][0])
            pending.clear()

        for number, value in read_jsonl(source, problems):
            try:
                identifier, context = _record(source, number, value)
            except DataError as error:
                if problems is None:
                    raise
                problems.extend(error.problems)
                continue
            if sum(map(len, context)) > MAX_CONTEXT_CHARS:
                context = clip_context(context, MAX_CONTEXT_CHARS)
                clipped.append(number)
            pending.append((number, identifier, context))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
    for problem in problems or []:  # after the progress bar, so no message is overdrawn
        console.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if clipped:
        lines = ", ".join(map(str, clipped[:10])) + (", …" if len(clipped) > 10 else "")
        console.print(
            f"[yellow]clipped[/yellow] {len(clipped):,} context(s) over {MAX_CONTEXT_CHARS:,} characters to their "
            f"newest {MAX_CONTEXT_CHARS:,} ({escape(str(source))}, line{'s' if len(clipped) > 1 else ''} {lines})",
            highlight=False,
            soft_wrap=True,
        )
    note = f"; skipped {len(problems):,} bad lines" if problems else ""
    where = "stdout" if target == STDOUT else target
    console.print(escape(f"wrote {written:,} {records} to {where}{note}"), highlight=False, soft_wrap=True)
    return written, len(problems or [])
