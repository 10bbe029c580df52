"""Peer detectors the paper's point is measured against: a keyword list and an SVM profanity filter.

They judge only the last utterance and give no RoTs; they exist so benchmarks run them beside Canary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.data.context import check_context
from prosocial.data.labels import SafetyLabel
from prosocial.resources import RESOURCES

LDNOOBW = RESOURCES / "wordlists" / "ldnoobw_en.txt"


def _binary_verdict(p_unsafe: float) -> Verdict:
    """A two-way judgement in the five-label shape: its mass on casual and needs caution, none elsewhere."""
    label = SafetyLabel.NEEDS_CAUTION if p_unsafe >= 0.5 else SafetyLabel.CASUAL
    scores = dict.fromkeys((s.value for s in SafetyLabel), 0.0)
    scores |= {SafetyLabel.CASUAL.value: 1 - p_unsafe, SafetyLabel.NEEDS_CAUTION.value: p_unsafe}
    return Verdict(label, scores)


@register_detector("keywords")
class KeywordDetector(SafetyDetector):
    """Flags an utterance that contains a listed word or phrase (default: the LDNOOBW English list)."""

    def __init__(self, wordlist: str | Path = LDNOOBW):
        self.wordlist = wordlist

    @cached_property
    def _pattern(self) -> re.Pattern:
        words = [w.strip() for w in Path(self.wordlist).read_text(encoding="utf-8").splitlines() if w.strip()]
        alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        return re.compile(rf"(?<![\w])(?:{alternation})(?![\w])", re.IGNORECASE)

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        lasts = [check_context(c, f"contexts[{i}]")[-1] for i, c in enumerate(contexts)]
        return [_binary_verdict(float(bool(self._pattern.search(last)))) for last in lasts]


@register_detector("profanity-check")
class ProfanityCheckDetector(SafetyDetector):
    """`alt-profanity-check`'s linear SVM (an offensive-language filter from PyPI), if installed."""

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        try:
            from profanity_check import predict_prob
        except ImportError as exc:  # an optional peer, not a dependency
            from prosocial.errors import ModelError

            raise ModelError("the profanity-check peer needs `pip install alt-profanity-check`") from exc
        lasts = [check_context(c, f"contexts[{i}]")[-1] for i, c in enumerate(contexts)]
        return [_binary_verdict(float(p)) for p in predict_prob(lasts)] if lasts else []
