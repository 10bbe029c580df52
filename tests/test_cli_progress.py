"""Batch jobs tell the user how far they are: rate and time left on the bar, and a plain line on stderr every few
seconds when stderr is not a terminal (a log, CI, nohup), where the bar is hidden."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.cli import app
from prosocial.cli import batch as cli_batch
from prosocial.cli.batch import rate_and_eta
from prosocial.data.labels import SafetyLabel
from prosocial.prost.base import Reply, ResponseGenerator
from prosocial.steer import ProsocialAgent


def test_rate_and_time_left():
    assert rate_and_eta(0, 10, 5.0) == "starting"
    assert rate_and_eta(10, 40, 5.0) == "2.0 rows/s, about 15s left"
    assert rate_and_eta(3, 10, 60.0, "lines") == "3.0 lines/min, about 2m20s left"
    assert rate_and_eta(100, 100, 20.0) == "5.0 rows/s"
    assert rate_and_eta(1, 1000, 10.0).endswith("about 2h46m left")
    assert rate_and_eta(5, None, 1.0) == "5.0 rows/s"


def _job(tmp_path, rows: int = 5):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "context": [f"hello {i}"]}) + "\n" for i in range(rows)))
    return ["check", "-i", str(source), "-o", str(tmp_path / "out.jsonl"), "--backend", "keywords",
            "--batch-size", "2"]


def test_without_a_terminal_a_plain_progress_line_comes_every_few_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_batch, "PLAIN_PROGRESS_SECONDS", 0.0)
    result = CliRunner().invoke(app, _job(tmp_path))
    assert result.exit_code == 0, result.output
    lines = re.findall(r"^check: (\d+)/5 lines, (.*)$", result.output, re.M)
    assert [int(done) for done, _ in lines] == [2, 4, 5]
    assert all("lines/" in rest for _, rest in lines) and "left" in lines[0][1]
    assert "wrote 5 verdicts" in result.output


def test_a_short_job_prints_no_progress_line(tmp_path):
    result = CliRunner().invoke(app, _job(tmp_path))
    assert result.exit_code == 0 and "lines," not in result.output


def test_a_rerun_of_a_finished_corpus_job_says_it_wrote_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, rows in (("a", 3), ("b", 2)):
        (corpus / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": f"{name}{i}", "context": ["hi"]}) + "\n" for i in range(rows)))
    args = ["check", "-i", str(corpus), "-o", str(tmp_path / "out"), "-b", "keywords"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0 and "wrote 5 verdicts in 2 shards" in first.output, first.output
    (tmp_path / "out" / "b.jsonl").unlink()
    again = " ".join(CliRunner().invoke(app, args).output.split())
    assert "wrote 2 verdicts in 1 shards" in again and "1 shards already done (5 verdicts in all)" in again
    done = " ".join(CliRunner().invoke(app, args).output.split())
    assert "nothing to do: all 2 shards" in done and "wrote" not in done


# --------------------------------------------------------------------------- respond: one step per reply


@register_detector("test-progress")
class HelpDetector(SafetyDetector):
    """"help" needs intervention (a hand-over, decided without the generator); anything else is surely casual."""

    def predict(self, contexts, with_rots: bool = True) -> list[Verdict]:
        return [Verdict(SafetyLabel.NEEDS_INTERVENTION, {"__needs_intervention__": 1.0}, ["Get help."])
                if "help" in c[-1] else Verdict(SafetyLabel.CASUAL, {"__casual__": 1.0}) for c in contexts]


class Echo(ResponseGenerator):
    """Asks back about the last turn; records each call in `events`, beside the rows the agent reports."""

    def __init__(self, events: list):
        self.events = events

    def generate(self, contexts, rots=None) -> list[Reply]:
        self.events.append(("generate", len(contexts)))
        return [Reply(f"What do you mean by {c[-1].split()[-1]}?") for c in contexts]


def test_the_agent_reports_each_row_once_as_soon_as_it_is_decided_and_replies_the_same():
    contexts = [["hi there"], ["please help me"], ["a nice day"], ["help"]]
    events: list = []
    reported = ProsocialAgent(HelpDetector(), Echo(events)).respond_batch(contexts, on_reply=events.append)
    plain = ProsocialAgent(HelpDetector(), Echo([])).respond_batch(contexts)
    assert [t.to_dict() for t in reported] == [t.to_dict() for t in plain]
    assert events == [1, 3, ("generate", 2), 0, 2], "hand-overs before the generator's one call for the batch"


def _respond_job(tmp_path, rows: int = 5) -> tuple[list[str], str]:
    folder = tmp_path / "in"
    folder.mkdir()
    source = folder / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": i, "context": [f"hello {i}" if i % 2 else "help me"]}) + "\n"
                              for i in range(rows)))
    return ["respond", "-i", str(source), "-o", str(tmp_path / "out.jsonl"), "-b", "canned", "-d", "test-progress",
            "--batch-size", "2"], str(folder)


def test_respond_moves_the_progress_one_line_per_reply_and_writes_what_a_corpus_job_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_batch, "PLAIN_PROGRESS_SECONDS", 0.0)
    args, folder = _respond_job(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = re.findall(r"^respond: (\d+)/5 lines, (.*)$", result.output, re.M)
    assert [int(done) for done, _ in lines] == [1, 2, 3, 4, 5], result.output
    assert "wrote 5 replies" in result.output
    # a corpus job's batch function is called without `on_row`: the same replies, byte for byte
    corpus = CliRunner().invoke(app, [*args[:1], "-i", folder, "-o", str(tmp_path / "shards"), *args[5:]])
    assert corpus.exit_code == 0, corpus.output
    assert (tmp_path / "shards" / "rows.jsonl").read_bytes() == (tmp_path / "out.jsonl").read_bytes()
