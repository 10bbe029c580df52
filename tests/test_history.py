"""Recovering ProsocialDialog's unmarked dialogue boundaries (`prosocial.lm.history`)."""

from __future__ import annotations

import json
import math

import pytest

from prosocial.errors import DataError
from prosocial.lm.history import (
    LINKS_DIR,
    START_RATE,
    dialogue_ids,
    link_scores,
    linked_contexts,
    load_links,
    rate_threshold,
    with_history,
)

ROWS = [("I stole a bike.", "Why?"), ("For fun.", "That's wrong."), ("OK, I'll return it.", "Thanks!"),
        ("My cat is cute.", "Aww.")]


def test_ids_start_a_dialogue_below_the_threshold_and_history_stays_inside_it():
    ids = dialogue_ids([math.nan, 5.0, 4.0, -1.0], threshold=0.5)
    assert ids == [0, 0, 0, 1]
    contexts = with_history(ROWS, ids, max_turns=3)
    assert contexts[0] == ["I stole a bike."]
    assert contexts[1] == ["I stole a bike.", "Why?", "For fun."]
    assert contexts[2] == ["For fun.", "That's wrong.", "OK, I'll return it."]
    assert contexts[3] == ["My cat is cute."]
    with pytest.raises(ValueError, match="dialogue ids"):
        with_history(ROWS, [0], 3)


def test_rate_threshold_cuts_the_lowest_share():
    scores = [math.nan] + list(range(100))
    threshold = rate_threshold(scores, 0.35)
    assert sum(s < threshold for s in scores[1:]) == 35
    assert 0.35 < START_RATE < 0.36


def test_link_scores_are_one_per_row_first_undefined():
    from prosocial.lm.inference import prepare_tokenizer
    from tests.tiny_models import tiny_gpt2, train_tokenizer

    tokenizer = train_tokenizer([t for row in ROWS for t in row] + ["Speaker 1: Speaker 2: The following"], 300)
    prepare_tokenizer(tokenizer)
    model = tiny_gpt2(tokenizer)
    scores = link_scores(ROWS, model, tokenizer, batch_size=2)
    assert len(scores) == len(ROWS) and math.isnan(scores[0]) and all(math.isfinite(s) for s in scores[1:])
    assert linked_contexts(ROWS, [2, 0], model, tokenizer, threshold=-math.inf, max_turns=5) == [
        ["I stole a bike.", "Why?", "For fun.", "That's wrong.", "OK, I'll return it."], ["I stole a bike."]]
    assert linked_contexts(ROWS, [2], model, tokenizer, threshold=math.inf, max_turns=5) == [["OK, I'll return it."]]
    assert link_scores(ROWS, model, tokenizer, indices=[3, 0, 2]) == pytest.approx([scores[3], math.nan, scores[2]],
                                                                                   nan_ok=True)


def test_shipped_links_cover_the_train_file_at_the_published_start_rate(full_data):
    rows = json.loads((full_data / "prosocial_dialog_partial" / "train.json").read_text())
    ids = load_links("train", len(rows))
    assert abs((ids[-1] + 1) / len(rows) - START_RATE) < 0.01


def test_shipped_train_links_recover_the_known_dialogues():
    """DialogStudio gives dialogues 0-4 of the train split: the first 12 rows, cut 2 | 3 | 3 | 2 | 2."""
    record = json.loads((LINKS_DIR / "train.json").read_text())
    assert record["dialogue_ids"][:13] == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5]


def test_links_for_another_file_are_a_clear_error(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps({"dialogue_ids": [0, 0]}))
    with pytest.raises(DataError, match="for 2 rows, expected 3"):
        load_links("train", 3, folder=tmp_path)
    with pytest.raises(DataError, match="link_dialogues.py"):
        load_links("valid", 3, folder=tmp_path)
