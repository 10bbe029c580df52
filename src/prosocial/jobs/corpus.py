"""Corpus jobs: `check` or `respond` every dialogue of a set of JSON Lines / Parquet shards, one output shard per
input shard, in this process or on Ray Data (`map_batches` over an actor pool, one loaded model per actor).

A shard is the unit of output: its output appears whole (written aside, then renamed) once all its rows are done,
so a rerun skips finished shards and a crash never leaves half of one. At the end every output is checked against
its input's ids, so a lost or duplicated row is an error naming the shard and the ids, never silent. Paths may be
local or URIs such as `s3://` and `gs://` (through pyarrow's filesystems).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import posixpath
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prosocial.data.context import MAX_CONTEXT_CHARS, check_context, clip_context
from prosocial.errors import DataError, ModelError, Problem
from prosocial.io import atomic_write, read_jsonl

if TYPE_CHECKING:
    import pyarrow as pa

    from prosocial.steer import ProsocialAgent

#: Told the place in its batch of a row whose output record is final (progress: a batch can take minutes).
RowDone = Callable[[int], None]


class BatchFn(Protocol):
    """Given the contexts of a batch, return one output record per context, in order. `on_row`, when given, is
    called once per row as soon as its record is final; a function that cannot tell sooner calls it for none, and
    the caller counts the batch when it returns."""

    def __call__(self, contexts: list[list[str]], on_row: RowDone | None = None, /) -> list[dict]: ...

#: Progress callback: rows just finished, shards just finished, shards this run has to do.
Progress = Callable[[int, int, int], None]
SUFFIXES = (".jsonl", ".parquet")
FORMATS = ("jsonl", "parquet")
ENGINES = ("local", "ray")


def check_rows(backend: str, with_rots: bool = True, norms: Sequence[str | Path] = (), **settings: Any) -> BatchFn:
    """Load a detector once and return the batch function writing its verdicts (picklable as a `partial`). A
    detector judges its batch in one call, so no row is reported before the batch returns."""
    from prosocial.canary import load_detector

    detector = load_detector(backend, norms=norms, **settings)
    return lambda contexts, on_row=None: [v.to_dict() for v in detector.predict(contexts, with_rots=with_rots)]


def respond_rows(build_agent: Callable[[], ProsocialAgent]) -> BatchFn:
    """Build the agent once and return the batch function writing its replies, labels and RoTs; each row is
    reported as soon as its turn is decided (`ProsocialAgent.respond_batch`)."""
    agent = build_agent()
    return lambda contexts, on_row=None: [
        {"response": t.response, "rots": t.rots, "safety_label": t.safety_label.value, "norm": t.norm,
         "danger": t.danger}
        for t in agent.respond_batch(contexts, on_reply=on_row)
    ]


def input_record(path: str | Path, number: int, record: object) -> tuple[object, list[str]]:
    """The id (the line number when absent) and the validated context of one input line or row."""
    if not isinstance(record, dict):
        raise DataError.at(path, "expected an object with a 'context' list", line=number)
    if "context" not in record:
        raise DataError.at(path, "missing field", line=number, field="context")
    try:
        context = check_context(record["context"])
    except ValueError as exc:
        raise DataError.at(path, str(exc), line=number, field="context") from None
    identifier = record.get("id", number)
    try:
        json.dumps(identifier)
    except (TypeError, ValueError):
        raise DataError.at(path, "not a JSON value", line=number, field="id") from None
    return identifier, context


def valid_records(
    path: str | Path, records: Iterable[tuple[int, object]], problems: list[Problem] | None
) -> Iterator[tuple[int, object, list[str], bool]]:
    """(line, id, context, clipped) for each valid record, contexts over `MAX_CONTEXT_CHARS` keeping their newest
    characters; a bad record is an error naming it, or, given `problems`, recorded there and skipped."""
    for number, record in records:
        try:
            identifier, context = input_record(path, number, record)
        except DataError as error:
            if problems is None:
                raise
            problems.extend(error.problems)
            continue
        clipped = sum(map(len, context)) > MAX_CONTEXT_CHARS
        yield number, identifier, clip_context(context, MAX_CONTEXT_CHARS) if clipped else context, clipped


def output_line(identifier: object, result: dict) -> str:
    """One output line; the single-file and the corpus jobs both write this, so their bytes agree."""
    return json.dumps({"id": identifier, **result}, ensure_ascii=False)


# --------------------------------------------------------------------------- shards and files


@dataclass(frozen=True)
class Shard:
    source: str
    target: str


@dataclass
class ShardRows:
    """The valid rows of a shard: ids as JSON text (any JSON value survives Arrow that way) and contexts."""

    ids: list[str] = field(default_factory=list)
    contexts: list[list[str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    clipped: int = 0


def _filesystem(uri: str) -> tuple[Any, str, str]:
    """(pyarrow filesystem, path in it, prefix that turns such a path back into the user's URI)."""
    from pyarrow import fs

    if "://" in uri:
        filesystem, path = fs.FileSystem.from_uri(uri)
        return filesystem, path, uri.split("://", 1)[0] + "://"
    return fs.LocalFileSystem(), os.path.abspath(uri), ""


def _visible(path: str) -> bool:
    name = posixpath.basename(path)
    return name.endswith(SUFFIXES) and not name.startswith((".", "_"))


def list_shards(inputs: str, output_dir: str, fmt: str = "jsonl") -> list[Shard]:
    """The shards named by a file, a folder (its .jsonl/.parquet files) or a glob in the last path part, each with
    its output `output_dir/<stem>.<fmt>`; two shards with one stem, or an output that is an input, are errors."""
    from pyarrow.fs import FileSelector, FileType

    if fmt not in FORMATS:
        raise ValueError(f"output format must be one of {FORMATS}, got {fmt!r}")
    filesystem, base, prefix = _filesystem(inputs)
    if any(c in base for c in "*?["):
        folder, pattern = posixpath.split(base)
        found = filesystem.get_file_info(FileSelector(folder, allow_not_found=True))
        sources = [f.path for f in found if f.type == FileType.File and fnmatch.fnmatch(f.base_name, pattern)]
    elif (info := filesystem.get_file_info(base)).type == FileType.Directory:
        sources = [f.path for f in filesystem.get_file_info(FileSelector(base)) if f.type == FileType.File]
    elif info.type == FileType.File:
        sources = [base]
    else:
        raise DataError.at(inputs, "no such file or folder")
    sources = sorted(p for p in sources if _visible(p))
    if not sources:
        raise DataError.at(inputs, f"no {' or '.join(SUFFIXES)} shards")
    _, out_base, out_prefix = _filesystem(output_dir)
    shards: dict[str, Shard] = {}
    for path in sources:
        stem = posixpath.splitext(posixpath.basename(path))[0]
        shard = Shard(prefix + path, out_prefix + posixpath.join(out_base, f"{stem}.{fmt}"))
        if stem in shards:
            raise DataError.at(shard.source, f"has the same name as {shards[stem].source}; their outputs would clash")
        if shard.target == shard.source:
            raise DataError.at(shard.target, "the output would overwrite the input; write it to another folder")
        shards[stem] = shard
    return list(shards.values())


@contextmanager
def _local_copy(uri: str) -> Iterator[str]:
    """A local path holding the file at `uri` (a download for remote ones); errors name `uri`, not the copy."""
    if "://" not in uri:
        yield uri
        return
    filesystem, path, _ = _filesystem(uri)
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, posixpath.basename(path))
        with filesystem.open_input_stream(path) as remote, open(local, "wb") as handle:
            handle.write(remote.read())
        try:
            yield local
        except DataError as error:
            raise DataError([Problem(uri, p.message, p.line, p.field) for p in error.problems]) from None


