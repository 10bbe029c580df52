"""The dialogue model shared by every part: a `Dialogue` of `Turn`s, and the flat `Example` models consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prosocial.data.labels import SafetyLabel


@dataclass
class Turn:
    """One exchange: Speaker 1's utterance (`context`), then Speaker 2's reply (`response`).

    The safety label and RoTs judge the dialogue up to and including `context`.
    """

    context: str
    response: str = ""
    rots: list[str] = field(default_factory=list)
    safety_label: SafetyLabel | None = None
    safety_annotations: list[str] = field(default_factory=list)
    safety_annotation_reasons: list[str] = field(default_factory=list)
    response_id: int = 0
    episode_done: bool = False


@dataclass
class Dialogue:
    """An ordered list of turns that share a `dialogue_id`, a `source` and an `etc` note."""

    dialogue_id: int | str
    turns: list[Turn] = field(default_factory=list)
    source: str = ""
    etc: str = ""
    split: str = ""

    def utterances(self, upto: int | None = None) -> list[str]:
        """The flat history, oldest first: context, response, context, … ending with turn `upto`'s context."""
        last = len(self.turns) - 1 if upto is None else upto
        out: list[str] = []
        for i, turn in enumerate(self.turns[: last + 1]):
            out.append(turn.context)
            if i < last:
                out.append(turn.response)
        return out

    def examples(self) -> list[Example]:
        """One example per turn: the history up to Speaker 1's utterance, with that turn's targets."""
        return [
            Example(
                context=self.utterances(i),
                response=turn.response,
                rots=list(turn.rots),
                safety_label=turn.safety_label,
                source=self.source,
                id=f"{self.dialogue_id}:{turn.response_id}",
            )
            for i, turn in enumerate(self.turns)
        ]


@dataclass
class Example:
    """What a model sees: a context (utterances, oldest first, last one by the user) and its targets.

    Every reader and benchmark adapter yields these, so detectors, generators and evaluators share one type.
    `safety_label` is None when the data has no safety judgement (e.g. context/response-only files).
    """

    context: list[str]
    response: str | None = None
    rots: list[str] = field(default_factory=list)
    safety_label: SafetyLabel | None = None
    source: str = ""
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def coarse(self):
        return None if self.safety_label is None else self.safety_label.coarse
