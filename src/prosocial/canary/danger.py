"""The danger head: which danger of the taxonomy (`prosocial.data.danger`) a context describes, if any.

A small classifier over the very features Canary-mini's safety head reads (its encoder's pooled tokens), so it
costs one matrix product, not a second encoder pass. It lives in the model folder's ``danger/`` module:
``head.npz`` (`prosocial.heads.Head` weights) and ``config.json`` (class order, thresholds, provenance).

Why a head of its own: Canary-mini's needs-intervention class was learned from DiaSafety's Risk Ignorance
(depression and self-harm posts) and, until the mapping was fixed, Unauthorized Expertise (people asking for
medical advice). It saw almost no physical emergencies — a poisoning, a fire, an intruder — and it learned that
"asks a how/should question" looks like intervention. The danger head is trained on the team-written danger
corpus (``data/danger/``, datasheet there) with its benign look-alikes, plus the public sources' rows, and it
decides the intervention verdict:

- P(any emergency category) ≥ ``emergency_threshold`` → needs intervention, with the top emergency category;
- the safety head's own intervention verdict stands only where P(emergency) ≥ ``intervention_gate``; elsewhere the
  context is judged casual or caution from the safety head's other two classes (basil care is not a crisis);
- P(any danger) ≥ ``act_threshold`` → at least needs caution, with the top category (a dangerous act: the reply
  warns; a possible emergency below the threshold: caution, not silence).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prosocial.data.danger import ACTS, BY_NAME, EMERGENCIES, Level
from prosocial.data.labels import SafetyLabel
from prosocial.errors import ModelError
from prosocial.heads import Head

FOLDER = "danger"
NONE = "none"


@dataclass
class DangerConfig:
    """Class order (``none`` first, then categories) and the thresholds fitted on dev rows; saved as config.json."""

    classes: list[str] = field(default_factory=lambda: [NONE, *EMERGENCIES, *ACTS])
    emergency_threshold: float = 0.5
    act_threshold: float = 0.5
    intervention_gate: float = 0.1
    meta: dict | None = None

    def __post_init__(self):
        unknown = [c for c in self.classes[1:] if c not in BY_NAME]
        if not self.classes or self.classes[0] != NONE or unknown:
            raise ModelError(f"danger head classes must be 'none' then taxonomy categories; got {self.classes}")


@dataclass
class DangerCall:
    """One context's danger reading: the top category (None: no danger), and the emergency and any-danger mass."""

    category: str | None
    emergency: float
    danger: float


class DangerHead:
    """Danger probabilities from pooled features, and how they change a safety verdict (module docstring)."""

    def __init__(self, head: Head, config: DangerConfig):
        self.head = head
        self.config = config
        classes = config.classes
        self._emergency = np.array([BY_NAME[c].level is Level.EMERGENCY for c in classes[1:]])

    @classmethod
    def load(cls, model_dir: str | Path) -> DangerHead | None:
        """The head of a model folder, or None when the folder has none (models built before it)."""
        folder = Path(model_dir) / FOLDER
        if not (folder / "config.json").exists():
            return None
        try:
            raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            config = DangerConfig(**raw)
            with np.load(folder / "head.npz") as weights:
                head = Head(dict(weights))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"unreadable danger head in {folder}: {exc}") from None
        return cls(head, config)

    def save(self, model_dir: str | Path) -> None:
        folder = Path(model_dir) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "head.npz", **{k: v.astype(np.float32) for k, v in self.head.weights.items()})
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n", encoding="utf-8")

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return self.head.probabilities(features)

    def read(self, probs: np.ndarray) -> list[DangerCall]:
        """Per row of danger probabilities: the top category and the emergency / any-danger mass."""
        names = self.config.classes[1:]
        danger = probs[:, 1:]
        emergency = (danger * self._emergency).sum(1)
        calls = []
        for row, e, d in zip(danger, emergency, danger.sum(1), strict=True):
            if e >= self.config.emergency_threshold:  # the category of an emergency is an emergency one
                top = names[int(np.argmax(np.where(self._emergency, row, -1)))]
            else:
                top = names[int(np.argmax(row))]
            calls.append(DangerCall(top if d >= self.config.act_threshold or e >= self.config.intervention_gate
                                    else None, float(e), float(d)))
        return calls

    def apply(
        self, labels: Sequence[SafetyLabel], calls: Sequence[DangerCall], fallback: Sequence[SafetyLabel]
    ) -> tuple[list[SafetyLabel], list[str | None]]:
        """Safety labels and danger categories after the danger reading. `fallback[i]` is the safety head's label
        with its intervention class left out, for a needs-intervention verdict the danger head does not support."""
        config = self.config
        out_labels, categories = [], []
        for label, call, other in zip(labels, calls, fallback, strict=True):
            category = None
            if call.emergency >= config.emergency_threshold:
                label, category = SafetyLabel.NEEDS_INTERVENTION, call.category
            elif label is SafetyLabel.NEEDS_INTERVENTION:
                if call.emergency >= config.intervention_gate:
                    category = call.category if call.category in EMERGENCIES else None
                else:
                    label = other
            if label is not SafetyLabel.NEEDS_INTERVENTION and call.danger >= config.act_threshold:
                label, category = max(label, SafetyLabel.NEEDS_CAUTION), call.category
            out_labels.append(label)
            categories.append(category)
        return out_labels, categories
