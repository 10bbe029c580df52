"""Batch JSON Lines jobs shared by `check` and `respond`: stream, validate, process in batches, write atomically."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from prosocial.cli.logs import held_warnings
from prosocial.data.context import MAX_CONTEXT_CHARS
from prosocial.errors import DataError, Problem
from prosocial.io import atomic_write, read_jsonl
from prosocial.jobs.corpus import ENGINES, FORMATS, BatchFn, output_line, run_corpus, valid_records

STDOUT = Path("-")

# The --input/--output help of every batch command ("\\[" keeps Rich from reading "[utterances]" as markup).
INPUT_HELP = (
    'JSON Lines: {"id": …, "context": \\[utterances, oldest first]} per line. An empty file is no error: '
    f"it gives an empty output. Contexts over {MAX_CONTEXT_CHARS:,} characters keep their newest ones."
)
OUTPUT_HELP = (
    "JSON Lines output (needs --input), one line per good input line, written only when the whole job succeeds; "
    "'-' streams it to stdout. It may not be the input file. For shards: the output folder (one shard per shard)."
)
CORPUS_HELP = (
    " Or a folder, a glob (in the last part) or an s3:// / gs:// URI of .jsonl/.parquet shards: a corpus job, one "
    "output shard per input shard, resumable (finished shards are skipped)."
)
ENGINE = typer.Option("local", "--engine", help="Corpus jobs: local (this process) or ray (Ray Data actors).")
ADDRESS = typer.Option(None, "--address", help="With --engine ray: the cluster to join (default: a local Ray).")
ACTORS = typer.Option(None, "--actors", min=1, help="With --engine ray: model actors per node (default: 1 per CPU).")
GPUS = typer.Option(0.0, "--gpus-per-actor", min=0, help="With --engine ray: GPUs each actor reserves (e.g. 1).")
OUTPUT_FORMAT = typer.Option("jsonl", "--output-format", help="Corpus jobs: jsonl or parquet output shards.")


#: without a terminal (a log file, CI, nohup), a plain progress line on stderr at most this often
PLAIN_PROGRESS_SECONDS = 10.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


def rate_and_eta(done: int, total: int | None, elapsed: float, unit: str = "rows") -> str:
    """"12.5 rows/s, about 1m20s left": the rate over the whole run so far (batches can take minutes, longer than
    a moving window), and what is left at that rate."""
    if not done or elapsed <= 0:
        return "starting"
    rate = done / elapsed
    shown = f"{rate:,.1f} {unit}/s" if rate >= 1 else f"{60 * rate:,.1f} {unit}/min"
    if total is not None and total > done:
        shown += f", about {_duration((total - done) / rate)} left"
    return shown


class RateColumn(ProgressColumn):
    """Units per second (or minute) and the time left, for a bar whose task counts `unit`s."""

    def __init__(self, unit: str = "rows"):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        total = None if task.total is None else int(task.total)
        return Text(rate_and_eta(int(task.completed), total, task.elapsed or 0.0, self.unit))


class PlainProgress:
    """A one-line progress report on `console` (stderr) every `every` seconds when it is not a terminal, where the
    bar is hidden: a long job in a log or under nohup otherwise says nothing until it ends."""

    def __init__(self, console: Console, what: str, unit: str = "rows", every: float | None = None):
        self.console, self.what, self.unit = console, what, unit
        self.every = PLAIN_PROGRESS_SECONDS if every is None else every
        self.enabled = not console.is_terminal
        self.started = self.last = time.monotonic()

    def update(self, done: int, total: int | None, extra: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every:
            return
        self.last = now
        of = f"/{total:,}" if total is not None else ""
        rate = rate_and_eta(done, total, now - self.started, self.unit)
        self.console.print(f"{self.what}: {done:,}{of} {self.unit}{extra}, {rate}", highlight=False, soft_wrap=True,
                           markup=False)


def backend_spec(spec: str, option: str) -> tuple[str, dict]:
    """``NAME[:key=value,...]`` of a --backend/--detector option → (NAME, settings), as `eval` takes them (values
    are JSON when they parse): `-b "canary-mini:rot_min_similarity=-1"`. A backend that does not take a setting is
    refused by the registry, naming the settings it takes."""
    from prosocial.eval.reports import parse_spec

    try:
        label, name, settings = parse_spec(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    if label != spec:
        raise typer.BadParameter(f"a LABEL= only names a column in `eval`; here give NAME[:key=value,...], got "
                                 f"{spec!r}", param_hint=option)
    if not name:
        raise typer.BadParameter(f"no backend name in {spec!r}", param_hint=option)
    return name, settings


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
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), RateColumn("lines"), TimeElapsedColumn())
    with (
        held_warnings(console),
        _output(target) as out,
        Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress,
    ):
        total = _count_lines(source)
        task = progress.add_task(what, total=total)
        plain = PlainProgress(console, what, "lines")
        shown = 0  # input lines the bar counts as done

        def advance(to: int) -> None:
            nonlocal shown
            if to > shown:
                shown = to
                progress.update(task, completed=to)
                plain.update(to, total)

        def flush() -> None:
            # a row whose output is final moves the bar one line; the batch's end catches up with its last line
            # (blank and skipped lines between its rows)
            nonlocal written
            results = process([context for _, _, context in pending], lambda _: advance(shown + 1))
            for (_, identifier, _), result in zip(pending, results, strict=True):
                out.write(output_line(identifier, result) + "\n")
            written += len(pending)
            advance(pending[-1][0])
            pending.clear()

        for number, identifier, context, was_clipped in valid_records(source, read_jsonl(source, problems), problems):
            if was_clipped:
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


def check_input_output(text: str | None, input: str | None, output: str | None, one: str, verb: str) -> None:
    """--input and --output go together; without them the command needs a TEXT (`one` is what gets printed)."""
    if input is not None and output is None:
        raise typer.BadParameter("--input needs --output")
    if output is not None and input is None:
        raise typer.BadParameter(f"--output needs --input ({one} is printed)")
    if input is None and text is None:
        raise typer.BadParameter(f"give a TEXT to {verb}, or --input FILE")


@dataclass(frozen=True)
class JobOptions:
    """How `check -i` / `respond -i` run: the engine flags, the batch and output settings, and the words the
    progress bar and summary use (`what`: the command, `records`: what one output row is)."""

    engine: str
    address: str | None
    actors: int | None
    gpus: float
    batch_size: int
    fmt: str
    skip_invalid: bool
    what: str
    records: str


def run_input(source: str, target: str, make: Callable[[], BatchFn], job: JobOptions, console: Console) -> None:
    """--input as a corpus job (`make` builds each worker's batch function) or, for one JSON Lines file, here."""
    if is_corpus(source, job.engine):
        run_corpus_job(source, target, make, job, console)
    else:
        run_jsonl(Path(source), Path(target), make(), job.batch_size, job.skip_invalid, console, job.what, job.records)


def is_corpus(source: str, engine: str) -> bool:
    """A folder, glob, URI, Parquet file or --engine ray makes a corpus job; a JSON Lines file keeps the single-file
    job (output to one file or stdout)."""
    return (engine != "local" or "://" in source or source.endswith(".parquet") or any(c in source for c in "*?[")
            or Path(source).is_dir())


def run_corpus_job(source: str, target: str, make: Callable[[], BatchFn], job: JobOptions, console: Console) -> None:
    """`run_corpus` with a progress bar over shards showing rows and rows/s, then the same summary lines as
    `run_jsonl` (bad lines skipped, contexts clipped) and the shards a previous run had finished."""
    engine, what = job.engine, job.what
    if engine not in ENGINES or job.fmt not in FORMATS:
        raise typer.BadParameter(f"--engine must be one of {ENGINES} and --output-format one of {FORMATS}")
    if engine == "local" and (job.address or job.actors or job.gpus):
        raise typer.BadParameter("--address, --actors and --gpus-per-actor need --engine ray")
    if target == str(STDOUT):
        raise typer.BadParameter("a corpus job writes a folder of shards; give -o FOLDER, not '-'")
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("shards  {task.fields[rows]:,} rows  "
               "{task.fields[rate]:,.0f} rows/s"), TimeElapsedColumn())
    with (
        held_warnings(console),
        Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress,
    ):
        task = progress.add_task(what, total=None, rows=0, rate=0.0)
        plain = PlainProgress(console, what, "rows")

        def step(rows: int, shards: int, to_do: int) -> None:
            done = progress.tasks[0].fields["rows"] + rows
            elapsed = progress.tasks[0].elapsed or 0.0
            progress.update(task, total=to_do, advance=shards, rows=done, rate=done / elapsed if elapsed else 0.0)
            plain.update(done, None, f" ({int(progress.tasks[0].completed):,}/{to_do:,} shards)")

        report = run_corpus(source, target, make, engine=engine, address=job.address, actors=job.actors,
                            gpus_per_actor=job.gpus, batch_size=job.batch_size, fmt=job.fmt,
                            skip_invalid=job.skip_invalid, progress=step)
    for problem in report.problems:
        console.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if report.clipped:
        console.print(f"[yellow]clipped[/yellow] {report.clipped:,} context(s) over {MAX_CONTEXT_CHARS:,} characters "
                      f"to their newest {MAX_CONTEXT_CHARS:,}", highlight=False, soft_wrap=True)
    # what this run wrote, not what the folder holds: a rerun of a finished job writes nothing
    ran, written = report.shards - report.done_before, progress.tasks[0].fields["rows"]
    if not ran:
        summary = (f"nothing to do: all {report.shards:,} shards in {target} were already done "
                   f"({report.rows:,} {job.records}); delete a shard's output to redo it")
        notes = []
    else:
        summary = f"wrote {written:,} {job.records} in {ran:,} shards to {target}"
        notes = [f"{report.done_before:,} shards already done ({report.rows:,} {job.records} in all)"
                 ] if report.done_before else []
    notes += [f"skipped {len(report.problems):,} bad lines"] if report.problems else []
    console.print(escape(summary + "".join(f"; {n}" for n in notes)), highlight=False, soft_wrap=True)
