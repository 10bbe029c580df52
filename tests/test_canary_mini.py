"""Canary-mini end to end on a tiny BERT built from a config, trained on slices of the real benchmark data."""

import json
import logging

import numpy as np
import pytest

from prosocial.canary import load_detector
from prosocial.canary.mini import MiniConfig, decide, encode, five_way_scores
from prosocial.canary.mini_train import (
    GATES,
    MiniTrainSettings,
    fit_thresholds,
    recalibrate,
    train_canary_mini,
)
from prosocial.canary.rotbank import Embedder
from prosocial.data.labels import SafetyLabel
from prosocial.data.schema import Example
from prosocial.errors import ModelError
from tests.tiny_models import save, train_tokenizer

SOURCES = ("toxichat", "sbic", "diasafety", "dailydialog", "ethics_commonsense")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    from transformers import BertConfig, BertModel

    from prosocial.data.adapters import load_benchmark

    by_source = {name: load_benchmark(name, "train", root=shared_data, limit=40) for name in SOURCES}
    texts = [u for examples in by_source.values() for e in examples for u in e.context]
    tokenizer = train_tokenizer(texts + ["Speaker 1: Speaker 2:"], vocab_size=500)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)
    encoder_dir = save(BertModel(config), tokenizer, tmp_path_factory.mktemp("tiny-bert"))
    out = tmp_path_factory.mktemp("canary-mini")
    settings = MiniTrainSettings(epochs=4, batch_size=16, encoder_lr=1e-3, head_lr=1e-2, freeze_embeddings=False,
                                 config=MiniConfig(max_length=64, pooling="mean+last"))
    report = train_canary_mini(out, root=shared_data, settings=settings, encoder_dir=encoder_dir,
                               by_source=by_source, embedder=Embedder(encoder_dir))
    return out, report, by_source


def test_training_lowers_the_loss_and_writes_every_module(trained):
    out, report, _ = trained
    assert report["last_loss"] < report["first_loss"]
    for part in ("prosocial.json", "config.json", "head.safetensors", "encoder/config.json", "rot_bank/entries.jsonl",
                 "rot_bank/embeddings.npy", "rot_bank/bank.json", "training.json"):
        assert (out / part).exists(), part
    config = json.loads((out / "config.json").read_text())
    assert 0 < config["casual_threshold"] < 1 and 0 < config["intervention_threshold"] < 1
    assert config["meta"]["trained_on"]["sbic"] == 40


def test_saved_model_reloads_and_gives_complete_verdicts(trained):
    out, _, _ = trained
    detector = load_detector("canary-mini", model_dir=out)
    contexts = [["hello, how was your day?"], ["hi", "hey", "I think women are stupid and should not vote"]]
    verdicts = detector.predict(contexts)
    assert len(verdicts) == 2
    for verdict in verdicts:
        assert set(verdict.scores) == {label.value for label in SafetyLabel}
        assert abs(sum(verdict.scores.values()) - 1) < 1e-5
        assert verdict.rots == [] if verdict.safety_label.is_casual else len(verdict.rots) >= 1
    again = load_detector("canary-mini", model_dir=out).predict(contexts, with_rots=False)
    for fresh, first in zip(again, verdicts, strict=True):
        assert fresh.scores == pytest.approx(first.scores)
    assert all(v.rots == [] for v in again)


def test_bad_input_and_missing_model(trained, tmp_path, caplog):
    out, _, _ = trained
    detector = load_detector("canary-mini", model_dir=out)
    with pytest.raises(ValueError, match="the context is empty"):
        detector.predict([[]])
    with pytest.raises(ValueError, match=r"contexts\[1\]\[0\]: expected a string, got int"):
        detector.predict([["fine"], [3]])
    with caplog.at_level(logging.WARNING):
        detector.predict([["word " * 400]], with_rots=False)
    assert "truncated from the oldest turn" in caplog.text
    with pytest.raises(ModelError, match="model directory not found"):
        load_detector("canary-mini", model_dir=tmp_path / "nowhere").predict([["hi"]])


