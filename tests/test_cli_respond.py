"""`prosocial respond` (one text, JSON Lines batches) and `prosocial chat`, driven through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from prosocial.canary.base import register_detector
from prosocial.cli.respond import chat, respond
from prosocial.steer import HANDOVER_REPLY
from tests.steer_helpers import CrisisDetector, WebhookServer, build_tiny_llama

register_detector("test-crisis")(CrisisDetector)

app = typer.Typer()
app.command()(respond)
app.command()(chat)
runner = CliRunner()


@pytest.fixture(scope="module")
def steered(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Options selecting the steered generator on a tiny random Llama (via the real transformers backend)."""
    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    return ["--backend", "steered", "--lm", "transformers", "--model", str(folder)]


def test_respond_to_one_text(steered: list[str]) -> None:
    result = runner.invoke(app, ["respond", "hello there", "-c", "hi", *steered, "--detector", "keywords"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert "__casual__" in result.stderr

    result = runner.invoke(app, ["respond", "I will kill myself", *steered, "--detector", "test-crisis", "--json"])
    turn = json.loads(result.stdout)
    assert turn["response"] == HANDOVER_REPLY and turn["escalated"] and turn["coarse"] == "needs intervention"


def test_respond_batch_writes_every_row(steered: list[str], tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": "a", "context": ["hello there"]}, {"id": 7, "context": ["hi", "ok", "I want to kill myself"]},
            {"id": "c", "context": ["I want to pull the fire alarm as a prank"]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = ["respond", "-i", str(source), "-o", str(target), *steered, "--detector", "test-crisis", "--batch-size", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in out] == ["a", 7, "c"]
    assert all(set(r) == {"id", "response", "rots", "safety_label", "norm", "danger"} and r["response"] for r in out)
    assert [r["safety_label"] for r in out] == ["__casual__", "__needs_intervention__", "__needs_caution__"]
    assert out[1]["response"] == HANDOVER_REPLY and out[2]["rots"]
    assert f"wrote 3 replies to {target}" in result.stderr.splitlines()


def test_respond_batch_names_bad_lines_and_writes_nothing(steered: list[str], tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"id": 1, "context": ["hello"]}\n{"id": 2, "context": []}\nnot json\n', encoding="utf-8")
    args = ["respond", "-i", str(source), "-o", str(target), *steered, "--detector", "keywords"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "line 2" in result.stderr and "context" in result.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == [source]

    result = runner.invoke(app, [*args, "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [1]
    assert "line 2" in result.stderr and result.stderr.splitlines()[-1].endswith("; skipped 2 bad lines")


def test_bad_choices_are_clear_errors(steered: list[str]) -> None:
    result = runner.invoke(app, ["respond", "hi", "--backend", "nonesuch", "--detector", "keywords"])
    assert result.exit_code == 1
    assert "nonesuch" in result.stderr and "steered" in result.stderr and "prost" in result.stderr
    result = runner.invoke(app, ["respond", "hi", "--backend", "prost", "--lm", "transformers"])
    assert result.exit_code == 2 and "--lm only applies" in result.output
    assert runner.invoke(app, ["respond", "-i", "x.jsonl"]).exit_code == 2
    assert runner.invoke(app, ["respond", *steered, "--detector", "keywords"]).exit_code == 2
    result = runner.invoke(app, ["respond", "hi", *steered, "--detector", "nonesuch"])
    assert result.exit_code == 1 and "keywords" in result.stderr


def test_chat_shows_labels_escalates_and_resets(steered: list[str]) -> None:
    lines = ["hello there", "I want to pull the fire alarm as a prank", "I want to kill myself", "how are you?",
             "/reset", "hello again", "/quit", "never read"]
    with WebhookServer().running() as server:
        result = runner.invoke(app, ["chat", *steered, "--detector", "test-crisis", "--webhook", server.url,
                                     "--region", "us"],
                               input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert out.count("__casual__") == 3 and "__needs_caution__" in out and "It's wrong to pull" in out
    assert out.count("handed over to a human") == 2 and out.count("988") >= 2
    assert "conversation reset" in out and out.rstrip().endswith("bye")
    (event,) = server.events
    assert event["context"][-1] == "I want to kill myself" and len(event["context"]) == 5


def test_chat_ends_at_end_of_input(steered: list[str]) -> None:
    result = runner.invoke(app, ["chat", *steered, "--detector", "keywords"], input="hello there\n")
    assert result.exit_code == 0 and "__casual__" in result.stdout and "bye" in result.stdout


def test_check_batch_keeps_every_good_line_and_reports_the_skipped(tmp_path):
    from prosocial.cli import app as cli

    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"id": "a", "context": ["hi"]}\nnot json\n{"id": "b", "context": ["you idiot"]}\n')
    result = CliRunner().invoke(cli, ["check", "-i", str(source), "-o", str(target), "--backend", "keywords",
                                      "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == ["a", "b"]
    assert f"wrote 2 verdicts to {target}; skipped 1 bad lines" in result.stderr.splitlines()  # never wrapped
