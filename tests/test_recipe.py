"""The fine-tuning recipe's data side (`prosocial.lm.recipe`), below the `prosocial train` commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import prosocial.lm.finetune as finetune_module
from prosocial.data.formats import read_dialogues
from prosocial.errors import DataError
from prosocial.lm.finetune import CHECKPOINT_DIR, TrainConfig
from prosocial.lm.recipe import (
    PROSOCIAL,
    casual_sources,
    pretrain,
    read_pairs,
    read_split,
    training_sources,
)


@pytest.fixture(scope="module")
def files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "prosocial_dialog_examples").glob("*.json"))


def _dialogues(examples) -> set[str]:
    return {e.id.rpartition(":")[0] for e in examples}


def test_the_dev_hold_out_keeps_whole_dialogues_and_is_seeded(files):
    train, dev = read_split(files, None, 0.2, seed=1)
    assert train and dev and not _dialogues(train) & _dialogues(dev)
    assert [e.id for e in read_split(files, None, 0.2, seed=1)[1]] == [e.id for e in dev]
    given_train, given_dev = read_split(files[:1], files[1:], 0.2, seed=1, limit=3)
    assert len(given_train) == 3 and {e.id for e in given_dev} == {
        e.id for d in read_dialogues(files[1]) for e in d.examples()}


def test_casual_corpora_without_a_reader_or_files_are_skipped_with_a_warning(shared_data, tmp_path):
    warnings: list[str] = []
    found = casual_sources(["dailydialog", "nope"], shared_data, 5, warnings.append)
    assert list(found) == ["dailydialog"] and len(found["dailydialog"]) == 5
    assert warnings == ["no reader for casual corpus 'nope'; its weight is ignored"]
    assert casual_sources(["dailydialog"], tmp_path, 5, warnings.append) == {}
    assert warnings[-1].startswith("casual corpus 'dailydialog' skipped: ")


def test_training_sources_are_prosocialdialog_and_the_named_casual_corpora(files, shared_data):
    train, _ = read_split(files, None, 0.2, seed=0)
    weights = {PROSOCIAL: 4.0, "dailydialog": 1.0, "empathetic": 1.0}

    def to_pairs(examples):
        return [(e.context[-1], e.response or "") for e in examples]

    alone = training_sources(train, to_pairs, to_pairs, weights, casual=False)
    assert list(alone) == [PROSOCIAL]
    mixed = training_sources(train, to_pairs, lambda examples: [("casual", "reply")] * len(examples), weights,
                             shared_data, 3)
    assert {name: len(pairs) for name, pairs in mixed.items()} == {
        PROSOCIAL: len(train), "dailydialog": 3, "empathetic": 3}


def test_pretraining_pairs_are_checked_line_by_line(tmp_path):
    good = tmp_path / "pairs.jsonl"
    good.write_text('{"source": "lying to a friend", "target": "It is wrong to lie."}\n')
    assert read_pairs([good]) == [("lying to a friend", "It is wrong to lie.")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "target": "b"}\n{"source": "a"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl.*line 2.*expected"):
        read_pairs([bad])


@dataclass
class _Call:
    model: str
    pairs: list
    out: Path
    config: TrainConfig
    new_tokens: tuple
    resume: bool


def test_stage_one_trains_into_pretrain_and_is_skipped_once_stage_two_has_a_checkpoint(tmp_path, monkeypatch):
    calls: list[_Call] = []
    monkeypatch.setattr(finetune_module, "finetune", lambda model, pairs, out, config, new_tokens, resume: calls.append(
        _Call(model, pairs, out, config, tuple(new_tokens), resume)))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"source": "s", "target": "t"}\n')
    said: list[str] = []
    config = TrainConfig(max_steps=100)
    stage = pretrain("base", [pairs], tmp_path / "out", config, 7, ("__casual__",), resume=True, announce=said.append)
    assert stage == tmp_path / "out" / "pretrain" and said == ["stage 1: pre-training on 1 file(s)"]
    assert calls == [_Call("base", [("s", "t")], stage, TrainConfig(max_steps=7), ("__casual__",), False)]
    (tmp_path / "out" / CHECKPOINT_DIR).mkdir(parents=True)
    assert pretrain("base", [pairs], tmp_path / "out", config, 7, announce=said.append) == stage
    assert len(calls) == 1 and len(said) == 1
