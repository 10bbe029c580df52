"""The detector interface: dialogue contexts in, safety verdicts (label, scores, RoTs) out."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.errors import ModelError
from prosocial.io import atomic_write
from prosocial.registry import Registry


@dataclass
class Verdict:
    """A detector's judgement of one context: the five-level label, a score per label, RoTs, and the id of the
    user norm that decided it, if one did (`prosocial.canary.norms`)."""

    safety_label: SafetyLabel
    scores: dict[str, float] = field(default_factory=dict)
    rots: list[str] = field(default_factory=list)
    norm: str | None = None

    @property
    def coarse(self) -> Coarse:
        return self.safety_label.coarse

    def to_dict(self) -> dict:
        return {
            "safety_label": self.safety_label.value,
            "coarse": self.coarse.value,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "rots": list(self.rots),
            "norm": self.norm,
        }


class SafetyDetector(ABC):
    """Judges dialogue contexts (lists of utterances, oldest first; the last is the user's).

    Implementations hold settings in the constructor and load weights lazily; `predict` works on batches.
    RoTs are only given for non-casual contexts; `with_rots=False` skips them for label-only speed.
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]: ...

    def check(self, context: Sequence[str], with_rots: bool = True) -> Verdict:
        """One context; a convenience over `predict`."""
        return self.predict([context], with_rots=with_rots)[0]


DETECTORS: Registry[SafetyDetector] = Registry("detector", {
    "canary-mini": "prosocial.canary.mini",
    "generative": "prosocial.canary.generative",
    "keywords": "prosocial.canary.baselines",
    "profanity-check": "prosocial.canary.baselines",
})
register_detector = DETECTORS.register


def load_detector(name: str = "canary-mini", norms: Sequence[str | Path] | None = None, **settings) -> SafetyDetector:
    """A detector by registry name (e.g. "canary-mini", "generative", "keywords") with its settings; with
    `norms` (norm files, see `prosocial.canary.norms`), wrapped so the user's norms apply on top."""
    detector = DETECTORS.create(name, **settings)
    if norms:
        from prosocial.canary.norms import NormedDetector

        return NormedDetector(detector, list(norms))
    return detector


def resolve_model_dir(path: str | Path, required: Sequence[str]) -> Path:
    """Check a model directory before loading it, so a wrong path fails with a message that names it."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model directory not found: {path}")
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise ModelError(f"model directory {path} is missing {missing}")
    return path


def write_model_config(file: Path, settings: dict[str, Any]) -> None:
    """Write a model folder's small JSON settings file (e.g. ``canary.json``, ``prost.json``) atomically."""
    with atomic_write(file) as handle:
        json.dump(settings, handle, indent=2)


def read_model_config(file: Path) -> dict[str, Any]:
    """A model folder's settings file as written by `write_model_config`: {} when absent, unreadable is an error."""
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"unreadable {file}: {error}") from error
