"""`prosocial check` says why a label is what it is: the threshold that decided, the norm that matched, the danger
category; the score bars alone mislead (the intervention threshold is low by design)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from prosocial.canary.base import Verdict
from prosocial.canary.mini import MiniConfig
from prosocial.cli import app
from prosocial.cli import canary as cli_canary
from prosocial.data.labels import SafetyLabel

S = SafetyLabel
CONFIG = MiniConfig(casual_threshold=0.6, intervention_threshold=0.2)


def _scores(casual: float, caution: float, intervention: float) -> dict[str, float]:
    """Five-way scores whose caution mass sits on one label (explain only reads the sums)."""
    return {S.CASUAL.value: casual, S.POSSIBLY_NEEDS_CAUTION.value: caution, S.PROBABLY_NEEDS_CAUTION.value: 0.0,
            S.NEEDS_CAUTION.value: 0.0, S.NEEDS_INTERVENTION.value: intervention}


@pytest.fixture
def mini(monkeypatch):
    monkeypatch.setattr(cli_canary, "_mini_config", lambda detector: CONFIG)


@pytest.mark.parametrize(
    ("label", "scores", "words"),
    [
        (S.NEEDS_INTERVENTION, (0.6, 0.1, 0.3), "P(intervention) 0.30 is at or above the intervention threshold 0.20"),
        (S.CASUAL, (0.8, 0.15, 0.05), "caution share 0.16 is below the casual threshold 0.60"),
        (S.NEEDS_CAUTION, (0.1, 0.85, 0.05), "caution share 0.89 is at or above the casual threshold 0.60: about 3"),
    ],
)
def test_the_deciding_threshold_is_named(mini, label, scores, words):
    (reason,) = cli_canary.explain(Verdict(label, _scores(*scores)), detector=None)
    assert words in reason


def test_a_norm_or_danger_category_that_changed_the_label_is_named(mini):
    verdict = Verdict(S.NEEDS_INTERVENTION, _scores(0.9, 0.05, 0.05), danger="poisoning")
    danger, rule = cli_canary.explain(verdict, detector=None)
    assert danger == "danger category: poisoning and overdose"
    assert rule.startswith("the model's thresholds alone say __casual__") and "the danger category made it" in rule
    verdict = Verdict(S.NEEDS_CAUTION, _scores(0.9, 0.05, 0.05), norm="no-spoilers")
    norm, rule = cli_canary.explain(verdict, detector=None)
    assert norm == "your norm 'no-spoilers' matched" and "the norm made it __needs_caution__" in rule


def test_other_backends_get_no_threshold_line():
    assert cli_canary.explain(Verdict(S.CASUAL, _scores(1, 0, 0)), detector=object()) == []


def test_check_prints_why_with_the_shipped_thresholds_and_names_a_matched_norm(tmp_path):
    from prosocial.canary.mini import DEFAULT_DIR

    threshold = json.loads((DEFAULT_DIR / "config.json").read_text())["intervention_threshold"]
    result = CliRunner().invoke(app, ["check", "What's the best way to keep basil alive on a windowsill?"],
                                env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    why = [line for line in result.output.splitlines() if line.strip().startswith("why:")]
    assert len(why) == 1 and f"intervention threshold {threshold:.2f}" in why[0]
    norms = tmp_path / "norms.yaml"
    norms.write_text("- id: no-spoilers\n  rot: It's rude to spoil a story.\n  level: caution\n"
                     "  examples: [the ending of the movie is that the butler did it]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "--norms", str(norms), "the ending of the movie is that the butler did "
                                      "it"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    assert f"why: your norm 'no-spoilers' matched ({norms}:1), level caution" in result.output


def test_check_judges_a_reply_as_the_guard_proxy_does():
    runner = CliRunner()
    args = ["check", "-b", "keywords", "You are a fucking idiot", "--reply", "Yeah, you're right!", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout.strip().splitlines()[-1])["reply"]
    assert reply["sides_with"] is True and reply["action"] == "replace"
    human = runner.invoke(app, args[:-1])
    assert "sides with the turn: yes; the proxy would replace (sides_with)" in " ".join(human.stdout.split())
    refused = runner.invoke(app, ["check", "-i", "x.jsonl", "--reply", "hi"])
    assert refused.exit_code != 0 and "--reply" in refused.output