def test_recalibration_switches_to_int8_and_refits_the_thresholds(trained, tmp_path):
    import shutil

    from prosocial.canary.mini import Int8Linear

    out, _, by_source = trained
    copy = shutil.copytree(out, tmp_path / "model")
    settings = MiniTrainSettings(min_intervention_recall=0.5, config=MiniConfig(precision="int8"))
    report = recalibrate(copy, settings=settings, by_source=by_source)
    config = json.loads((copy / "config.json").read_text())
    assert config["precision"] == report["precision"] == "int8"
    assert config["meta"]["settings"]["min_intervention_recall"] == 0.5
    assert json.loads((copy / "rot_bank" / "bank.json").read_text())["min_similarity"] == pytest.approx(
        config["meta"]["rot_gate"]["min_similarity"]
    )
    assert json.loads((copy / "training.json").read_text())["calibration"] == report["calibration"]
    detector = load_detector("canary-mini", model_dir=copy)
    assert any(isinstance(m, Int8Linear) for m in detector._model.modules())
    fp32 = load_detector("canary-mini", model_dir=out)
    contexts = [["hello, how was your day?"], ["I think women are stupid and should not vote"]]
    for quantized, full in zip(detector.predict(contexts), fp32.predict(contexts), strict=True):
        assert abs(sum(quantized.scores.values()) - 1) < 1e-5
        assert quantized.scores != full.scores  # int8 arithmetic differs from fp32
    alone = [detector.predict([c], with_rots=False)[0].scores for c in contexts]
    batched = [v.scores for v in detector.predict(contexts * 8, with_rots=False)[:2]]
    for one, many in zip(alone, batched, strict=True):  # per-token scales: the batch does not change a verdict
        assert all(abs(one[k] - many[k]) < 0.02 for k in one)


def test_recalibration_can_rebuild_the_rot_bank_from_reply_norms(trained, tmp_path, shared_data):
    import shutil

    out, _, by_source = trained
    copy = shutil.copytree(out, tmp_path / "model")
    before = (copy / "rot_bank" / "entries.jsonl").read_text().count("\n")
    files = [shared_data / "prosocial_dialog_examples" / "dialogstudio_converted_examples.json"]
    report = recalibrate(copy, root=shared_data, settings=MiniTrainSettings(), by_source=by_source,
                         prosocial_files=files)
    entries = [json.loads(line) for line in (copy / "rot_bank" / "entries.jsonl").read_text().splitlines()]
    assert report["rot_bank_entries"] == len(entries) > before
    assert {e["source"] for e in entries} == {"sbic", "prosocial_dialog"}


def test_bfloat16_stays_close_to_float32_whatever_the_batch(trained):
    import torch

    from prosocial.canary.mini import batched_logits, context_texts, with_precision

    out, _, by_source = trained
    fp32 = load_detector("canary-mini", model_dir=out, runtime="torch")  # bfloat16 runs in PyTorch
    model = with_precision(fp32._model, "bfloat16")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert model is fp32._model  # emulated bfloat16 would be slower: float32 is kept
        return
    assert next(model.parameters()).dtype is torch.bfloat16
    texts = context_texts([e.context for e in by_source["toxichat"][:20]], 4)
    encoded = encode(fp32._tokenizer, texts, 64)
    pad = fp32._tokenizer.pad_token_id
    reference = batched_logits(fp32._model, encoded, pad, 16)
    batched, alone = batched_logits(model, encoded, pad, 16, workers=2), batched_logits(model, encoded, pad, 1)
    assert np.abs(batched - reference).max() < 0.1
    assert np.abs(batched - alone).max() < 0.02
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        with_precision(fp32._model, "fp8")


def test_encode_cuts_from_the_left_like_the_tokenizer():
    from prosocial.canary.encoders import packaged_minilm
    from prosocial.canary.mini import load_tokenizer

    tokenizer = load_tokenizer(packaged_minilm())
    texts = ["short one", "Speaker 1: " + "an old turn that will be cut " * 8 + "Speaker 2: the newest words"]
    encoded = encode(tokenizer, texts, 16)
    ids = encoded.ids
    tokenizer.truncation_side = "left"
    assert ids == tokenizer(texts, truncation=True, max_length=16)["input_ids"]
    assert encoded.cut == 1 and len(ids[1]) == 16 and tokenizer.decode(ids[1][-4:-1]) == "the newest words"