def _records(source: str, path: str, problems: list[Problem] | None) -> Iterator[tuple[int, object]]:
    """(line or row number, record) of a JSON Lines or Parquet file."""
    if not source.endswith(".parquet"):
        yield from read_jsonl(path, problems)
        return
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DataError.at(source, f"not a Parquet file ({exc})") from None
    if "context" not in table.column_names:
        raise DataError.at(source, "missing column", field="context")
    yield from enumerate(table.to_pylist(), start=1)


def read_shard(source: str, skip_invalid: bool = False) -> ShardRows:
    """The valid rows of a shard, contexts over `MAX_CONTEXT_CHARS` keeping their newest characters; a bad row is
    an error naming the shard and line, unless `skip_invalid`, which records it in `problems`."""
    rows = ShardRows()
    problems = rows.problems if skip_invalid else None
    with _local_copy(source) as path:
        for _, identifier, context, clipped in valid_records(source, _records(source, path, problems), problems):
            rows.ids.append(json.dumps(identifier, ensure_ascii=False))
            rows.contexts.append(context)
            rows.clipped += clipped
    return rows


def _lines(process: BatchFn, ids: Sequence[str], contexts: list[list[str]]) -> list[str]:
    return [output_line(json.loads(i), r) for i, r in zip(ids, process(contexts), strict=True)]


