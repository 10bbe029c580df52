"""The learned situation–rule matcher: its pairs (train splits only), hard-negative mining, a few training steps of
a tiny BERT built from a config on ~20 fixture pairs, and the saved folder loaded by the norms engine."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from prosocial.canary.baselines import KeywordDetector
from prosocial.canary.norm_matcher import MATCHER_FILE, LearnedMatcher
from prosocial.canary.norm_matcher_train import (
    MatcherTrainSettings,
    Pair,
    matcher_pairs,
    mine_hard_negatives,
    split_pairs,
    train_norm_matcher,
)
from prosocial.canary.norms import Norm, NormBank, NormedDetector, calibrate, read_norms, write_calibrated
from prosocial.errors import ModelError

FIXTURE = Path(__file__).parent / "fixtures" / "norms" / "matcher_pairs.jsonl"
CASUAL = ["hi, how are you?", "I went hiking with my dog today", "what's your favourite food?",
          "the weather is lovely this morning", "do you like pizza?", "I just finished a good book",
          "my sister is visiting next week", "see you tomorrow!", "what music do you listen to?",
          "I love cooking pasta on sundays"]


def fixture_pairs() -> list[Pair]:
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Pair(r["situation"], r["rule"], "fixture", r.get("negative_situation")) for r in rows]


def test_pairs_come_from_every_source_and_train_splits_only(shared_data):
    from prosocial.canary.danger_train import CORPUS
    from prosocial.data.adapters import load_benchmark
    from prosocial.data.danger import BY_NAME, read_corpus

    pairs = matcher_pairs(shared_data)
    assert all(pairs[name] for name in ("sbic", "prosocial", "dialogstudio", "danger")), {
        k: len(v) for k, v in pairs.items()}
    sbic_dev = {e.context[-1] for e in load_benchmark("sbic", "dev", root=shared_data)}
    assert not sbic_dev & {p.situation for source in pairs.values() for p in source}
    unseen = {c.text for c in read_corpus(CORPUS, ("dev", "heldout"))}
    train = {c.text for c in read_corpus(CORPUS, ("train",))}
    danger = pairs["danger"]
    assert {p.situation for p in danger} <= train and not {p.situation for p in danger} & unseen
    assert {p.negative_situation for p in danger if p.negative_situation} <= train  # look-alikes, train rows only
    assert {p.rule for p in danger} <= {c.rot for c in BY_NAME.values()}
    train_pairs, dev_pairs = split_pairs([p for source in pairs.values() for p in source], 0.05)
    assert dev_pairs and not {p.situation for p in train_pairs} & {p.situation for p in dev_pairs}


def test_a_mined_negative_is_near_but_never_the_situations_rule_or_a_rewording():
    vectors = {"rule a": [1, 0, 0], "rule a reworded": [0.99, 0.14, 0], "rule b": [0.6, 0.8, 0], "rule c": [0, 0, 1],
               "s1": [0.9, 0.43, 0], "s2": [0, 0.2, 0.98], "s3": [0.6, 0.8, 0], "s4": [1, 0.1, 0]}

    def encode(texts):
        out = np.array([vectors[t] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    pairs = [Pair("s1", "rule a", "t"), Pair("s2", "rule c", "t"), Pair("s3", "rule b", "t"),
             Pair("s4", "rule a reworded", "t")]
    settings = MatcherTrainSettings(hard_negative_pool=1, duplicate_similarity=0.9)
    mined = mine_hard_negatives(pairs, encode, settings, random.Random(0))
    # s1 is nearest "rule a reworded" after its own, but that is its rule reworded (cosine 0.99): "rule b" instead
    assert [p.negative_rule for p in mined] == ["rule b", "rule b", "rule a reworded", "rule b"]


@pytest.fixture(scope="module")
def tiny_matcher(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel

    from tests.tiny_models import save, train_tokenizer

    pairs = fixture_pairs()
    texts = [t for p in pairs for t in (p.situation, p.rule, p.negative_situation or "")] + CASUAL
    tokenizer = train_tokenizer(texts, vocab_size=300)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    encoder_dir = save(BertModel(config), tokenizer, tmp_path_factory.mktemp("tiny-bert"))
    out = tmp_path_factory.mktemp("matchers") / "matcher"
    settings = MatcherTrainSettings(max_steps=24, batch_size=8, lr=1e-3, max_length=32, dev_share=0.2, threads=1,
                                    device="cpu")
    report = train_norm_matcher(out, settings=settings, encoder_dir=encoder_dir, pairs={"fixture": pairs},
                                casual=CASUAL, progress=False)
    return out, report


def test_a_tiny_matcher_trains_on_fixture_pairs_and_saves_a_folder(tiny_matcher):
    out, report = tiny_matcher
    assert report["steps"] == 24 and report["last_loss"] < report["first_loss"]
    assert report["pairs"] == {"fixture": 20} and report["train_pairs"] + report["dev_pairs"] == 20
    assert set(report["dev_retrieval"]) == {"before", "after"}
    assert -1 <= report["threshold"]["min_similarity"] <= 1
    matcher = LearnedMatcher.load(out)
    assert matcher.id.startswith("bi-encoder-") and matcher.meta["steps"] == 24
    assert not list(out.parent.glob(".matcher.*"))  # written beside it, renamed over it: nothing left behind
    vectors = matcher.encode(["selling my account", "hello"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_the_norms_engine_loads_and_uses_a_learned_matcher(tiny_matcher, tmp_path):
    out, _ = tiny_matcher
    norm = Norm("money", "It's against the rules to buy or sell game accounts for real money.", "caution",
                ("selling my max level account for 50 bucks, dm me", "who wants my diamond account, I take venmo"),
                ("I traded my sword for his shield in game, fair deal",))
    detector = NormedDetector(KeywordDetector(), [norm], matcher=out)
    assert detector.bank.matcher.id == LearnedMatcher.load(out).id
    verdict = detector.check(["selling my max level account for 50 bucks, dm me"])
    assert verdict.norm == "money" and verdict.coarse.value == "needs caution"
    assert detector.bank.threshold(norm) == (LearnedMatcher.load(out).min_similarity, "default")
    assert detector.check(["I traded my sword for his shield in game, fair deal"]).norm is None  # its counter-example
    # calibration reads the learned matcher's scores and keeps its threshold under its own id
    source = tmp_path / "money.jsonl"
    source.write_text(json.dumps({"id": norm.id, "rot": norm.rot, "level": "caution", "examples": list(norm.examples),
                                  "counter_examples": list(norm.counter_examples)}) + "\n", encoding="utf-8")
    bank = NormBank(read_norms(source), matcher=out)
    report = calibrate(bank, CASUAL)
    assert report.matcher == bank.matcher.id and report.turns == len(CASUAL)
    write_calibrated(source, tmp_path / "calibrated.jsonl", report)
    (calibrated,) = read_norms(tmp_path / "calibrated.jsonl")
    assert dict(calibrated.calibrated) == {bank.matcher.id: report.norms[0].calibrated}
    assert NormBank([calibrated], matcher=out).threshold(calibrated) == (report.norms[0].calibrated, "calibrated")


def test_a_bad_matcher_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LearnedMatcher.load(tmp_path / "missing")
    (tmp_path / "m" / "encoder").mkdir(parents=True)
    (tmp_path / "m" / "encoder" / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "m" / MATCHER_FILE).write_text(json.dumps({"kind": "bi-encoder", "id": "x", "min_similarity": 3}),
                                               encoding="utf-8")
    with pytest.raises(ModelError, match="min_similarity"):
        LearnedMatcher.load(tmp_path / "m")


def test_check_and_load_detector_take_a_learned_matcher(tiny_matcher, tmp_path):
    """`prosocial check --norms-matcher` (and `load_detector(norms_matcher=)`, the service's `norms_matcher`) match
    the user's norms with the learned matcher; a matcher without norms is a clear error."""
    from typer.testing import CliRunner

    from prosocial.canary import load_detector
    from prosocial.cli import app

    out, _ = tiny_matcher
    norms = tmp_path / "money.jsonl"
    norms.write_text(json.dumps({"id": "money", "rot": "It's against the rules to sell game accounts for money.",
                                 "level": "caution", "examples": ["selling my max level account for 50 bucks, dm me"]})
                     + "\n", encoding="utf-8")
    detector = load_detector("keywords", norms=[norms], norms_matcher=out)
    assert detector.bank.matcher.id == LearnedMatcher.load(out).id
    with pytest.raises(ValueError, match="without norms"):
        load_detector("keywords", norms_matcher=out)
    result = CliRunner().invoke(app, ["check", "selling my max level account for 50 bucks, dm me", "--backend",
                                      "keywords", "--norms", str(norms), "--norms-matcher", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["norm"] == "money"


def test_serve_refuses_a_bad_norms_matcher_before_the_port_opens(tmp_path):
    from typer.testing import CliRunner

    from prosocial.cli import app

    norms = tmp_path / "n.jsonl"
    norms.write_text(json.dumps({"id": "n", "rot": "It's rude to spoil endings.", "level": "caution",
                                 "examples": ["the butler did it"]}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["serve", "--norms", str(norms), "--norms-matcher", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "not found" in result.output