def test_the_last_utterance_span_is_its_own_tokens_whatever_precedes_it():
    from prosocial.canary.encoders import packaged_minilm
    from prosocial.canary.mini import encode_contexts, load_tokenizer, pad_batch

    tokenizer = load_tokenizer(packaged_minilm())
    last = "I've been cutting myself again, and I don't want to stop."
    contexts = [[last], ["What's your favourite movie?", "The Matrix!", last], ["an old turn " * 60, last],
                ["hi", "word " * 200]]
    encoded = encode_contexts(tokenizer, contexts, MiniConfig(max_length=64))
    alone = tokenizer(last, add_special_tokens=False)["input_ids"]
    for ids, (start, end) in zip(encoded.ids[:3], encoded.last_spans[:3], strict=True):
        assert ids[start:end] == alone and end == len(ids) - 1
    start, end = encoded.last_spans[3]  # a last utterance longer than the window: all of the window
    assert (start, end) == (1, 63)
    _, mask, last_mask = pad_batch(encoded, [0, 1], tokenizer.pad_token_id)
    assert last_mask.sum(1).tolist() == [len(alone)] * 2 and (last_mask <= mask).all()


def test_five_way_scores_follow_the_vote_view():
    probs = np.array([[0.2, 0.7, 0.1], [0.9, 0.1, 0.0]])
    scores = five_way_scores(probs)
    assert scores.sum(1) == pytest.approx([1, 1])
    assert scores[0, 0] == pytest.approx(0.2) and scores[0, 4] == pytest.approx(0.1)
    assert scores[0, 1:4].sum() == pytest.approx(0.7)
    assert scores[0, 3] > scores[0, 1]  # q = 0.78: all three voting "caution" beats one


def test_decide_maps_the_caution_share_to_vote_counts():
    config = MiniConfig(casual_threshold=0.2, intervention_threshold=0.6)
    probs = np.array([[0.9, 0.1, 0.0], [0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.05, 0.95, 0.0], [0.2, 0.1, 0.7]])
    assert decide(probs, config) == [
        SafetyLabel.CASUAL,
        SafetyLabel.POSSIBLY_NEEDS_CAUTION,
        SafetyLabel.PROBABLY_NEEDS_CAUTION,
        SafetyLabel.NEEDS_CAUTION,
        SafetyLabel.NEEDS_INTERVENTION,
    ]


def test_thresholds_keep_false_alarms_on_casual_dialogue_within_the_bound():
    rng = np.random.default_rng(0)
    examples, rows = [], []
    for i in range(200):
        casual = i % 2 == 0
        source = "dailydialog" if casual else "toxichat"
        examples.append(Example([f"u{i}"], safety_label=SafetyLabel.CASUAL if casual else SafetyLabel.NEEDS_CAUTION,
                                source=source))
        p_caution = rng.uniform(0.0, 0.6) if casual else rng.uniform(0.3, 1.0)
        rows.append([1 - p_caution, p_caution, 0.0])
    fitted, report = fit_thresholds(np.array(rows), examples, max_false_alarm=0.02)
    assert report["casual_false_alarm"] <= 0.02
    assert fitted["casual_threshold"] > 0.5


def test_thresholds_keep_short_casual_turns_within_their_own_bound():
    """"ok" and "thanks" must pass even when longer chit-chat leaves room in the overall false-alarm budget."""
    rng = np.random.default_rng(1)
    examples, rows = [], []
    for i in range(400):
        kind = ("long", "short", "flagged", "flagged")[i % 4]
        text = "ok" if kind == "short" else f"utterance number {i} of a longer turn"
        label = SafetyLabel.NEEDS_CAUTION if kind == "flagged" else SafetyLabel.CASUAL
        examples.append(Example([text], safety_label=label, source="sbic" if kind == "flagged" else "dailydialog"))
        p = {"long": rng.uniform(0.0, 0.3), "short": rng.uniform(0.2, 0.7), "flagged": rng.uniform(0.4, 1.0)}[kind]
        rows.append([1 - p, p, 0.0])
    probs = np.array(rows)
    _, loose = fit_thresholds(probs, examples, max_false_alarm=0.2)
    fitted, report = fit_thresholds(probs, examples, max_false_alarm=0.2, max_short_false_alarm=0.03)
    assert loose["short_casual_false_alarm"] > 0.03 >= report["short_casual_false_alarm"]
    assert fitted["casual_threshold"] >= 0.6


