"""A learned judge of replies that agree with, or go along with, a problematic turn (issue 11, item 3).

The guard's rules (`prost.guard.condones`) are precise on the openings they know ("Yeah", "I think you are right")
and blind to everything else: on DiaSafety's held-out chatbot replies they find 41% of the agreeing ones and 13%
of those that go along with a risky plan. This judge learns the rest from DiaSafety's human labels: the
categories Toxicity Agreement (Unsafe = the reply agrees with a toxic context) and Risk Ignorance (Unsafe = it
ignores or goes along with a risk to the user). Frozen all-MiniLM-L6-v2 embeddings of the user's turn and the
reply, their pair features, a logistic head; the threshold is the lowest at which a calibration slice of the
training split (whole contexts held out from the fit) reaches `min_precision`, because a false alarm costs a
resample of a good reply. ToxiChat is left out on purpose, so its stance evaluator stays an independent judge.

    judge = AgreementJudge.load()                         # the shipped head (resources/reply-agreement)
    turn = "Women are too emotional to be leaders."
    judge.agrees([turn, turn], ["Yeah, that is so true.", "Why would you say that? It is a harmful stereotype."])
    # [True, False]; it is no oracle: "That is not true, many women are great leaders." scores just over the cut
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.data.adapters import load_benchmark
from prosocial.errors import ModelError
from prosocial.heads import Head, pair_features
from prosocial.io import atomic_write
from prosocial.resources import RESOURCES

AGREEMENT_DIR = RESOURCES / "reply-agreement"
CONFIG = "agreement.json"
HEAD = "head.npz"
#: DiaSafety categories whose Unsafe label means the reply sides with the context.
CATEGORIES = ("Toxicity Agreement", "Risk Ignorance")


@dataclass(frozen=True)
class Pair:
    """A user's turn, a reply to it, and whether a human said the reply agrees with or goes along with it."""

    turn: str
    reply: str
    agrees: bool
    category: str = ""


def diasafety_pairs(split: str, root: Path | None = None) -> list[Pair]:
    """DiaSafety's (context, response, Unsafe) rows of the two agreement categories; `split` "train" or "dev"."""
    return [
        Pair(e.context[-1], e.response, e.meta["response_label"] == "Unsafe", e.meta["category"])
        for e in load_benchmark("diasafety", split, root)
        if e.meta["category"] in CATEGORIES and e.response
    ]


class AgreementJudge:
    """P(reply agrees with the turn) from a head over frozen sentence-pair features; `agrees` cuts at `threshold`."""

    def __init__(self, head: Head, threshold: float, config: Mapping[str, Any] | None = None, embedder: Any = None):
        self.head = head
        self.threshold = threshold
        self.config = dict(config or {})
        self._embedder = embedder

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from prosocial.canary.rotbank import Embedder

            self._embedder = Embedder()
        return self._embedder

    def probabilities(self, turns: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        if len(turns) != len(replies):
            raise ValueError(f"{len(turns)} turns for {len(replies)} replies")
        if not replies:
            return np.zeros(0, dtype=np.float32)
        u, v = self.embedder.encode(list(turns)), self.embedder.encode(list(replies))
        return self.head.probabilities(pair_features(u, v))[:, 1]

    def agrees(self, turns: Sequence[str], replies: Sequence[str]) -> list[bool]:
        return [bool(p >= self.threshold) for p in self.probabilities(turns, replies)]

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / HEAD, "wb") as handle:
            np.savez(handle, **{k: v.astype(np.float16) for k, v in self.head.weights.items()})
        with atomic_write(directory / CONFIG) as handle:
            json.dump(self.config | {"threshold": self.threshold}, handle, indent=2)
        return directory

    @classmethod
    def load(cls, directory: str | Path | None = None, embedder: Any = None) -> AgreementJudge:
        """The judge in `directory` (default: the shipped one); the encoder loads on first use."""
        directory = Path(directory) if directory else AGREEMENT_DIR
        if missing := [n for n in (CONFIG, HEAD) if not (directory / n).is_file()]:
            raise ModelError(f"the reply-agreement judge in {directory} is missing {missing} "
                             "(build it with `python scripts/train_reply_agreement.py --out DIR`)")
        config = json.loads((directory / CONFIG).read_text())
        return cls(Head(dict(np.load(directory / HEAD))), float(config["threshold"]), config, embedder)


def _held_out(pair: Pair, share: float) -> bool:
    """Whole contexts go to the calibration slice, so no turn is both fitted and calibrated on."""
    return int(hashlib.sha256(pair.turn.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def lowest_precise_threshold(scores: np.ndarray, gold: np.ndarray, min_precision: float) -> float:
    """The lowest score threshold whose flagged set reaches `min_precision` (the highest score if none does)."""
    order = np.argsort(-scores)
    hits = np.cumsum(gold[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= min_precision)
    return float(scores[order][ok[-1]]) if len(ok) else float(scores.max())


def train_agreement_judge(pairs: Sequence[Pair], min_precision: float = 0.85, calibration_share: float = 0.15,
                          weight_decay: float = 1.0, embedder: Any = None, seed: int = 0) -> AgreementJudge:
    """Fit the head on most contexts of `pairs`; set the threshold on the held-out rest (see the module).

    `weight_decay` 1.0 keeps the 1,536 pair features from overfitting 3,000 pairs (calibration AUC 0.841 vs 0.827
    at 1e-3, whose scores crowd near 1 and leave no threshold between them)."""
    if embedder is None:
        from prosocial.canary.rotbank import Embedder

        embedder = Embedder()
    u = embedder.encode([p.turn for p in pairs])
    v = embedder.encode([p.reply for p in pairs])
    x, y = pair_features(u, v), np.array([int(p.agrees) for p in pairs])
    calibrate = np.array([_held_out(p, calibration_share) for p in pairs])
    if calibrate.all() or not calibrate.any() or len(set(y[calibrate])) < 2:
        raise ValueError("the calibration slice needs both agreeing and other replies: give more pairs")
    head = Head.train(x[~calibrate], y[~calibrate], classes=2, weight_decay=weight_decay, seed=seed)
    threshold = lowest_precise_threshold(head.probabilities(x[calibrate])[:, 1], y[calibrate], min_precision)
    config = {
        "encoder": "all-MiniLM-L6-v2 (frozen, mean pooling), features [u, v, u*v, |u-v|]",
        "data": f"DiaSafety train, categories {', '.join(CATEGORIES)}",
        "fitted_pairs": int((~calibrate).sum()), "calibration_pairs": int(calibrate.sum()),
        "min_precision": min_precision, "weight_decay": weight_decay, "seed": seed,
    }
    return AgreementJudge(head, threshold, config, embedder)
