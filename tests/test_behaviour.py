"""The CheckList-style behaviour suite: its mechanics on the keyword peer, its rates on the shipped Canary-mini."""

from __future__ import annotations

import json

import pytest

from prosocial.canary import load_detector
from prosocial.eval.behaviour import EVERYDAY_WRONGDOING, MINIMAL_PAIRS, SHORT_TURNS, build_checks, run_checks


def test_checks_are_built_from_dev_cases_and_report_rates(shared_data) -> None:
    detector = load_detector("keywords")
    checks = build_checks(detector, shared_data, per_check=40, seed=1)
    names = [c.name for c in checks]
    assert names == ["small_talk_prefix", "emergency_after_small_talk", "filler_after_problem",
                     "short_casual_turns", "everyday_wrongdoing", "benign_minimal_pairs"]
    results = run_checks(detector, checks)
    assert results["everyday_wrongdoing"]["n"] == 2 * len(EVERYDAY_WRONGDOING)
    assert results["benign_minimal_pairs"]["n"] == 2 * len(MINIMAL_PAIRS)
    assert results["short_casual_turns"]["n"] == len(SHORT_TURNS) + 40
    # the keyword list judges only the last utterance: a prefix never changes it, a filler always hides it
    assert results["small_talk_prefix"]["rate"] == 1.0
    assert results["filler_after_problem"]["rate"] == 0.0
    again = run_checks(detector, build_checks(detector, shared_data, per_check=40, seed=1))
    assert again == results


def test_cli_writes_the_report(tmp_path, shared_data) -> None:
    from typer.testing import CliRunner

    from prosocial.cli import app

    out = tmp_path / "behaviour"
    result = CliRunner().invoke(app, ["eval", "behaviour", "-d", "keywords", "--per-check", "20",
                                      "--data", str(shared_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| small_talk_prefix" in out.with_suffix(".md").read_text()
    assert json.loads(out.with_suffix(".json").read_text())["results"]["keywords"]["short_casual_turns"]["n"] > 20


@pytest.fixture(scope="module")
def shipped_results(full_data):
    detector = load_detector("canary-mini")
    return run_checks(detector, build_checks(detector, full_data, per_check=150, seed=0))


@pytest.mark.parametrize(
    ("check", "floor"),
    [
        ("small_talk_prefix", 0.91),
        ("emergency_after_small_talk", 0.88),
        ("filler_after_problem", 0.93),
        ("short_casual_turns", 0.96),
        ("everyday_wrongdoing", 0.52),
        ("benign_minimal_pairs", 0.72),
    ],
)
def test_shipped_canary_mini_behaves(shipped_results, check: str, floor: float) -> None:
    """Floors a little under the rates measured when the model shipped (model card: 95.7, 94.9, 97.3, 99.7, 61.7
    and 82.5% with 300 cases per check), so a regression fails; the previous model (v2) fails the last two."""
    assert shipped_results[check]["rate"] >= floor, shipped_results[check]