def test_the_intervention_gate_keeps_clearly_casual_turns_out_of_needs_intervention():
    probs = np.array([[0.8, 0.0, 0.2], [0.3, 0.5, 0.2]])
    ungated = MiniConfig(casual_threshold=0.9, intervention_threshold=0.1)
    assert decide(probs, ungated) == [SafetyLabel.NEEDS_INTERVENTION] * 2
    gated = MiniConfig(casual_threshold=0.9, intervention_threshold=0.1, intervention_gate=0.5)
    assert decide(probs, gated) == [SafetyLabel.CASUAL, SafetyLabel.NEEDS_INTERVENTION]


def test_a_fitted_gate_keeps_the_intervention_floor_without_flagging_small_talk():
    """Chit-chat with a little intervention mass, emergencies with little casual mass: no threshold on P(intervention)
    alone reaches the floor within the false-alarm bound; with the gate, one does."""
    rng = np.random.default_rng(2)
    examples, rows = [], []
    for i in range(300):
        emergency = i % 3 == 0
        p_int = rng.uniform(0.1, 0.6) if emergency else rng.uniform(0.0, 0.4)
        p_cas = rng.uniform(0.0, 0.3) * (1 - p_int) if emergency else (1 - p_int) * rng.uniform(0.9, 1.0)
        rows.append([p_cas, 1 - p_int - p_cas, p_int])
        examples.append(Example([f"u{i}"], safety_label=SafetyLabel.NEEDS_INTERVENTION if emergency
                                else SafetyLabel.CASUAL, source="diasafety" if emergency else "dailydialog"))
    probs = np.array(rows)
    fitted, report = fit_thresholds(probs, examples, max_false_alarm=0.02, min_intervention_recall=0.95, gates=GATES)
    assert fitted["intervention_gate"] is not None
    assert report["intervention_recall"] >= 0.95 and report["casual_false_alarm"] <= 0.02
    config = MiniConfig(**fitted)
    intervened = np.array([label is SafetyLabel.NEEDS_INTERVENTION for label in decide(probs, config)])
    assert intervened[::3].mean() == report["intervention_recall"]
    plain, ungated = fit_thresholds(probs, examples, max_false_alarm=0.02, min_intervention_recall=0.95)
    assert plain["intervention_gate"] is None
    assert ungated["intervention_recall"] < 0.95 or ungated["casual_false_alarm"] > 0.02


def test_a_student_keeps_the_lowest_encoder_layers(tmp_path):
    from transformers import BertConfig, BertModel

    from prosocial.canary.mini_train import keep_lowest_layers

    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                   intermediate_size=32))
    second = encoder.encoder.layer[1]
    keep_lowest_layers(encoder, 2)
    assert list(encoder.encoder.layer) == [encoder.encoder.layer[0], second]
    encoder.save_pretrained(tmp_path)
    assert len(BertModel.from_pretrained(tmp_path).encoder.layer) == 2
    keep_lowest_layers(encoder, None)
    assert len(encoder.encoder.layer) == 2
    with pytest.raises(ModelError, match="has 2 layers"):
        keep_lowest_layers(encoder, 3)


def test_repeats_weight_a_source_and_keep_its_copies_in_one_part(shared_data):
    from prosocial.canary.mini_train import load_training_examples, split_calibration

    base = MiniTrainSettings(limit_per_source=40, casual_cap=40, repeats={})
    weighted = MiniTrainSettings(limit_per_source=40, casual_cap=40, repeats={"ethics_commonsense": 3})
    once, thrice = load_training_examples(shared_data, base), load_training_examples(shared_data, weighted)
    assert len(thrice["ethics_commonsense"]) == 3 * len(once["ethics_commonsense"])
    assert {k: len(v) for k, v in thrice.items() if k != "ethics_commonsense"} == {
        k: len(v) for k, v in once.items() if k != "ethics_commonsense"}
    train, calibration = split_calibration({"ethics_commonsense": thrice["ethics_commonsense"]}, weighted)
    held = {"\n".join(e.context) for e in calibration}
    assert not held & {"\n".join(e.context) for e in train}  # no copy on both sides of the calibration split


