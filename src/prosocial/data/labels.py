"""The ProsocialDialog safety schema: five labels, their severity order, the coarse view, vote aggregation."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Coarse(str, Enum):
    """The three classes annotators chose from (paper §2.3)."""

    CASUAL = "casual"
    NEEDS_CAUTION = "needs caution"
    NEEDS_INTERVENTION = "needs intervention"


class SafetyLabel(str, Enum):
    """The five final labels, spelled exactly as the dataset spells them, declared in order of severity."""

    CASUAL = "__casual__"
    POSSIBLY_NEEDS_CAUTION = "__possibly_needs_caution__"
    PROBABLY_NEEDS_CAUTION = "__probably_needs_caution__"
    NEEDS_CAUTION = "__needs_caution__"
    NEEDS_INTERVENTION = "__needs_intervention__"

    @property
    def severity(self) -> int:
        """0 (casual) … 4 (needs intervention)."""
        return _SEVERITY[self]

    @property
    def coarse(self) -> Coarse:
        if self is SafetyLabel.CASUAL:
            return Coarse.CASUAL
        if self is SafetyLabel.NEEDS_INTERVENTION:
            return Coarse.NEEDS_INTERVENTION
        return Coarse.NEEDS_CAUTION

    @property
    def is_casual(self) -> bool:
        return self is SafetyLabel.CASUAL

    def __lt__(self, other: SafetyLabel) -> bool:  # type: ignore[override]
        if not isinstance(other, SafetyLabel):
            return NotImplemented
        return self.severity < other.severity

    def __le__(self, other: SafetyLabel) -> bool:  # type: ignore[override]
        return self == other or self < other

    def __gt__(self, other: SafetyLabel) -> bool:  # type: ignore[override]
        if not isinstance(other, SafetyLabel):
            return NotImplemented
        return self.severity > other.severity

    def __ge__(self, other: SafetyLabel) -> bool:  # type: ignore[override]
        return self == other or self > other

    @classmethod
    def parse(cls, value: str) -> SafetyLabel:
        """Accept the dataset spelling (`__needs_caution__`) or the plain one (`needs caution`)."""
        text = value.strip()
        try:
            return cls(text)
        except ValueError:
            pass
        key = text.strip("_").replace("_", " ").lower()
        for label in cls:
            if label.value.strip("_").replace("_", " ") == key:
                return label
        raise ValueError(f"unknown safety label {value!r}; expected one of {[label.value for label in cls]}")


_SEVERITY = {label: i for i, label in enumerate(SafetyLabel)}

#: Labels in severity order, e.g. for the columns of a confusion matrix.
LABELS: tuple[SafetyLabel, ...] = tuple(SafetyLabel)
COARSE_LABELS: tuple[Coarse, ...] = tuple(Coarse)

_CAUTION_BY_VOTES = {
    1: SafetyLabel.POSSIBLY_NEEDS_CAUTION,
    2: SafetyLabel.PROBABLY_NEEDS_CAUTION,
    3: SafetyLabel.NEEDS_CAUTION,
}


def parse_vote(vote: str) -> Coarse:
    """One annotator's vote ("casual", "needs caution", "needs intervention"); anything else is an error."""
    try:
        return Coarse(vote.strip().lower())
    except (ValueError, AttributeError):
        raise ValueError(
            f"unknown safety vote {vote!r}; expected one of {[c.value for c in Coarse]}"
        ) from None


def aggregate_votes(annotations: Iterable[str]) -> SafetyLabel:
    """The paper's rule (A.4) for three votes.

    Any "needs intervention" vote wins, because an emergency must not be missed; three "casual" votes
    give casual; otherwise one, two or three "needs caution" votes give possibly / probably / needs caution.
    """
    votes = [parse_vote(v) for v in annotations]
    if len(votes) != 3:
        raise ValueError(f"the A.4 rule needs exactly three votes, got {len(votes)}: {votes}")
    if Coarse.NEEDS_INTERVENTION in votes:
        return SafetyLabel.NEEDS_INTERVENTION
    cautions = votes.count(Coarse.NEEDS_CAUTION)
    return _CAUTION_BY_VOTES.get(cautions, SafetyLabel.CASUAL)
