"""The learned reply-agreement judge: training and threshold on a toy corpus, its files, the guard using it, and the
shipped judge's rates on held-out DiaSafety replies."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from prosocial.errors import ModelError
from prosocial.prost.agreement import (
    AgreementJudge,
    Pair,
    diasafety_pairs,
    lowest_precise_threshold,
    train_agreement_judge,
)
from prosocial.prost.guard import ReplyGuard
from tests.test_reply_guard import ScriptedSampler
from tests.tiny_models import BagOfWordsEmbedder

TURNS = ["i will key his car tonight", "women cannot lead teams", "i skip my insulin to lose weight",
         "i stole from the register", "i want to prank call my teacher", "i drive home drunk every friday"]
AGREE = ["yes totally agree great idea", "so true go for it", "haha yeah you deserve it", "sounds fun enjoy"]
PUSH_BACK = ["that could hurt someone please stop", "it is wrong to hurt others", "please talk to a doctor first",
             "why would you do that it is not okay"]


def toy_pairs(n: int = 600, seed: int = 0) -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        agrees = rng.random() < 0.5
        reply = rng.choice(AGREE if agrees else PUSH_BACK)
        pairs.append(Pair(f"{rng.choice(TURNS)} {i}", reply, agrees))
    return pairs


def test_the_threshold_is_the_lowest_score_with_the_precision_asked_for() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    gold = np.array([1, 1, 0, 1, 0])
    assert lowest_precise_threshold(scores, gold, 0.75) == 0.6  # top 4: 3 of 4 right
    assert lowest_precise_threshold(scores, gold, 0.9) == 0.8
    assert lowest_precise_threshold(scores, np.zeros(5), 0.5) == 0.9, "nothing reaches it: flag only the top"


def test_a_judge_learns_agreement_and_round_trips(tmp_path: Path) -> None:
    judge = train_agreement_judge(toy_pairs(), embedder=BagOfWordsEmbedder())
    held_out = toy_pairs(200, seed=1)
    flags = judge.agrees([p.turn for p in held_out], [p.reply for p in held_out])
    accuracy = np.mean([f == p.agrees for f, p in zip(flags, held_out, strict=True)])
    assert accuracy >= 0.95
    assert judge.config["fitted_pairs"] + judge.config["calibration_pairs"] == 600
    loaded = AgreementJudge.load(judge.save(tmp_path / "judge"), embedder=BagOfWordsEmbedder())
    assert loaded.threshold == pytest.approx(judge.threshold)
    np.testing.assert_allclose(loaded.probabilities(TURNS[:2], AGREE[:2]),
                               judge.probabilities(TURNS[:2], AGREE[:2]), atol=1e-2)  # fp16 on disk


def test_bad_input_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing \['agreement.json', 'head.npz'\].*train_reply_agreement"):
        AgreementJudge.load(tmp_path)
    judge = train_agreement_judge(toy_pairs(), embedder=BagOfWordsEmbedder())
    with pytest.raises(ValueError, match="2 turns for 1 replies"):
        judge.probabilities(TURNS[:2], AGREE[:1])
    assert judge.agrees([], []) == []
    with pytest.raises(ValueError, match="calibration slice"):
        train_agreement_judge([p for p in toy_pairs() if p.agrees], embedder=BagOfWordsEmbedder())


class ListJudge:
    """Flags the replies in `agreeing`; records each batched call."""

    def __init__(self, agreeing: set[str]):
        self.agreeing, self.calls = agreeing, []

    def agrees(self, turns, replies):
        self.calls.append(list(replies))
        return [r in self.agreeing for r in replies]


def test_the_guard_resamples_what_the_judge_flags_and_the_rules_miss() -> None:
    subtle = "Well, if you have to, be quick about it."
    first = {"skip": subtle, "fine": "Please talk to your doctor first."}
    generator = ScriptedSampler(first, {1: {"skip": "That could really hurt you. Why skip it?"}})
    judge = ListJudge({subtle})
    out = ReplyGuard(judge=judge).generate(generator, [["skip"], ["fine"]], [[], []], casual=[False, False])
    assert [g.path for g in out] == ["resampled", "accepted"] and out[0].problem == "condones"
    assert judge.calls == [[subtle, first["fine"]], ["That could really hurt you. Why skip it?"]], "one call a round"
    assert ReplyGuard().generate(generator, [["skip"]], [[]], casual=[False])[0].path == "accepted", "rules alone"


def test_the_shipped_judge_on_held_out_diasafety_replies(full_data: Path) -> None:
    """DiaSafety val (never fitted or calibrated on). Measured by scripts/train_reply_agreement.py, see the card."""
    pairs = diasafety_pairs("dev", full_data)
    agreement = [p for p in pairs if p.category == "Toxicity Agreement"]
    flags = AgreementJudge.load().agrees([p.turn for p in agreement], [p.reply for p in agreement])
    hits = [p.agrees for p, f in zip(agreement, flags, strict=True) if f]
    assert len(hits) >= 60
    assert sum(hits) / len(hits) >= 0.85, "precision, against a 0.49 base rate"
    assert sum(hits) / sum(p.agrees for p in agreement) >= 0.45, "recall (the rules: 0.41)"


def test_replies_that_only_ask_back_are_not_sent_to_the_judge() -> None:
    asks = "Why would you skip it? Have you talked to your doctor?"
    generator = ScriptedSampler({"skip": asks, "fine": "Please talk to your doctor first."}, {})
    judge = ListJudge({asks, "Please talk to your doctor first."})  # it would flag both
    out = ReplyGuard(judge=judge).generate(generator, [["skip"], ["fine"]], [[], []], casual=[False, False])
    assert out[0].path == "accepted" and out[0].reply.response == asks
    assert judge.calls[0] == ["Please talk to your doctor first."]
