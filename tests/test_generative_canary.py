"""The generative Canary on tiny random models trained on the real-schema fixtures."""

from __future__ import annotations

import logging

import pytest

from prosocial.canary import load_detector
from prosocial.canary.generative import (
    CANARY_TOKENS,
    ROT_SEP,
    GenerativeCanary,
    canary_pairs,
    canary_target,
    parse_canary,
    write_config,
)
from prosocial.data.formats import read_dialogues
from prosocial.data.labels import LABELS, SafetyLabel
from prosocial.errors import ModelError
from prosocial.eval.reports import canary_report
from prosocial.lm.finetune import TrainConfig, finetune
from prosocial.lm.inference import add_special_tokens
from tests.tiny_models import corpus_texts, fixture_examples, save, tiny_gpt2, tiny_t5, train_tokenizer

CONFIG = TrainConfig(lr=3e-3, batch_size=8, max_steps=60, warmup_steps=0, progress=False, device="cpu")
UNIFORM = {label.value: 0.2 for label in LABELS} | {SafetyLabel.NEEDS_INTERVENTION.value: 0.4}


@pytest.fixture(scope="module")
def examples(shared_data):
    return fixture_examples(shared_data)


@pytest.fixture(scope="module")
def tokenizer(examples):
    return train_tokenizer(corpus_texts(examples))


@pytest.fixture(scope="module")
def trained(examples, tokenizer, tmp_path_factory):
    """A tiny T5 Canary trained on the fixture contexts, saved as `prosocial train canary` saves it."""
    root = tmp_path_factory.mktemp("canary")
    base = save(tiny_t5(tokenizer), tokenizer, root / "base")
    finetune(base, canary_pairs(examples), root / "model", CONFIG, new_tokens=CANARY_TOKENS)
    write_config(root / "model", ROT_SEP, None, 512)
    return root / "model"


def test_targets_follow_the_paper_and_parse_back_with_commas_inside_rots():
    rots = ["It's ok to be upset when someone's hurt you, but forgive them.", "Be honest."]
    target = canary_target(SafetyLabel.NEEDS_CAUTION, rots)
    assert target == f"__needs_caution__ {rots[0]} {ROT_SEP} {rots[1]}"
    assert canary_target(SafetyLabel.CASUAL, ["ignored"]) == "__casual__"
    verdict, ok = parse_canary(target, UNIFORM)
    assert ok and verdict.safety_label is SafetyLabel.NEEDS_CAUTION and verdict.rots == rots


def test_malformed_generations_fall_back_to_the_scores(caplog):
    verdict, ok = parse_canary("garbage words __rot__ more", UNIFORM)
    assert not ok and verdict.safety_label is SafetyLabel.NEEDS_INTERVENTION
    assert verdict.rots == ["garbage words", "more"]
    empty, ok = parse_canary("", {**UNIFORM, "__casual__": 0.9})
    assert not ok and empty.safety_label is SafetyLabel.CASUAL and empty.rots == []
    casual, ok = parse_canary("__casual__ stray text", UNIFORM)
    assert ok and casual.rots == []


def test_verdicts_scores_and_rots_from_a_trained_model(trained, examples):
    detector = load_detector("generative", model=trained)
    assert isinstance(detector, GenerativeCanary)
    contexts = [e.context for e in examples[:6]]
    verdicts = detector.predict(contexts)
    fast = detector.predict(contexts, with_rots=False)
    for verdict, quick in zip(verdicts, fast, strict=True):
        assert set(verdict.scores) == {label.value for label in LABELS}
        assert sum(verdict.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert verdict.scores == pytest.approx(quick.scores, abs=1e-4)  # same first-token distribution
        assert quick.rots == []
        if verdict.safety_label.is_casual:
            assert verdict.rots == []
    assert any(v.rots for v in verdicts)  # the fixtures are mostly unsafe: the trained model writes RoTs


def test_save_load_round_trip_and_unreadable_dirs(trained, examples, tokenizer, tmp_path):
    detector = GenerativeCanary.load(trained)
    copy = GenerativeCanary.load(detector.save(tmp_path / "copy"))
    context = examples[0].context
    assert copy.check(context).to_dict() == detector.check(context).to_dict()
    by_folder = load_detector(tmp_path / "copy")  # its prosocial.json names the backend
    assert isinstance(by_folder, GenerativeCanary) and by_folder.check(context) == detector.check(context)
    with pytest.raises(ModelError, match="not found"):
        GenerativeCanary(tmp_path / "missing").check(["hi"])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    with pytest.raises(ModelError):
        GenerativeCanary.load(tmp_path / "junk")
    plain = save(tiny_t5(tokenizer), tokenizer, tmp_path / "plain")  # a base model without label tokens
    with pytest.raises(ModelError, match="not a Canary model"):
        GenerativeCanary.load(plain)
    with pytest.raises(ValueError, match="empty"):
        detector.predict([[]])


def test_an_untrained_model_never_crashes_and_warns_on_malformed_output(examples, caplog):
    tok = train_tokenizer(corpus_texts(examples))  # its own: special tokens are added to it below
    model = tiny_gpt2(tok, seed=3)
    add_special_tokens(model, tok, CANARY_TOKENS)
    detector = GenerativeCanary.from_model(model, tok, max_new_tokens=8)
    with caplog.at_level(logging.WARNING, logger="prosocial.canary.generative"):
        verdicts, malformed = detector.predict_raw([e.context for e in examples[:4]])
    assert len(verdicts) == 4 and all(isinstance(v.safety_label, SafetyLabel) for v in verdicts)
    assert malformed > 0 and malformed == sum("no leading label token" in r.message for r in caplog.records)


def test_table2_evaluation_on_fixtures_and_paper_dialogues(trained, examples, paper_tables_path):
    result = canary_report(GenerativeCanary.load(trained), examples)
    assert {"n", "accuracy", "accuracy_coarse", "malformed", "rot_n", "rot_bleu4", "rot_f1",
            "rot_perplexity"} <= set(result)
    assert result["n"] == len(examples)
    for key in ("accuracy", "accuracy_coarse", "malformed", "rot_bleu4", "rot_f1"):
        assert 0.0 <= result[key] <= 1.0
    assert result["accuracy_coarse"] >= result["accuracy"]
    assert 1.0 < result["rot_perplexity"] < 10_000
    paper = [e for d in read_dialogues(paper_tables_path) for e in d.examples()]
    assert canary_report(GenerativeCanary.load(trained), paper)["n"] == len(paper)