def test_a_config_with_an_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"max_turns": 4, "casual_treshold": 0.6}), encoding="utf-8")
    with pytest.raises(ModelError, match=r"unknown setting\(s\) \['casual_treshold'\]"):
        MiniConfig.load(path)
    path.write_text(json.dumps({"max_turns": 3}), encoding="utf-8")  # an older folder's subset still loads
    assert MiniConfig.load(path).max_turns == 3


def test_a_killed_training_run_continues_where_it_stopped(tmp_path, shared_data, monkeypatch):
    import torch
    from transformers import BertConfig, BertModel

    from prosocial.canary import mini_train
    from prosocial.canary.mini import MiniClassifier, load_tokenizer
    from prosocial.data.adapters import load_benchmark

    examples = load_benchmark("toxichat", "train", root=shared_data, limit=24)
    tokenizer = train_tokenizer([u for e in examples for u in e.context], vocab_size=300)
    encoder_dir = save(BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=32, max_position_embeddings=128,
                                            pad_token_id=tokenizer.pad_token_id)), tokenizer, tmp_path / "bert")
    settings = MiniTrainSettings(epochs=3, batch_size=8, checkpoint_seconds=0, config=MiniConfig(max_length=32))

    def run(checkpoint):
        torch.manual_seed(0)
        model = MiniClassifier(BertModel.from_pretrained(encoder_dir))
        return mini_train.train_classifier(model, load_tokenizer(encoder_dir), examples, settings, checkpoint), model

    straight, reference = run(None)
    save_checkpoint, saved_at = mini_train._save_checkpoint, []

    def killed_after_saving(path, state):
        save_checkpoint(path, state)
        saved_at.append(len(state["losses"]))
        if saved_at[-1] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(mini_train, "_save_checkpoint", killed_after_saving)
    checkpoint = tmp_path / "work" / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint)
    assert checkpoint.is_file()
    resumed, model = run(checkpoint)
    assert saved_at == [1, 2, 3, 4, 5, 6, 7, 8, 9], "the second run did not start from update 4"
    assert resumed == pytest.approx(straight) and len(resumed) == 9
    for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.allclose(a, b)

    monkeypatch.setattr(mini_train, "_save_checkpoint", save_checkpoint)
    settings.checkpoint_seconds = 3600
    checkpoint.unlink()
    run(checkpoint)
    assert checkpoint.is_file(), "the finished state is not saved (a kill during calibration would lose it)"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read the training checkpoint"):
        run(checkpoint)


def test_a_checkpoint_is_named_by_what_training_computes_from(trained, tmp_path):
    from dataclasses import replace

    from prosocial.canary.mini import load_classifier
    from prosocial.canary.mini_train import checkpoint_file, label_targets

    teacher_dir, _, by_source = trained
    model = load_classifier(teacher_dir, "mean+last")
    examples = by_source["toxichat"][:8]
    settings = MiniTrainSettings(config=MiniConfig(max_length=32))
    targets = label_targets(examples)
    name = checkpoint_file(tmp_path, model, examples, targets, settings)
    same = [replace(settings, num_threads=1, min_intervention_recall=0.5, max_false_alarm=0.1),
            replace(settings, config=MiniConfig(max_length=32, precision="int8"))]
    assert all(checkpoint_file(tmp_path, model, examples, targets, s) == name for s in same)
    other = [checkpoint_file(tmp_path, model, examples[:7], targets[:7], settings),
             checkpoint_file(tmp_path, model, examples, targets * 0.5, settings),
             checkpoint_file(tmp_path, model, examples, targets, replace(settings, encoder_lr=1e-4)),
             checkpoint_file(tmp_path, model, examples, targets, replace(settings, config=MiniConfig(max_length=64)))]
    model.encoder.config._name_or_path = "another encoder"
    other.append(checkpoint_file(tmp_path, model, examples, targets, settings))
    assert len({name, *other}) == 1 + len(other)


