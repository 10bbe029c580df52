"""The detector interface: dialogue contexts in, safety verdicts (label, scores, RoTs) out.

`load_detector` takes a registry name or a saved model folder, whose ``prosocial.json`` names the backend
(`prosocial.model_folder`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.registry import Registry


@dataclass
class Verdict:
    """A detector's judgement of one context: the five-level label, a score per label, RoTs, the id of the
    user norm that decided it, if one did (`prosocial.canary.norms`), and the danger category of the taxonomy
    (`prosocial.data.danger`) it describes, if any: it picks the hand-over (poison control, not a crisis line, for a
    poisoning) and the warning for a dangerous act.

    `language` is the judged text's ISO 639-1 code (None: too little text to tell, or not identified), `decoded`
    the encodings undone before judging ("base64", "hex+rot13"), and `language_policy` the policy that decided a
    text the models cannot read (flag, pass or judge; None when they could read it), all set by
    `prosocial.canary.language.LanguageGuard`."""

    safety_label: SafetyLabel
    scores: dict[str, float] = field(default_factory=dict)
    rots: list[str] = field(default_factory=list)
    norm: str | None = None
    danger: str | None = None
    language: str | None = None
    decoded: str | None = None
    language_policy: str | None = None
    #: why, in a sentence, where the detector says (an LLM judge does); None otherwise
    rationale: str | None = None

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
            "danger": self.danger,
            "language": self.language,
            "decoded": self.decoded,
            "language_policy": self.language_policy,
        } | ({"rationale": self.rationale} if self.rationale is not None else {})


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

    def warm_up(self) -> None:
        """Load whatever a first request would wait for (weights load on first use): for services and chats."""
        self.predict([["Hello, how are you?"]])


DETECTORS: Registry[SafetyDetector] = Registry("detector", {
    "canary-mini": "prosocial.canary.mini",
    "canary-cascade": "prosocial.canary.cascade",
    "canary-judge": "prosocial.canary.judged",
    "generative": "prosocial.canary.generative",
    "llm-judge": "prosocial.canary.llm_judge",
    "keywords": "prosocial.canary.baselines",
    "profanity-check": "prosocial.canary.baselines",
})
register_detector = DETECTORS.register
#: Folders saved before ``prosocial.json``, known by the file their backend wrote (a bare Hugging Face folder is
#: a generative Canary, as `prosocial eval canary` always took it).
LEGACY_FOLDERS = (("canary.json", "generative"), ("head.safetensors", "canary-mini"), ("config.json", "generative"))


def load_detector(
    name: str | Path = "canary-mini", norms: Sequence[str | Path] | None = None,
    unsupported_language: str | None = None, norms_matcher: str | Path | None = None, **settings
) -> SafetyDetector:
    """A detector by registry name (e.g. "canary-mini", "generative", "keywords") with its settings, or from a saved
    model folder (whose ``prosocial.json`` names its backend); with `norms` (norm files, see
    `prosocial.canary.norms`), wrapped so the user's norms apply on top, matched by `norms_matcher` (a learned
    matcher's folder; default: the prototype matcher); with `unsupported_language` (flag, pass or
    judge, see `prosocial.canary.language`), wrapped so that text the models cannot read (another language, an
    unreadable payload) gets that policy and every verdict names its language. The command line and the service
    always set it (default flag); None gives the bare detector, as evaluations of the model itself want."""
    if unsupported_language is not None:
        from prosocial.canary.language import check_policy

        check_policy(unsupported_language)  # a wrong policy is reported before any weights load
    if norms_matcher is not None and not norms:
        raise ValueError("a norms matcher was given without norms to match (--norms)")
    detector = DETECTORS.load(name, LEGACY_FOLDERS, **settings)
    if norms:
        from prosocial.canary.norms import NormedDetector

        detector = NormedDetector(detector, list(norms), matcher=norms_matcher)
    if unsupported_language is not None:
        from prosocial.canary.language import LanguageGuard

        detector = LanguageGuard(detector, unsupported_language)
    return detector
