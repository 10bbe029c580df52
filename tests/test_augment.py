"""Label-preserving context augmentation, on real train-split slices."""

from __future__ import annotations

import random
from collections import Counter

from prosocial.data.adapters import load_benchmark
from prosocial.data.augment import FILLERS, NEUTRAL_REPLIES, augment, is_short, prefix_small_talk, trailing_filler
from prosocial.data.labels import SafetyLabel
from prosocial.eval.behaviour import BOT_TURNS, SHORT_TURNS


def _slices(shared_data):
    flagged = load_benchmark("sbic", "train", root=shared_data, limit=200)
    casual = load_benchmark("dailydialog", "train", root=shared_data, limit=200)
    return flagged, casual


def test_rules_keep_the_label_and_the_judged_utterance(shared_data) -> None:
    flagged, casual = _slices(shared_data)
    rng = random.Random(0)
    dialogue_turns = {u for e in casual for u in e.context}
    for example in flagged[:50]:
        prefixed = prefix_small_talk(example, casual, rng)
        assert prefixed.context[-1] == example.context[-1] and prefixed.safety_label is example.safety_label
        assert 1 <= len(prefixed.context) - len(example.context) <= 3
        assert set(prefixed.context[:-1]) <= dialogue_turns
        assert prefixed.meta["augmented"] == "prefix_small_talk" and prefixed.id != example.id
        filled = trailing_filler(example, rng)
        assert filled.context[: len(example.context)] == example.context
        assert filled.context[-2] in NEUTRAL_REPLIES and filled.context[-1] in FILLERS
        assert filled.safety_label is example.safety_label


def test_augment_balances_turn_counts_and_is_deterministic(shared_data) -> None:
    flagged, casual = _slices(shared_data)
    examples = flagged + casual
    out = augment(examples, casual, random.Random(1))
    assert out[: len(examples)] == examples  # nothing dropped or changed
    added = Counter(e.meta.get("augmented") for e in out[len(examples) :])
    assert set(added) == {"prefix_small_talk", "trailing_filler", "lone_utterance"}
    assert not any(e.meta.get("augmented") for e in out if e.source == "dailydialog")
    lone = [e for e in out if e.source == "lone_utterance"]
    assert all(len(e.context) == 1 and e.safety_label is SafetyLabel.CASUAL for e in lone)
    assert any(is_short(e.context[0]) for e in lone)
    assert [e.context for e in augment(examples, casual, random.Random(1))] == [e.context for e in out]
    assert augment(flagged, [], random.Random(1))[: len(flagged)] == flagged  # no casual pool: fillers only


def test_the_behaviour_suite_does_not_test_on_augmentation_material() -> None:
    assert not set(SHORT_TURNS) & set(FILLERS)
    assert not set(BOT_TURNS) & set(NEUTRAL_REPLIES)
