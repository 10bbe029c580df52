"""Output files: an atomic write never replaces a device, a FIFO, a folder or a read-only file, and a job stopped by
SIGTERM leaves no hidden temporary file behind (as Ctrl-C already did not)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prosocial.cli import app
from prosocial.errors import DataError
from prosocial.io import atomic_write


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _targets(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    device = tmp_path / "null"  # a link to /dev/null: a regression replaces the link, never the real device
    device.symlink_to("/dev/null")
    read_only = tmp_path / "read-only.jsonl"
    read_only.write_text("keep me\n")
    read_only.chmod(0o444)
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"fifo": (fifo, "FIFO"), "device": (device, "character device"), "read-only": (read_only, "read-only"),
            "folder": (folder, "a folder")}


def _unchanged(tmp_path: Path) -> None:
    assert stat.S_ISFIFO((tmp_path / "fifo").stat().st_mode)
    assert (tmp_path / "null").is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert (tmp_path / "read-only.jsonl").read_text() == "keep me\n"
    assert (tmp_path / "folder").is_dir()
    assert _leftovers(tmp_path) == []


def test_atomic_write_refuses_what_is_not_a_writable_regular_file(tmp_path):
    for target, words in _targets(tmp_path).values():
        with pytest.raises(DataError, match=words) as error, atomic_write(target) as handle:
            handle.write("replaced\n")
        assert error.value.problems[0].path == str(target)
    _unchanged(tmp_path)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("old\n")
    with atomic_write(plain) as handle:
        handle.write("new\n")
    assert plain.read_text() == "new\n"


def test_check_output_to_a_device_fifo_or_read_only_file_is_one_clear_error(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": 1, "context": ["hello"]}) + "\n")
    for name, (target, words) in _targets(tmp_path).items():
        result = CliRunner().invoke(app, ["check", "-i", str(source), "-o", str(target), "--backend", "keywords"])
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (name, result.output)
        assert words in text and str(target) in text and text.count("error:") == 1, (name, text)
    _unchanged(tmp_path)


SIGTERM_JOB = """
import os, signal, sys
from pathlib import Path
from prosocial.canary.baselines import KeywordDetector
from prosocial.cli import main

folder, calls, predict = Path(sys.argv[1]), [], KeywordDetector.predict

def predict_then_terminate(self, contexts, with_rots=True):
    calls.append(len(contexts))
    if len(calls) == 3:  # mid-job: two batches are in the temporary file
        assert len([p for p in folder.iterdir() if p.name.endswith(".tmp")]) == 1
        os.kill(os.getpid(), signal.SIGTERM)
    return predict(self, contexts, with_rots)

KeywordDetector.predict = predict_then_terminate
sys.argv = ["prosocial", "check", "-i", str(folder / "in.jsonl"), "-o", str(folder / "out.jsonl"),
            "--backend", "keywords", "--batch-size", "2"]
main()
"""


def test_sigterm_during_a_batch_job_removes_the_temporary_file(tmp_path):
    """In a child process: without the handler SIGTERM kills the process outright (status -15)."""
    import subprocess

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "context": [f"hello {i}"]}) + "\n" for i in range(10)))
    done = subprocess.run([sys.executable, "-c", SIGTERM_JOB, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert not (tmp_path / "out.jsonl").exists() and _leftovers(tmp_path) == []


def test_the_sigterm_handler_is_the_commands_only(monkeypatch):
    from prosocial.cli.errors import sigterm_exits

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_exits():
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before


def test_output_to_a_closed_pipe_stops_silently(tmp_path):
    """`check -i … -o - | head -1`: no "error: [Errno 32] Broken pipe", status 141 as for `yes | head`."""
    import subprocess

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "context": [f"hello there {i}" * 5]}) + "\n"
                              for i in range(3000)))  # far more than a pipe's 64 KiB buffer
    job = subprocess.Popen([sys.executable, "-c", "from prosocial.cli import main; main()", "check", "-i",
                            str(source), "-o", "-", "-b", "keywords", "--batch-size", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert job.stdout.readline().startswith(b'{"id": 0')
    job.stdout.close()  # the reader goes away, as head does
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 141, stderr.decode()
    assert b"Broken pipe" not in stderr and b"error" not in stderr and b"Traceback" not in stderr