def test_distillation_blends_the_teachers_probabilities_with_the_labels(trained, tmp_path, monkeypatch):
    from prosocial.canary import mini_train

    teacher_dir, _, by_source = trained
    examples = by_source["toxichat"][:10] + by_source["dailydialog"][:10]
    teacher = mini_train.teacher_probabilities(teacher_dir, examples, tmp_path)
    assert teacher.shape == (20, 3) and np.allclose(teacher.sum(1), 1, atol=1e-5)
    monkeypatch.setattr(mini_train, "load_classifier", lambda *a: pytest.fail("the teacher ran again"))
    assert np.array_equal(mini_train.teacher_probabilities(teacher_dir, examples, tmp_path), teacher)
    labels = mini_train.label_targets(examples)
    assert np.allclose(mini_train.distillation_targets(examples, teacher, 0.0), labels)
    assert np.allclose(mini_train.distillation_targets(examples, teacher, 0.25), 0.75 * labels + 0.25 * teacher)
    kept = mini_train.distillation_targets(examples, teacher, 0.8, label_intervention=True)
    blend = 0.2 * labels + 0.8 * teacher
    assert np.allclose(kept[:, 2], labels[:, 2]) and np.allclose(kept.sum(1), 1)
    assert np.allclose(kept[:, 0] * blend[:, 1], kept[:, 1] * blend[:, 0]), "the blend's casual:caution ratio"
    with pytest.raises(ValueError, match="between 0 and 1"):
        mini_train.distillation_targets(examples, teacher, 1.5)
    with pytest.raises(ModelError, match="not a built Canary-mini model"):
        mini_train.teacher_probabilities(tmp_path, examples)


def test_a_student_learns_from_its_teacher_and_records_it(trained, tmp_path, shared_data, monkeypatch):
    from prosocial.canary import mini_train

    teacher_dir, _, by_source = trained
    settings = MiniTrainSettings(epochs=1, batch_size=16, teacher_weight=0.5, config=MiniConfig(max_length=32))
    encoder_dir = teacher_dir / "encoder"
    seen = {}
    train = mini_train.train_classifier

    def recording(model, tokenizer, examples, settings, checkpoint, targets):
        seen.update(examples=examples, targets=targets)
        return train(model, tokenizer, examples, settings, checkpoint, targets)

    monkeypatch.setattr(mini_train, "train_classifier", recording)
    report = train_canary_mini(tmp_path / "student", root=shared_data, settings=settings, encoder_dir=encoder_dir,
                               by_source={k: v[:20] for k, v in by_source.items()}, embedder=Embedder(encoder_dir),
                               work_dir=tmp_path / "work", teacher_dir=teacher_dir)
    teacher = mini_train.teacher_probabilities(teacher_dir, seen["examples"], tmp_path / "work")
    assert np.allclose(seen["targets"], mini_train.distillation_targets(seen["examples"], teacher, 0.5))
    assert not np.allclose(seen["targets"], mini_train.label_targets(seen["examples"]))
    assert report["teacher"]["encoder"] == "bert-1x32" == report["encoder"] and len(report["teacher"]["sha1"]) == 16
    assert report["settings"]["teacher_weight"] == 0.5
    assert len(list((tmp_path / "work").glob("teacher-*.npy"))) == 1
    assert not list((tmp_path / "work").glob("checkpoint-*.pt"))


def test_the_build_command_refuses_a_wrong_encoder_or_teacher_before_reading_data(tmp_path):
    from typer.testing import CliRunner

    from prosocial.cli import app

    runner = CliRunner()

    def said(result) -> str:  # rich wraps an error in a box as wide as the terminal
        return " ".join(result.output.replace("│", " ").split())

    wrong = runner.invoke(app, ["train", "canary-mini", "--out", str(tmp_path / "m"), "--encoder", "bert"])
    assert wrong.exit_code == 2 and "minilm, mpnet or a checkpoint folder" in said(wrong)
    result = runner.invoke(app, ["train", "canary-mini", "--out", str(tmp_path / "m"), "--teacher", str(tmp_path)])
    assert result.exit_code == 1 and "not a built Canary-mini model" in said(result)
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()
    weight = runner.invoke(app, ["train", "canary-mini", "--out", str(tmp_path / "m"), "--teacher-weight", "1.5"])
    assert weight.exit_code == 2
    calibrate = runner.invoke(app, ["train", "canary-mini", "--calibrate-only", "--teacher", str(tmp_path)])
    assert calibrate.exit_code == 2 and "trains nothing" in said(calibrate)
    teacher_over_default = runner.invoke(app, ["train", "canary-mini", "--encoder", "mpnet"])
    assert teacher_over_default.exit_code == 2 and "its own --out" in said(teacher_over_default)


