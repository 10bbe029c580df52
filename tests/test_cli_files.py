"""How the command line treats files: unreadable bytes, outputs that would overwrite inputs, file modes, stdout,
empty and oversized inputs, help texts, and one-line summaries whatever the terminal's width or path's length."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from prosocial.cli import app
from prosocial.data.context import MAX_CONTEXT_CHARS, clip_context
from prosocial.io import atomic_write
from prosocial.prost.base import register_generator
from prosocial.prost.canned import CannedGenerator
from prosocial.resources import PAPER_TABLES

runner = CliRunner()
CHEAP = {"check": ["--backend", "keywords"], "respond": ["--backend", "canned", "--detector", "keywords"]}


def invoke(*args: str, **kwargs) -> Result:
    result = runner.invoke(app, list(args), **kwargs)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def batch(command: str, source: Path, target: Path | str, *extra: str, **kwargs) -> Result:
    return invoke(command, "-i", str(source), "-o", str(target), *CHEAP[command], *extra, **kwargs)


def lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


# --------------------------------------------------------------------------- 10: bytes that are not UTF-8


@pytest.mark.parametrize("command", [
    ["check", "-i", "{src}", "-o", "{out}", *CHEAP["check"]],
    ["respond", "-i", "{src}", "-o", "{out}", *CHEAP["respond"]],
    ["data", "validate", "{src}"],
    ["data", "convert", "{src}", "{out}"],
    ["data", "stats", "{src}"],
])
def test_bytes_that_are_not_utf8_are_one_error_line_naming_file_and_line(command: list[str], tmp_path: Path) -> None:
    source, target = tmp_path / "n.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b'{"id": "0", "context": ["ok"]}\n{"id": "1", "context": ["caf\xe9"]}\n')
    result = invoke(*(arg.format(src=source, out=target) for arg in command))
    assert result.exit_code == 1
    assert f"{source}, line 2: not UTF-8 text (byte 0xe9 at byte 29)" in lines(result)[0]
    assert not target.exists()


def test_every_reader_names_the_line_of_a_bad_byte(tmp_path: Path) -> None:
    whole, table = tmp_path / "rows.json", tmp_path / "rows.csv"
    whole.write_bytes(b'[\n {"context": "fine"},\n {"context": "caf\xe9"}\n]\n')
    table.write_bytes(b"context,response\nfine,ok\n\xff,ok\n")
    result = invoke("data", "validate", str(whole), str(table))
    assert result.exit_code == 1
    assert f"{whole}, line 3: not UTF-8 text (byte 0xe9 at byte 18)" in result.output
    assert f"{table}, line 3: not UTF-8 text (byte 0xff at byte 1)" in result.output


# --------------------------------------------------------------------------- 11: output over input


@pytest.mark.parametrize("command", ["check", "respond"])
def test_an_output_that_is_the_input_is_refused(command: str, tmp_path: Path) -> None:
    source = tmp_path / "same.jsonl"
    source.write_text('{"id": "a", "context": ["hi"]}\n')
    before = source.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(source)
    for target in (source, tmp_path / "link.jsonl", tmp_path / "sub" / ".." / "same.jsonl"):
        result = batch(command, source, target)
        assert result.exit_code == 1 and "the output would overwrite the input" in result.stderr
        assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "same.jsonl"]


# --------------------------------------------------------------------------- 12: file modes


def test_outputs_get_the_mode_open_would_give(tmp_path: Path, umask: None) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "context": ["hi"]}\n')
    assert batch("check", source, tmp_path / "verdicts.jsonl").exit_code == 0
    assert invoke("data", "convert", str(PAPER_TABLES), str(tmp_path / "rows.jsonl")).exit_code == 0
    assert invoke("collect", "export", str(tmp_path / "collected.jsonl"), "--db",
                  f"sqlite:///{tmp_path / 'collect.db'}").exit_code == 0
    for name in ("verdicts.jsonl", "rows.jsonl", "collected.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name

    kept = tmp_path / "private.jsonl"
    kept.write_text("old\n")
    kept.chmod(0o600)
    with atomic_write(kept) as handle:
        handle.write("new\n")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "new\n"
    os.umask(0o077)
    with atomic_write(tmp_path / "secret.txt") as handle:
        handle.write("x")
    assert stat.S_IMODE((tmp_path / "secret.txt").stat().st_mode) == 0o600


# --------------------------------------------------------------------------- 13: -o - and -o without -i


@pytest.mark.parametrize("command", ["check", "respond"])
def test_dash_is_stdout_and_output_needs_input(command: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "context": ["hi"]}\n{"id": "b", "context": ["hello"]}\n')
    result = batch(command, source, "-")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a", "b"]
    assert "wrote 2" in result.stderr and "to stdout" in result.stderr
    assert list(tmp_path.iterdir()) == [source]

    result = invoke(command, "hi", "-o", "out.jsonl", *CHEAP[command])
    assert result.exit_code == 2 and "--output needs --input" in result.output
    assert list(tmp_path.iterdir()) == [source]


# --------------------------------------------------------------------------- 14: help texts


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of a (typer-built) click command tree, with the words that invoke it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_texts_keep_their_bracketed_words() -> None:
    """Rich reads "[word]" as markup; every bracket a help text means to show must survive rendering."""
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        wanted = [m.replace("\\[", "[") for text in texts for m in re.findall(r"\\?\[[^\]\n]*\]", text)]
        if not wanted:
            continue
        shown = " ".join(invoke(*path, "--help", env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"}).output.split())
        for bracketed in wanted:
            assert " ".join(bracketed.split()) in shown, (path, bracketed)
            checked += 1
    assert checked >= 4


# --------------------------------------------------------------------------- 15: empty inputs


@pytest.mark.parametrize("command", ["check", "respond"])
def test_an_empty_input_gives_an_empty_output(command: str, tmp_path: Path) -> None:
    source, target = tmp_path / "empty.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n  \n")
    result = batch(command, source, target)
    assert result.exit_code == 0 and target.read_text() == ""
    assert f"wrote 0 {'verdicts' if command == 'check' else 'replies'} to {target}" in result.stderr.splitlines()


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "blank.json", "empty.csv"])
def test_an_empty_data_file_holds_no_dialogues(name: str, tmp_path: Path) -> None:
    source = tmp_path / name
    source.write_text(" \n" if name.startswith("blank") else "")
    result = invoke("data", "validate", str(source))
    assert result.exit_code == 0 and f"{source}: 0 dialogues, ok" in result.output
    target = tmp_path / "out.json"
    assert invoke("data", "convert", str(source), str(target)).exit_code == 0
    assert json.loads(target.read_text()) == []
    result = invoke("data", "stats", str(source), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["dialogues"] == 0


# --------------------------------------------------------------------------- 16: oversized input, chat


def test_clip_context_keeps_the_newest_characters() -> None:
    assert clip_context(["aaa", "bb", "c"], 10) == ["aaa", "bb", "c"]
    assert clip_context(["aaa", "bb", "c"], 3) == ["bb", "c"]
    assert clip_context(["old", "x" * 50], 10) == ["x" * 10]
    start = time.perf_counter()
    assert clip_context(["hi there"] * 200_000, 1600, per_turn=12) == ["hi there"] * 80
    assert time.perf_counter() - start < 1


def test_oversized_contexts_are_clipped_with_one_warning_and_every_row_kept(tmp_path: Path) -> None:
    source, target = tmp_path / "big.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": 1, "context": ["x" * 1_000_000]}, {"id": 2, "context": ["hello"]},
            {"id": 3, "context": ["hi there."] * 100_000}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    start = time.perf_counter()
    result = batch("respond", source, target)
    assert time.perf_counter() - start < 10
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [1, 2, 3]
    assert f"clipped 2 context(s) over {MAX_CONTEXT_CHARS:,} characters to their newest {MAX_CONTEXT_CHARS:,} " \
           f"({source}, lines 1, 3)" in result.stderr.splitlines()


log = logging.getLogger("prosocial.tests.chat")


@register_generator("test-warning")
class WarningGenerator(CannedGenerator):
    """The canned reply, with a library warning on every call (as a long conversation's truncation gives)."""

    def generate(self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None) -> list:
        log.warning("cut %d context(s) to fit", len(contexts))
        return super().generate(contexts, rots)


def test_chat_shows_library_warnings_once_after_the_conversation() -> None:
    result = invoke("chat", "--backend", "test-warning", "--detector", "keywords", input="hello\nhow are you?\n")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stdout and result.stdout.rstrip().endswith("bye")
    assert result.stderr.splitlines() == ["warning: cut 1 context(s) to fit (and 2 more like it)"]


# --------------------------------------------------------------------------- 17: never wrapped


def test_summaries_and_errors_are_one_line_at_any_width_and_path_length(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(8)])
    deep.mkdir(parents=True)
    assert len(str(deep)) > 200
    source, target = deep / "in.jsonl", deep / "out.jsonl"
    source.write_text('{"id": "a", "context": ["hi"]}\nnot json\n')
    narrow = {"env": {"COLUMNS": "40"}}
    result = batch("check", source, target, "--skip-invalid", **narrow)
    assert result.exit_code == 0
    assert f"wrote 1 verdicts to {target}; skipped 1 bad lines" in result.stderr.splitlines()
    assert f"skipped {source}, line 2: invalid JSON: Expecting value (column 1)" in result.stderr.splitlines()

    result = batch("respond", source, target, **narrow)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {source}, line 2: invalid JSON: Expecting value (column 1)"]

    rows = deep / "rows.jsonl"
    result = invoke("data", "convert", str(PAPER_TABLES), str(rows), **narrow)
    assert f"wrote 5 dialogues (15 turns) to {rows} (hf)" in result.output.splitlines()
    result = invoke("data", "validate", str(rows), str(source), **narrow)
    assert f"{rows}: 5 dialogues, ok" in result.output.splitlines()
    assert f"{source}: 0 dialogues, 6 problem(s)" in result.output.splitlines()
