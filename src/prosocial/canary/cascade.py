"""A cascade of two Canary-mini-format models: the fast default decides, a stronger one settles what it is unsure of.

The fast model's verdicts stand wherever its caution share (`mini.caution_share`, the quantity its casual threshold
cuts) lies more than `band` from that threshold. The rest go to the strong model (e.g. an
all-mpnet-base-v2 build, `prosocial train canary-mini --encoder mpnet --out DIR`), whose own calibrated
probabilities and thresholds decide them. RoTs come from the fast model's bank either way. With the MPNet teacher
and band 0.15, 12.6% of the safety suite's dev contexts went to the teacher (model card: "A cascade").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.canary.mini import DEFAULT_DIR, CanaryMini, caution_share, decide
from prosocial.errors import ModelError


@register_detector("canary-cascade")
class CanaryCascade(SafetyDetector):
    """`model_dir`, the stronger model (as `prosocial check -b canary-cascade --model DIR` names it), settles the
    contexts `fast_dir` (default: the shipped Canary-mini) is unsure of; `sent` and `seen` count contexts sent to
    it and judged in all."""

    def __init__(self, model_dir: str | Path | None = None, fast_dir: str | Path = DEFAULT_DIR, band: float = 0.15):
        self.model_dir = model_dir
        self.fast_dir = fast_dir
        self.band = band
        self.sent = self.seen = 0

    @cached_property
    def _fast(self) -> CanaryMini:
        return CanaryMini(self.fast_dir)

    @cached_property
    def _strong(self) -> CanaryMini:
        if self.model_dir is None:
            raise ModelError("canary-cascade needs model_dir, the stronger model's folder (e.g. one built with "
                             "`prosocial train canary-mini --encoder mpnet --out DIR`)")
        strong = CanaryMini(self.model_dir)
        _ = strong.config  # a missing or incomplete folder fails here, before any work
        return strong

    def warm_up(self) -> None:
        self._fast.warm_up()
        self._strong.probabilities([["Hello, how are you?"]])

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        if not 0 <= self.band <= 1:
            raise ValueError(f"band must be between 0 and 1, got {self.band}")
        if not contexts:
            return []
        strong = self._strong
        probs = self._fast.probabilities(contexts)
        unsure = np.flatnonzero(np.abs(caution_share(probs) - self._fast.config.casual_threshold) < self.band)
        mixed = probs.copy()
        if len(unsure):
            mixed[unsure] = strong.probabilities([contexts[i] for i in unsure])
        labels, categories = self._fast.decide(probs, contexts)  # the fast model's danger head reads every context
        for i, label in zip(unsure, decide(mixed[unsure], strong.config), strict=True):
            if categories[i] is None:  # a danger reading stands; the strong model settles the rest
                labels[i] = label
        self.sent += len(unsure)
        self.seen += len(contexts)
        return self._fast.verdicts(contexts, mixed, labels, categories, with_rots)