def _write(target: str, lines: Sequence[str], fmt: str) -> None:
    """The whole output of a shard: renamed into place locally; object stores publish an object only when closed."""
    if fmt == "jsonl":
        data = "".join(line + "\n" for line in lines).encode("utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        try:
            pq.write_table(pa.Table.from_pylist([json.loads(line) for line in lines]), sink)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError.at(target, f"the rows do not fit one Parquet schema ({exc}); ids of one type, or "
                               "JSON Lines output, will do") from None
        data = sink.getvalue().to_pybytes()
    if "://" not in target:
        with atomic_write(target, "wb") as handle:
            handle.write(data)
        return
    filesystem, path, _ = _filesystem(target)
    filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as handle:
        handle.write(data)


def _done(target: str) -> bool:
    from pyarrow.fs import FileType

    filesystem, path, _ = _filesystem(target)
    return filesystem.get_file_info(path).type == FileType.File


def _output_ids(target: str) -> list[str]:
    if target.endswith(".jsonl"):
        with _local_copy(target) as path:
            return [json.dumps(row.get("id"), ensure_ascii=False) for _, row in read_jsonl(path)]
    import pyarrow.parquet as pq

    filesystem, path, _ = _filesystem(target)
    table = pq.read_table(path, filesystem=filesystem)
    ids = table.column("id").to_pylist() if "id" in table.column_names else [None] * table.num_rows
    return [json.dumps(i, ensure_ascii=False) for i in ids]


# --------------------------------------------------------------------------- the job


@dataclass
class ShardCheck:
    """A finished shard against its input: rows written, ids missing or unexpected, input lines skipped."""

    rows: int
    missing: list[str]
    unexpected: list[str]
    problems: list[Problem]
    clipped: int


def check_shard(shard: Shard, fmt: str, skip_invalid: bool) -> ShardCheck:
    """Compare a shard's output ids with its input's (as multisets); a shard without valid rows gets its empty
    output here, as no row of it ever reaches a writer."""
    expected = read_shard(shard.source, skip_invalid)
    if not expected.ids and not _done(shard.target):
        _write(shard.target, [], fmt)
    got = Counter(_output_ids(shard.target)) if _done(shard.target) else Counter()
    want = Counter(expected.ids)
    return ShardCheck(sum(got.values()), list((want - got).elements()), list((got - want).elements()),
                      expected.problems, expected.clipped)


@dataclass
class CorpusReport:
    """What a corpus job did; every shard's output was checked against its input."""

    shards: int
    done_before: int
    rows: int
    problems: list[Problem]
    clipped: int


def run_corpus(
    inputs: str,
    output_dir: str,
    make: Callable[[], BatchFn],
    *,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float = 0.0,
    batch_size: int = 64,
    fmt: str = "jsonl",
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> CorpusReport:
    """Run `make()`'s batch function over every row of every unfinished shard and check the outputs' ids.

    `make` is called once per process (here, or once per Ray actor) and must be picklable for Ray (a `partial`
    of `check_rows` or `respond_rows`). With `engine="ray"`, Ray joins `address` (a new local instance when None
    and none is running) and runs `actors` actors on each node that can hold one (default: as many as fit, one per
    CPU or per `gpus_per_actor` GPUs). Missing or extra ids are a `DataError` naming each output shard.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if batch_size < 1 or (actors is not None and actors < 1):
        raise ValueError("batch_size and actors must be at least 1")
    shards = list_shards(inputs, output_dir, fmt)
    pending = [s for s in shards if not _done(s.target)]
    notify = progress or (lambda rows, done, to_do: None)

    def step(rows: int, done: int) -> None:
        notify(rows, done, len(pending))

    step(0, 0)
    process = make()  # models load lazily, so on Ray this only checks the settings here, where errors are readable
    if engine == "local":
        for shard in pending:
            rows = read_shard(shard.source, skip_invalid)
            lines = [line for start in range(0, len(rows.ids), batch_size)
                     for line in _lines(process, rows.ids[start : start + batch_size],
                                        rows.contexts[start : start + batch_size])]
            if lines:
                _write(shard.target, lines, fmt)
            step(len(lines), 1)
        checks = [check_shard(s, fmt, skip_invalid) for s in shards]
    else:
        with _ray(address):
            try:
                if pending:
                    _run_ray(pending, make, batch_size, actors, gpus_per_actor, fmt, skip_invalid, step)
                checks = _ray_checks(shards, fmt, skip_invalid)
            except Exception as error:
                raise _unwrap(error) from error
    wrong = [Problem(s.target, f"{len(ids):,} id(s) {what}: {', '.join(ids[:10])}{', …' if len(ids) > 10 else ''}")
             for s, c in zip(shards, checks, strict=True)
             for what, ids in (("missing", c.missing), ("not in the input", c.unexpected)) if ids]
    if wrong:
        raise DataError(wrong)
    return CorpusReport(len(shards), len(shards) - len(pending), sum(c.rows for c in checks),
                        [p for c in checks for p in c.problems], sum(c.clipped for c in checks))


# --------------------------------------------------------------------------- Ray


@contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Use the running Ray, or join `address` (start a local instance when None) for the job's duration."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def _ray_checks(shards: list[Shard], fmt: str, skip_invalid: bool) -> list[ShardCheck]:
    """The id checks as Ray tasks, spread over the cluster rather than all read on this machine."""
    import ray

    remote = ray.remote(num_cpus=0)(check_shard)
    return ray.get([remote.remote(s, fmt, skip_invalid) for s in shards])


def _read_rows(item: dict[str, Any], skip_invalid: bool) -> list[dict[str, Any]]:
    """The rows of one shard, each knowing its shard, place and the shard's row count (so the writer knows when
    the shard is complete)."""
    rows = read_shard(item["source"], skip_invalid)
    total = len(rows.ids)
    return [{"shard": item["shard"], "row": n, "total": total, "id": i, "context": c}
            for n, (i, c) in enumerate(zip(rows.ids, rows.contexts, strict=True))]


class _Worker:
    """A Ray actor's model, loaded once; it maps a batch of rows to their output lines."""

    def __init__(self, make: Callable[[], BatchFn]) -> None:
        self.process = make()

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        texts = _lines(self.process, batch.column("id").to_pylist(), batch.column("context").to_pylist())
        return pa.table({"shard": batch.column("shard"), "row": batch.column("row"), "total": batch.column("total"),
                         "text": pa.array(texts, pa.string())})


def _fits(gpus_per_actor: float) -> list[int]:
    """How many actors each live Ray node can hold: one per CPU, or per `gpus_per_actor` GPUs when they use GPUs."""
    import ray

    resources = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if gpus_per_actor:
        return [int(r.get("GPU", 0) // gpus_per_actor) for r in resources]
    return [int(r.get("CPU", 0)) for r in resources]


def _run_ray(pending: list[Shard], make: Callable[[], BatchFn], batch_size: int, actors: int | None,
             gpus_per_actor: float, fmt: str, skip_invalid: bool, step: Callable[[int, int], None]) -> None:
    """Read shards in Ray tasks, label them on an actor pool, and write each shard here as soon as it is whole."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the caller shows progress; Ray's own lines are noise
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.raise_original_map_exception = True  # a bad line stays a DataError naming its file and line
    size = sum(actors or fit for fit in _fits(gpus_per_actor) if fit)
    if not size:
        raise ModelError(f"no Ray node can hold an actor with 1 CPU and {gpus_per_actor:g} GPUs")
    items = [{"shard": i, "source": s.source} for i, s in enumerate(pending)]
    dataset = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .flat_map(_read_rows, fn_kwargs={"skip_invalid": skip_invalid}, num_cpus=0)
        .map_batches(_Worker, fn_constructor_args=(make,), batch_size=batch_size, batch_format="pyarrow",
                     compute=ActorPoolStrategy(size=size), num_cpus=1, num_gpus=gpus_per_actor)
    )
    done: dict[int, list[tuple[int, str]]] = {}
    written = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        finished = 0
        for shard, row, total, text in zip(*(batch.column(c).to_pylist() for c in ("shard", "row", "total", "text")),
                                           strict=True):
            lines = done.setdefault(shard, [])
            lines.append((row, text))
            if len(lines) == total:
                _write(pending[shard].target, [text for _, text in sorted(done.pop(shard))], fmt)
                finished += 1
        written += finished
        step(batch.num_rows, finished)
    step(0, len(pending) - written)  # shards without valid rows: `check_shard` writes their empty outputs


def _unwrap(error: BaseException) -> BaseException:
    """The user's error inside Ray's wrappers, so a bad line read far away is the same `DataError` as here."""
    inner = error
    while isinstance(getattr(inner, "cause", None), BaseException):
        inner = inner.cause
    return inner if isinstance(inner, DataError) else error
