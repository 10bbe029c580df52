"""Weighted multi-task mixtures (the paper trains Canary on 4:1:1:1 and Prost on a 7-way mix)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: Appendix B.1: ProsocialDialog : DailyDialog : EmpatheticDialogues : BlendedSkillTalk.
CANARY_WEIGHTS = {"prosocial": 4, "dailydialog": 1, "empathetic": 1, "blended_skill_talk": 1}
#: Appendix B.2 prints "9:3:3:3:3:1" for seven corpora; the ratio as printed has six numbers, so we read it as
#: ProsocialDialog 9 and 3 for each casual corpus except BlendedSkillTalk, which gets 1 (documented guess).
PROST_WEIGHTS = {
    "prosocial": 9,
    "dailydialog": 3,
    "topical_chat": 3,
    "persona_chat": 3,
    "wizard_of_wikipedia": 3,
    "empathetic": 3,
    "blended_skill_talk": 1,
}


class MixtureSampler(Generic[T]):
    """Draw items from several sources in proportion to their weights, deterministically under `seed`.

    Each source is walked in a fresh shuffled order and reshuffled when exhausted, so small sources repeat
    (up-sampling) and no item repeats before its source has been seen whole. Sources missing from `weights`
    are an error; weights of sources that are absent are ignored, so the paper's defaults work on any subset.
    """

    def __init__(self, sources: Mapping[str, Sequence[T]], weights: Mapping[str, float], seed: int = 0):
        self.sources = {name: items for name, items in sources.items() if len(items)}
        missing = sorted(set(self.sources) - set(weights))
        if missing:
            raise ValueError(f"no mixture weight for source(s) {missing}; weights given for {sorted(weights)}")
        if not self.sources:
            raise ValueError("a mixture needs at least one non-empty source")
        bad = {name: weights[name] for name in self.sources if weights[name] <= 0}
        if bad:
            raise ValueError(f"mixture weights must be positive, got {bad}")
        self.weights = {name: float(weights[name]) for name in self.sources}
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[str, T]]:
        rng = random.Random(self.seed)
        names = list(self.sources)
        weights = [self.weights[n] for n in names]
        orders: dict[str, list[int]] = {name: [] for name in names}
        while True:
            name = rng.choices(names, weights)[0]
            if not orders[name]:
                orders[name] = list(range(len(self.sources[name])))
                rng.shuffle(orders[name])
            yield name, self.sources[name][orders[name].pop()]

    def sample(self, n: int) -> list[tuple[str, T]]:
        """The first `n` draws: `(source, item)` pairs."""
        out = []
        for draw in self:
            if len(out) == n:
                break
            out.append(draw)
        return out
