"""Fuzzing the file-reading commands with the JSON Lines files people really have: bytes that are not UTF-8,
NaN, lone surrogates, deep nesting, non-object lines, missing and mistyped fields, blank and huge lines.

Whatever the file, `check -i`, `respond -i` and `data validate|convert|stats` end with exit 0 or a clean error
(never an exception), every message names the file (and line), the input is untouched, and an output file is
either complete (one line per good input line) or absent.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from prosocial.cli import app

FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
runner = CliRunner()

#: stand-ins that json.dumps writes as raw text it cannot write itself
RAW = {'"__nan__"': "NaN", '"__inf__"': "-Infinity", '"__lone__"': '"\\ud800 x"', '"__big__"': "9" * 5000}

text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\u2028", "you idiot", "[/red] [bold]", "__nan__", "__inf__", "__lone__", "__big__"]),
)
scalar = st.one_of(text, st.integers(-(10**20), 10**20), st.floats(allow_nan=False), st.booleans(), st.none())
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=6)
utterances = st.lists(text, min_size=1, max_size=4).filter(lambda u: u[-1].strip())
good_record = st.fixed_dictionaries({"context": utterances}, optional={"id": value})
check_record = st.fixed_dictionaries(
    {"context": st.one_of(st.lists(text, max_size=4), st.lists(value, max_size=3), value)},
    optional={"id": value},
)
hf_row = st.fixed_dictionaries(
    {},
    optional={field: value | text for field in ("context", "response", "dialogue_id", "response_id", "episode_done",
                                                "rots", "safety_label", "safety_annotations", "source")},
)


def _dumps(record: object) -> bytes:
    line = json.dumps(record, ensure_ascii=False)
    for stand_in, raw in RAW.items():
        line = line.replace(stand_in, raw)
    return line.encode("utf-8")


line = st.one_of(
    good_record.map(_dumps),
    good_record.map(_dumps),
    check_record.map(_dumps),
    hf_row.map(_dumps),
    st.sampled_from([["ab " * 60_000], ["hi there."] * 20_000]).map(lambda c: _dumps({"context": c})),  # huge
    value.map(_dumps),
    st.binary(max_size=40),
    st.sampled_from([b"", b"  ", b"\xff\xfe", b'{"context": ["caf\xe9"]}', b"[" * 5000 + b"]" * 5000, b"{oops"]),
)
jsonl = st.lists(line, max_size=6).map(lambda lines: b"\n".join(lines) + b"\n")


def _good(raw: bytes) -> bool:
    """The oracle: a line `check`/`respond` must answer (UTF-8, strict JSON, an object with a usable context)."""
    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        record = json.loads(raw.decode("utf-8"), parse_constant=refuse)
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        return False
    context = record.get("context") if isinstance(record, dict) else None
    return (isinstance(context, list) and bool(context) and all(isinstance(u, str) for u in context)
            and bool(context[-1].strip()))


def _run(files: bytes, make_args: Callable[[Path, Path], list[str]], suffix: str = ".jsonl") -> tuple:
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / f"in{suffix}", Path(folder) / "out.jsonl"
        source.write_bytes(files)
        result = runner.invoke(app, make_args(source, target))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
        assert source.read_bytes() == files
        output = target.read_bytes() if target.exists() else None
        messages = [m for m in result.stderr.splitlines() if m.strip()]
        return result, str(source), output, messages


def _check_batch(result: Result, source: str, output: bytes | None, messages: list[str], data: bytes,
                 skip: bool) -> None:
    good = [raw for raw in data.split(b"\n") if raw.strip() and _good(raw)]
    bad = sum(1 for raw in data.split(b"\n") if raw.strip()) - len(good)
    if result.exit_code == 1:
        assert not skip and bad and output is None
        assert len(messages) == 1 and messages[0].startswith(f"error: {source}, line "), messages
        return
    assert output is not None and len(output.splitlines()) == len(good) and (skip or not bad)
    for message in messages[:-1]:
        assert message.startswith((f"skipped {source}, line ", "clipped ", "warning: ")), message
    assert messages[-1].startswith(f"wrote {len(good)} ") and messages[-1].endswith(
        f"; skipped {bad} bad lines" if bad else str(Path(source).with_name("out.jsonl")))


@FUZZ
@given(data=jsonl, skip=st.booleans())
def test_check_batch_survives_any_file(data: bytes, skip: bool) -> None:
    run = _run(data, lambda s, t: ["check", "-i", str(s), "-o", str(t), "--backend", "keywords", "--no-rots"]
               + ["--skip-invalid"] * skip)
    _check_batch(*run, data, skip)


@FUZZ
@given(data=jsonl, skip=st.booleans())
def test_respond_batch_survives_any_file(data: bytes, skip: bool) -> None:
    run = _run(data, lambda s, t: ["respond", "-i", str(s), "-o", str(t), "--backend", "canned", "--detector",
                                   "keywords"] + ["--skip-invalid"] * skip)
    _check_batch(*run, data, skip)


@FUZZ
@given(data=jsonl, suffix=st.sampled_from([".jsonl", ".json"]))
def test_data_commands_survive_any_file(data: bytes, suffix: str) -> None:
    result, source, _, _ = _run(data, lambda s, t: ["data", "validate", str(s)], suffix)
    valid = result.exit_code == 0
    status = result.stdout.splitlines()[-1]
    assert status.startswith(f"{source}: ") and status.endswith(", ok" if valid else " problem(s)")
    assert all(m.startswith(source) for m in result.stderr.splitlines()), result.stderr

    for command in (["data", "convert", "{s}", "{t}"], ["data", "stats", "{s}", "--json"]):
        result, source, output, messages = _run(data, lambda s, t, c=command: [a.format(s=s, t=t) for a in c], suffix)
        assert result.exit_code == (0 if valid else 1), result.output
        if valid:
            assert command[1] == "stats" or output is not None
        else:
            assert output is None and messages[0].startswith(f"error: {source}"), messages
