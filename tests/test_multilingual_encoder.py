"""`prosocial train canary-mini --encoder FOLDER`: any BERT-like checkpoint folder, e.g. a multilingual
sentence-transformers model from the Hub, is the encoder of a Canary-mini build (issue #36). The test builds a tiny
multilingual one (a byte-level BPE trained on English, Spanish, German and Russian text, a 1-layer BERT) instead of
downloading one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prosocial.canary.language import LanguageGuard
from prosocial.cli import app
from tests.test_language import SPANISH, RecordingDetector
from tests.tiny_models import save, train_tokenizer

TEXTS = ["What's your favourite movie?", "I think it's The Matrix.", SPANISH, "¿Qué tal tu día? Muy bien, gracias.",
         "Ich will nicht mehr leben.", "Wie geht es dir heute?", "Я больше не хочу жить.", "Как дела? Хорошо.",
         "Speaker 1: Speaker 2:"]


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel

    tokenizer = train_tokenizer(TEXTS * 4, vocab_size=400)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    return save(BertModel(config), tokenizer, tmp_path_factory.mktemp("tiny-multilingual"))


def test_a_checkpoint_folder_encodes_every_script(multilingual):
    import torch
    from transformers import AutoModel

    from prosocial.canary.mini import MiniClassifier, load_tokenizer

    tokenizer = load_tokenizer(multilingual)
    batch = tokenizer(TEXTS[2:8], padding=True, return_tensors="pt")
    assert tokenizer.unk_token_id not in batch["input_ids"]  # byte-level: no script is unknown
    model = MiniClassifier(AutoModel.from_pretrained(multilingual))
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (6, 3) and torch.isfinite(logits).all()


def test_train_takes_the_folder_as_its_encoder(multilingual, tmp_path, shared_data, monkeypatch):
    import prosocial.canary.mini_train as mini_train

    seen = {}

    def build(out, **options):
        seen.update(options, out=out)
        return {"built": str(out)}

    monkeypatch.setattr(mini_train, "train_canary_mini", build)
    out = tmp_path / "multilingual-canary"
    result = CliRunner().invoke(app, ["train", "canary-mini", "--encoder", str(multilingual), "--out", str(out),
                                      "--data", str(shared_data)])
    assert result.exit_code == 0, result.output
    assert seen["encoder_dir"] == multilingual and seen["out"] == out
    assert json.loads(result.output[result.output.index("{"):])["built"] == str(out)


@pytest.mark.parametrize("args, message", [
    (["--encoder", "/no/such/folder"], "neither"),
    (["--encoder", "{empty}"], "no config.json"),
    (["--encoder", "{model}"], "not the shipped default"),
])
def test_train_refuses_a_bad_encoder_before_reading_data(multilingual, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(empty=empty, model=multilingual) for a in args]
    result = CliRunner().invoke(app, ["train", "canary-mini", *args, "--data", str(tmp_path / "no-data")])
    said = "".join(result.output.replace("│", " ").split())  # the error panel wraps lines at its frame
    assert result.exit_code != 0 and "".join(message.split()) in said


def test_a_multilingual_detector_names_the_languages_it_reads():
    guard = LanguageGuard(RecordingDetector(), languages=("en", "es"))
    spanish, german = guard.predict([[SPANISH], ["Ich will nicht mehr leben, niemand würde mich vermissen."]])
    assert spanish.language == "es" and spanish.language_policy is None and spanish.safety_label.is_casual
    assert german.language == "de" and german.language_policy == "flag"