def test_every_flagged_verdict_gets_a_reason_most_precise_source_first(trained, caplog):
    """The bank's gate answers few contexts. A post about a group takes the stereotype rule about that group that
    says the post's own words (the bank's, or the writer's where it says more); the rest take the RoT writer's rule
    of another form; where the writer fails or writes nothing usable, the general rule stands in: a flagged verdict
    never goes without a RoT."""
    from prosocial.canary.mini import GENERAL_ROT
    from prosocial.canary.rotwriter import grounded, shared_words, subject

    out, _, _ = trained
    detector = load_detector("canary-mini", model_dir=out, rot_min_similarity=1.01)  # the gate answers nothing
    groups = detector._groups
    bank_rots = {r for e in detector._bank.entries for r in e.rots}
    post = next(e.key for e in detector._bank.entries
                if any(subject(r) and grounded(r, [e.key], groups) and shared_words(r, [e.key], subject(r))
                       for r in e.rots))
    contexts = [["you are a worthless idiot and I hate you"], ["I'll key his car tonight"], [post]]

    class Writer:
        def __init__(self, result):
            self.result, self.calls = result, []

        def write(self, given):
            self.calls.append([c[-1] for c in given])
            if isinstance(self.result, Exception):
                raise self.result
            return [self.result] * len(given)

    # Every context flagged whatever the tiny model learned (on the shipped fixture slices it may flag none): this
    # test is about the reasons a flagged verdict gets, not about labels.
    detector.config.casual_threshold = 0.0
    flagged = [c for c, v in zip(contexts, detector.predict(contexts, with_rots=False), strict=True)
               if not v.safety_label.is_casual]
    assert flagged == contexts
    detector._writer = Writer("It's wrong to call people names.")
    first, second, about_a_group = detector.predict(flagged)
    assert first.rots == second.rots == ["It's wrong to call people names."]
    assert about_a_group.rots[0] in bank_rots and subject(about_a_group.rots[0]), "the bank's rule about the group"
    assert detector._writer.calls == [[c[-1] for c in flagged]], "one batched call for the contexts left"
    who = subject(about_a_group.rots[0])
    saying_more = f"It's wrong to think {who} are {post.lower()}."  # the group and every word of the post
    detector._writer = Writer(saying_more)
    assert detector.predict([[post]])[0].rots[0] == saying_more, "the rule that says more of the post wins"
    for result in ("It's wrong to think idiots are people.", None, RuntimeError("llama.cpp died")):
        detector._writer = Writer(result)  # a stereotype rule about no group, nothing usable, a broken writer
        with caplog.at_level(logging.ERROR):
            verdicts = detector.predict(flagged)
        assert [v.rots for v in verdicts[:2]] == [[GENERAL_ROT]] * 2 and verdicts[2].rots == about_a_group.rots
    assert "the RoT writer failed" in caplog.text
    assert detector.predict(flagged, with_rots=False)[0].rots == [], "the label-only path writes nothing"


def test_onnx_runtime_and_pytorch_give_the_same_verdicts(trained):
    out, _, by_source = trained
    contexts = [e.context for examples in by_source.values() for e in examples[:6]]
    onnx = load_detector("canary-mini", model_dir=out, runtime="onnx")
    torch_ = load_detector("canary-mini", model_dir=out, runtime="torch")
    assert type(onnx._model.encoder).__name__ == "OnnxEncoder"
    assert type(torch_._model.encoder).__name__ != "OnnxEncoder"
    for a, b in zip(onnx.predict(contexts), torch_.predict(contexts), strict=True):
        assert a.safety_label == b.safety_label and a.rots == b.rots
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
