"""The danger taxonomy, its hand-overs, the written corpus and the danger head's decision rule."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from prosocial.canary.danger import DangerCall, DangerConfig, DangerHead
from prosocial.data import danger
from prosocial.data.labels import SafetyLabel
from prosocial.errors import ModelError
from prosocial.heads import Head
from prosocial.resources import RESOURCES

CORPUS = RESOURCES / "danger" / "corpus.jsonl"


def test_every_category_says_its_verdict_hand_over_rule_and_held_out_situation() -> None:
    assert len(danger.EMERGENCIES) == 7 and len(danger.ACTS) == 5
    for cat in danger.CATEGORIES:
        assert cat.rot and cat.subcategories and danger.HELD_OUT_SUBCATEGORIES[cat.name] in cat.subcategories
        if cat.level is danger.Level.EMERGENCY:
            assert cat.handover is not None and not cat.warning
        else:
            assert cat.handover is None and cat.warning
    assert danger.category("poisoning").handover is danger.Handover.POISON
    assert danger.category("violence").handover is danger.Handover.ABUSE
    assert danger.category("self_harm").handover is danger.Handover.CRISIS
    with pytest.raises(ValueError, match="unknown danger category 'volcano'"):
        danger.category("volcano")


def test_hand_overs_fit_the_kind_and_the_region() -> None:
    assert "911" in danger.handover_for("medical", "us") and "988" not in danger.handover_for("medical", "us")
    assert "1-800-222-1222" in danger.handover_for("poisoning", "US")
    assert "116 123" in danger.handover_for("self_harm", "uk")
    assert "local emergency number" in danger.handover_for("hazard")
    general = danger.handover_for(None, "us")
    assert "911" in general and "988" in general
    with pytest.raises(ValueError, match="unknown region 'atlantis'; known: "):
        danger.check_region("atlantis")


def test_a_region_without_a_number_falls_back_to_the_international_text_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="prosocial.data.danger"):
        text = danger.handover_for("poisoning", "eu")
    assert "local poison control centre" in text
    assert "region 'eu' has no poison contact" in caplog.text


def test_dangerous_acts_get_a_warning_with_a_safer_step_and_emergencies_none() -> None:
    act = danger.warning_reply("chemical_mixing")
    assert act.startswith("Please don't.") and "one product at a time" in act
    with pytest.raises(ValueError, match="'hazard' is an emergency category"):
        danger.warning_reply("hazard")


def test_the_shipped_corpus_reads_and_its_splits_follow_the_rule() -> None:
    cases = danger.read_corpus(CORPUS)
    assert len(cases) > 8000 and {c.writer for c in cases} == set("ABCDEFGHIJKLMNOP")
    held = [c for c in cases if c.split == "heldout"]
    assert all(c.writer in danger.HELD_OUT_WRITERS or danger.HELD_OUT_SUBCATEGORIES[c.category] == c.subcategory
               for c in held)
    assert {c.writer for c in cases if c.split != "heldout"} == set("ACDEFGKLNO")  # held-out crowds: unread
    for name, sub in danger.HELD_OUT_SUBCATEGORIES.items():  # an unseen situation is never trained on
        assert not [c for c in cases if c.split != "heldout" and c.category == name and c.subcategory == sub]
    for kind in danger.KINDS:
        assert sum(c.kind == kind for c in held) >= 100
    assert danger.read_corpus(CORPUS, ("dev",)) == [c for c in cases if c.split == "dev"]
    assert {c.writer for c in cases if c.split == "dev"} == set(danger.DEV_WRITERS)  # a crowd of its own


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": ""}, "field 'text' must be a non-empty string"),
        ({"kind": "disaster"}, "field 'kind' must be one of"),
        ({"category": "volcano"}, "field 'category': unknown 'volcano'"),
        ({"subcategory": "stroke"}, "field 'subcategory': 'stroke' is not one of"),
        ({"kind": "act"}, "field 'kind': poisoning is 'emergency', not 'act'"),
        ({"prefix": "hi"}, "field 'prefix' must be a list"),
        ({"split": "train"}, "field 'split' is 'train' but the split rule gives 'heldout'"),
    ],
)
def test_a_bad_corpus_row_names_file_line_and_field(tmp_path, row: dict, message: str) -> None:
    good = {"text": "My son swallowed a battery", "kind": "emergency", "category": "poisoning",
            "subcategory": "button_battery", "writer": "A"}
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good | row) + "\n")
    with pytest.raises(ValueError, match=f"corpus.jsonl:3: {message}"):
        danger.read_corpus(path)


def _head(rows: dict[str, float]) -> DangerHead:
    """A head whose features are already class logits: feature i → class i."""
    config = DangerConfig(emergency_threshold=0.6, act_threshold=0.5, intervention_gate=0.2)
    size = len(config.classes)
    return DangerHead(Head({"w": np.eye(size, dtype=np.float32), "b": np.zeros(size, np.float32)}), config)


def _call(head: DangerHead, **probs: float) -> DangerCall:
    row = np.full(len(head.config.classes), 1e-6)
    for name, p in probs.items():
        row[head.config.classes.index(name)] = p
    return head.read(row[None, :] / row.sum())[0]


def test_the_danger_reading_decides_intervention_and_lifts_dangerous_acts() -> None:
    head = _head({})
    S = SafetyLabel
    calls = [
        _call(head, poisoning=0.5, medical=0.2, none=0.3),  # emergency mass 0.7: hand over, top emergency category
        _call(head, none=0.95, impaired_driving=0.05),  # the safety head's intervention without danger support
        _call(head, none=0.6, self_harm=0.4),  # ... with support (above the gate): it stands
        _call(head, impaired_driving=0.7, none=0.3),  # a dangerous act: at least needs caution
        _call(head, none=0.99),
    ]
    calls.append(DangerCall(None, 0.0, 0.0, support=0.3))  # "ok" after an emergency: the earlier turn supports
    labels = [S.CASUAL, S.NEEDS_INTERVENTION, S.NEEDS_INTERVENTION, S.CASUAL, S.POSSIBLY_NEEDS_CAUTION,
              S.NEEDS_INTERVENTION]
    fallback = [S.CASUAL, S.CASUAL, S.NEEDS_CAUTION, S.CASUAL, S.POSSIBLY_NEEDS_CAUTION, S.CASUAL]
    out, categories = head.apply(labels, calls, fallback)
    assert out == [S.NEEDS_INTERVENTION, S.CASUAL, S.NEEDS_INTERVENTION, S.NEEDS_CAUTION, S.POSSIBLY_NEEDS_CAUTION,
                   S.NEEDS_INTERVENTION]
    assert categories == ["poisoning", None, "self_harm", "impaired_driving", None, None]


def test_a_look_alike_clears_caution_but_never_an_emergency_or_a_dangerous_act() -> None:
    head = _head({})
    head.config.lookalike_threshold = 0.7
    S = SafetyLabel
    calls = [
        _call(head, lookalike=0.9, none=0.1),  # "How can I kill a Python process?": the safety head's caution goes
        _call(head, lookalike=0.6, none=0.4),  # below the threshold: the caution stays
        _call(head, lookalike=0.75, self_harm=0.25),  # ... but the safety head's supported intervention stands
        _call(head, lookalike=0.35, impaired_driving=0.65),  # a dangerous act wins over a look-alike reading
    ]
    labels = [S.NEEDS_CAUTION, S.PROBABLY_NEEDS_CAUTION, S.NEEDS_INTERVENTION, S.CASUAL]
    out, categories = head.apply(labels, calls, [S.CASUAL] * 4)
    assert out == [S.CASUAL, S.PROBABLY_NEEDS_CAUTION, S.NEEDS_INTERVENTION, S.NEEDS_CAUTION]
    assert categories == [None, None, "self_harm", "impaired_driving"]
    legacy = DangerHead(head.head, DangerConfig(classes=[c for c in head.config.classes if c != "lookalike"]))
    assert legacy._lookalike is None and legacy.read(np.eye(len(legacy.config.classes))[:1])[0].lookalike == 0.0


def test_a_danger_head_saves_reloads_and_refuses_unknown_classes(tmp_path) -> None:
    head = _head({})
    head.save(tmp_path)
    loaded = DangerHead.load(tmp_path)
    x = np.random.default_rng(0).normal(size=(3, len(head.config.classes))).astype(np.float32)
    np.testing.assert_allclose(loaded.head.probabilities(x), head.head.probabilities(x), rtol=1e-6)
    assert DangerHead.load(tmp_path / "elsewhere") is None
    with pytest.raises(ModelError, match="encoder folder is missing"):
        loaded.probabilities([["hello"]])
    config = json.loads((tmp_path / "danger" / "config.json").read_text())
    (tmp_path / "danger" / "config.json").write_text(json.dumps(config | {"classes": ["none", "volcano"]}))
    with pytest.raises(ModelError, match="danger head classes"):
        DangerHead.load(tmp_path)


def test_a_described_head_scores_a_category_by_its_nearest_description() -> None:
    """Cosines to descriptions, max per category; none and look-alike by their learned vectors; a description added
    later (a sub-category never trained on) is scored like the others."""
    from prosocial.canary.danger import DescribedHead

    classes = DangerConfig().classes
    medical, fire = classes.index("medical"), classes.index("hazard")
    owners = [*range(2, len(classes)), medical]  # one description per category, two for medical
    rng = np.random.default_rng(0)
    described = rng.normal(size=(len(owners), 64)).astype(np.float32)
    weights = {"v": rng.normal(size=(2, 64)).astype(np.float32), "b": np.zeros(len(classes), np.float32),
               "scale": np.array(20.0, np.float32)}
    head = DescribedHead(weights, described, owners)
    probs = head.probabilities(np.stack([described[-1] * 3, described[owners.index(fire)], weights["v"][0]]))
    assert probs.argmax(1).tolist() == [medical, fire, 0] and np.allclose(probs.sum(1), 1, atol=1e-6)
    unseen = rng.normal(size=64).astype(np.float32)
    assert head.probabilities(unseen[None])[0, fire] < 0.5
    extended = DescribedHead(weights, np.vstack([described, unseen]), [*owners, fire])
    assert extended.probabilities(unseen[None])[0].argmax() == fire
    with pytest.raises(ModelError, match="learned vectors"):
        DescribedHead(weights | {"v": weights["v"][:1]}, described, owners)
    with pytest.raises(ModelError, match="not one of the head's categories"):
        DangerConfig(descriptions={"volcano": {"lava": ["hot rock"]}})
    with pytest.raises(ModelError, match="non-empty list"):
        DangerConfig(descriptions={"medical": {"stroke": []}})


@pytest.mark.parametrize("described", [False, True], ids=["linear", "described"])
def test_a_tiny_danger_head_trains_on_the_corpus_and_reads_contexts(tmp_path, monkeypatch, described) -> None:
    """The training path end to end on a tiny BERT built from a config: written rows (with small talk before them)
    and casual lines; the thresholds come from the dev rows and the saved module reloads."""
    import random

    import torch
    from transformers import BertConfig, BertModel

    from prosocial.canary.danger_train import DangerTrainSettings, Rows, corpus_rows, fit_head
    from tests.tiny_models import save, train_tokenizer

    cases = danger.read_corpus(CORPUS, ("train", "dev"))
    chat = [["hey, how are you?", "Good thanks! You?"], ["what did you do today", "I went hiking.", "nice"]]
    classes = DangerConfig().classes
    train, dev = Rows(), Rows()
    corpus_rows([c for c in cases if c.split == "train"][:120], classes, chat, random.Random(0), train)
    corpus_rows([c for c in cases if c.split == "dev"][:60], classes, chat, random.Random(1), dev)
    for line in ["I love pizza", "see you tomorrow", "my cat is asleep", "what a nice day"]:
        train.add([line], 0, "casual")
        dev.add([line], 0, "casual")
    tokenizer = train_tokenizer([u for c in train.contexts + dev.contexts for u in c], vocab_size=400)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    encoder_dir = save(BertModel(config), tokenizer, tmp_path / "tiny-bert")
    settings = DangerTrainSettings(layers=1, max_length=32, epochs=2, batch_size=16, encoder_lr=1e-3, head_lr=1e-2,
                                   corpus_repeats=1, described=described)
    head, report, (tok, encoder, probs) = fit_head(train, dev, settings, encoder_dir=encoder_dir, workers=1)
    assert head.config.meta["last_loss"] < head.config.meta["first_loss"]
    assert len(encoder.encoder.layer) == encoder.config.num_hidden_layers == 1  # the first layer only
    assert head.config.classes[:2] == ["none", "lookalike"] and head.config.max_length == 32
    assert "lookalike_threshold" in report  # None where no threshold clears look-alikes within the bounds
    assert probs.shape == (len(dev.targets), len(classes)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert 0 < report["emergency_threshold"] <= 0.999 and 0 < report["act_threshold"] <= 0.999
    head.save(tmp_path / "model")
    encoder.to(torch.float16).save_pretrained(tmp_path / "model" / "danger" / "encoder")
    tok.save_pretrained(tmp_path / "model" / "danger" / "encoder")
    loaded = DangerHead.load(tmp_path / "model")
    assert loaded.encoder[1].config.num_hidden_layers == 1 and loaded.config.max_length == 32
    from prosocial.canary.danger import DescribedHead

    # scored by descriptions, the held-out sub-categories' among them (described, never trained on)
    assert isinstance(loaded.head, DescribedHead) is described
    assert not described or all(sub in loaded.config.descriptions[name]
                                for name, sub in danger.HELD_OUT_SUBCATEGORIES.items())
    again = loaded.probabilities(dev.contexts[:8])
    np.testing.assert_allclose(again, probs[:8], atol=2e-2)  # fp16 on disk
    calls = loaded.read(again)
    assert all(c.category is None or c.category in danger.BY_NAME for c in calls)
    import prosocial.canary.danger as module

    encoded, real = [], module.pooled_features
    monkeypatch.setattr(module, "pooled_features", lambda tok, enc, texts, *rest: encoded.append(list(texts))
                        or real(tok, enc, texts, *rest))
    same = "I am bleeding a lot"
    repeated = loaded.calls([[same], [same, "oh no", same]])
    assert encoded == [[same]] and repeated[0].emergency == pytest.approx(repeated[1].emergency)  # encoded once
    first, later = loaded.calls([["hello there"], ["I am bleeding a lot", "oh no", "ok"]])
    assert later.support >= loaded.calls([["I am bleeding a lot"]])[0].emergency - 1e-6  # the earlier turn counts
    assert first.support == first.emergency

    # thresholds fitted again on the same dev rows, the weights untouched: the same fit, then a stricter bound
    import prosocial.canary.danger_train as training

    monkeypatch.setattr(training, "build_rows", lambda *args: (train, dev))
    monkeypatch.setattr(training, "safety_head_intervenes", lambda model_dir, rows: np.zeros(len(rows.targets), bool))
    weights = (tmp_path / "model" / "danger" / "head.npz").read_bytes()
    again = training.refit_thresholds(tmp_path / "model", settings=settings)
    assert again["act_threshold"] == pytest.approx(report["act_threshold"], abs=0.011)  # fp16 on disk: a grid step
    strict = training.refit_thresholds(tmp_path / "model", settings=replace(settings, max_benign_flagged=0.0))
    assert strict["act_threshold"] >= again["act_threshold"] and strict["dev_benign_flagged_by_danger"] == 0.0
    refitted = DangerHead.load(tmp_path / "model")
    assert refitted.config.act_threshold == strict["act_threshold"]
    assert refitted.config.meta["refit"]["max_benign_flagged"] == 0.0
    assert (tmp_path / "model" / "danger" / "head.npz").read_bytes() == weights


def _add_dev_row(rows, probs: list, classes: list[str], group: str, target: str, **mass: float) -> None:
    """One dev row for a threshold fit: its group and target, and the head's probabilities (`mass` per class, the
    rest near zero)."""
    row = np.full(len(classes), 1e-6)
    for name, p in mass.items():
        row[classes.index(name)] = p
    rows.add(["…"], classes.index(target), group)
    probs.append(row / row.sum())


def test_thresholds_are_fitted_recall_first_with_the_look_alike_veto() -> None:
    """Ten dev emergencies with falling emergency mass: the threshold is the highest that still hands over nine;
    a look-alike the safety head hands over is vetoed; Risk Ignorance re-labelled intervention keeps its hand-over
    through the gate, and its re-labelled distress does not pull the gate down."""
    from prosocial.canary.danger_train import DangerTrainSettings, Rows, fit_thresholds

    head = _head({})
    rows, probs = Rows(), []

    def add(group: str, target: str, base: bool, **mass: float) -> bool:
        _add_dev_row(rows, probs, head.config.classes, group, target, **mass)
        return base

    base = [add("corpus:emergency", "medical", False, medical=m, none=1 - m)
            for m in (0.999, 0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.85, 0.805, 0.3)]
    base += [add("corpus:benign", "lookalike", i < 2, lookalike=0.9, none=0.05, medical=0.05) for i in range(10)]
    base += [add("diasafety:Risk Ignorance", "self_harm", True, self_harm=0.2, none=0.8) for _ in range(10)]
    # re-labelled ordinary distress the safety head hands over: it does not hold the gate down
    base += [add("diasafety:Risk Ignorance:distress", "none", True, self_harm=0.05, none=0.95) for _ in range(10)]
    base += [add("casual", "none", False, none=1.0) for _ in range(200)]
    report = fit_thresholds(head, np.array(probs), rows, DangerTrainSettings(min_emergency_recall=0.9), np.array(base))
    assert report["emergency_threshold"] == 0.8  # the ninth emergency's mass: 9 of 10 handed over
    assert report["dev_emergency_recall"] == 0.9
    assert report["lookalike_veto"] is not None and report["lookalike_veto"] <= 0.9
    assert report["dev_false_handover_benign"] == 0.0  # the two the safety head handed over are vetoed
    assert report["intervention_gate"] >= 0.2 - 0.01 and report["dev_risk_ignorance_handed_over"] == 1.0
    assert report["dev_false_handover_distress"] == 0.0


def test_a_look_alike_hand_over_bound_stops_the_emergency_threshold_short_of_the_recall() -> None:
    """With `max_benign_handover`, the emergency threshold stops falling where a dev look-alike would be handed
    over, even though the recall asked for is not reached; without it, recall wins."""
    from dataclasses import replace

    from prosocial.canary.danger_train import DangerTrainSettings, Rows, fit_thresholds

    head = _head({})
    rows, probs = Rows(), []

    def add(group: str, target: str, **mass: float) -> None:
        _add_dev_row(rows, probs, head.config.classes, group, target, **mass)

    for m in (0.999, 0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.85, 0.805, 0.3):
        add("corpus:emergency", "medical", medical=m, none=1 - m)
    add("corpus:benign", "lookalike", medical=0.93, lookalike=0.05, none=0.02)
    for _ in range(9):
        add("corpus:benign", "lookalike", lookalike=0.9, none=0.1)
    for _ in range(200):
        add("casual", "none", none=1.0)
    settings = DangerTrainSettings(min_emergency_recall=0.9)
    free = fit_thresholds(head, np.array(probs), rows, settings)
    bound = fit_thresholds(head, np.array(probs), rows, replace(settings, max_benign_handover=0.0))
    assert free["dev_emergency_recall"] == 0.9 and free["dev_false_handover_benign"] == 0.1
    assert bound["emergency_threshold"] > 0.93 and bound["dev_false_handover_benign"] == 0.0
    assert bound["dev_emergency_recall"] == 0.6  # 0.999 … 0.95: the recall asked for is given up, not the bound


def test_train_danger_trains_unless_asked_to_refit(tmp_path, monkeypatch) -> None:
    """`prosocial train danger` fine-tunes; only `--refit-thresholds` keeps the weights (a flag once shadowed by an
    import of the same name made every run a refit), and the threshold bounds reach the settings."""
    from typer.testing import CliRunner

    from prosocial.canary import danger_train
    from prosocial.cli import app

    calls = []
    for name in ("train_danger_head", "refit_thresholds"):
        monkeypatch.setattr(danger_train, name,
                            lambda model, root, corpus, settings, name=name: calls.append((name, settings)) or {})
    (tmp_path / "config.json").write_text("{}")
    runner = CliRunner()
    model = ["train", "danger", "--model", str(tmp_path), "--data", str(tmp_path)]  # no shared data needed: stubbed
    assert runner.invoke(app, [*model, "--max-benign-handover", "0.02"]).exit_code == 0
    assert runner.invoke(app, [*model, "--refit-thresholds", "--min-emergency-recall", "0.9"]).exit_code == 0
    assert [name for name, _ in calls] == ["train_danger_head", "refit_thresholds"]
    assert calls[0][1].max_benign_handover == 0.02 and calls[1][1].min_emergency_recall == 0.9


def test_new_training_rows_leave_the_dev_rows_as_they_were(shared_data, tmp_path) -> None:
    """Dev rows (which fit the thresholds) are drawn with a generator of their own: a writer added to the training
    split changes the training rows, not the dev sample."""
    from prosocial.canary.danger_train import DangerTrainSettings, build_rows

    settings = DangerTrainSettings(casual_per_source=20, diasafety_per_category=5, risk_ignorance=5)
    rows = CORPUS.read_text(encoding="utf-8").splitlines()
    small, grown = tmp_path / "small.jsonl", tmp_path / "grown.jsonl"
    small.write_text("\n".join(r for r in rows if '"writer": "A"' not in r) + "\n", encoding="utf-8")
    grown.write_text("\n".join(rows) + "\n", encoding="utf-8")
    train_small, dev_small = build_rows(shared_data, small, settings)
    train_grown, dev_grown = build_rows(shared_data, grown, settings)
    assert len(train_grown.targets) > len(train_small.targets)
    assert (dev_grown.contexts, dev_grown.groups) == (dev_small.contexts, dev_small.groups)


def test_advice_questions_can_train_as_look_alikes(shared_data) -> None:
    """With `advice_as_lookalike`, DiaSafety's training advice questions get the look-alike class (the veto's
    signal); dev rows keep their own group and target, so the thresholds are fitted on the same rows either way."""
    from prosocial.canary.danger_train import DangerTrainSettings, build_rows

    settings = DangerTrainSettings(casual_per_source=5, diasafety_per_category=20, risk_ignorance=5)
    classes = DangerConfig().classes
    plain_train, plain_dev = build_rows(shared_data, CORPUS, settings)
    train, dev = build_rows(shared_data, CORPUS, replace(settings, advice_as_lookalike=True))

    def advice(rows):
        return [t for t, g in zip(rows.targets, rows.groups, strict=True) if g == "diasafety:Unauthorized Expertise"]

    assert advice(train) and set(advice(train)) == {classes.index("lookalike")}
    assert set(advice(plain_train)) == {classes.index("none")}
    assert (dev.contexts, dev.targets) == (plain_dev.contexts, plain_dev.targets)
