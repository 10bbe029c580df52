"""The RoT bank's relevance gate: fitted by leave-one-out retrieval, applied at search time."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from prosocial.canary.rotbank import Entry, RotBank, fit_min_similarity
from prosocial.errors import ModelError


class BagOfWords:
    """A deterministic stand-in embedder: hashed word counts, unit length (no model needed)."""

    model_dir = None

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, zlib.crc32(word.encode()) % 64] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)


TOPICS = {
    "fire alarm prank school": "It's wrong to pull a fire alarm for fun.",
    "steal money purse mom": "It's wrong to steal from your family.",
    "drive drunk beers home": "You shouldn't drive after drinking.",
    "cheat exam test phone": "It's wrong to cheat on a test.",
}


def _bank() -> RotBank:
    rng = np.random.default_rng(0)
    entries = []
    for words, rot in TOPICS.items():
        for i in range(15):  # near-duplicate situations share their RoT
            key = f"{words} {' '.join(rng.choice(words.split(), 2))} case{i}"
            entries.append(Entry(key, [rot], "prosocial_dialog"))
    for i in range(40):  # one-off situations: their nearest neighbour's RoT is about something else
        entries.append(Entry(f"unique{i} thing{i} odd{i}", [f"rule{i} item{i} norm{i}"], "prosocial_dialog"))
    embedder = BagOfWords()
    return RotBank.build(entries, embedder)


def test_the_gate_keeps_relevant_rots_and_drops_off_topic_ones() -> None:
    bank = _bank()
    gate, report = fit_min_similarity(bank, list(range(len(bank.entries))))
    assert report["relevant_with_gate"] > report["relevant_without_gate"]
    assert 0.9 <= report["relevant_with_gate"] and 0.4 < report["answered_with_gate"] < 0.8
    bank.min_similarity = gate
    on_topic, off_topic = bank.search([["fire alarm prank school again"], ["unique99 zebra"]], k=1)
    assert on_topic == [TOPICS["fire alarm prank school"]] and off_topic == []


def test_gate_round_trips_and_needs_enough_queries(tmp_path) -> None:
    bank = _bank()
    bank.min_similarity = 0.42
    bank.save(tmp_path / "bank")
    assert RotBank.load(tmp_path / "bank").min_similarity == pytest.approx(0.42)
    with pytest.raises(ModelError, match="at least 20"):
        fit_min_similarity(bank, [0, 1, 2])
