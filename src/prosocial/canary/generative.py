"""The paper's Canary (§4.1, B.1): a seq2seq (or causal) LM that writes the safety label, then the RoTs.

Input: the flattened dialogue context (`build_context`). Target: the safety token, then the RoTs, e.g.
``__needs_caution__ It is wrong to call 911 just for fun.``; a casual context's target is the token alone.
The five labels are added as special tokens (C.1), so each is one token and its first-step probability is
the class score.

Joining several RoTs. The paper "concatenates them with commas", but RoTs contain commas themselves ("It's ok
to be upset when someone's hurt you, but ..."), so that cannot be split back; ParlAI's ``prosocial_dialog``
task has no RoT target at all (its safety teacher emits the label alone, context lines joined by "\\n"), and
the released Canary emits one RoT. We therefore join RoTs with a sixth special token, `ROT_SEP`
(``r1 __rot__ r2``), which never occurs in text and splits back exactly. A model trained with another
separator records it in ``canary.json``; with a plain ", " the RoTs come back as one string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.data.context import build_context, check_context
from prosocial.data.labels import LABELS, SafetyLabel
from prosocial.data.schema import Example
from prosocial.errors import ModelError
from prosocial.lm.hf_folder import HFModelFolder
from prosocial.model_folder import write_backend, write_model_config

if TYPE_CHECKING:  # torch and transformers load only when a model does, so registering this backend is cheap
    import torch

    from prosocial.lm.inference import Pair

log = logging.getLogger(__name__)

ROT_SEP = "__rot__"
CANARY_TOKENS: tuple[str, ...] = (*(label.value for label in LABELS), ROT_SEP)
CONFIG_FILE = "canary.json"
_LABEL_RE = re.compile("|".join(re.escape(label.value) for label in LABELS))


def canary_target(label: SafetyLabel, rots: Sequence[str], separator: str = ROT_SEP) -> str:
    """The gold text: the label token, then the RoTs joined by `separator`; casual gives the token alone."""
    rots = [r.strip() for r in rots if r.strip()]
    if label.is_casual or not rots:
        return label.value
    return f"{label.value} {f' {separator} '.join(rots)}"


def canary_pairs(examples: Sequence[Example], separator: str = ROT_SEP, max_turns: int | None = None,
                 default_label: SafetyLabel | None = None) -> list[Pair]:
    """Training pairs. Examples without a label take `default_label` (CASUAL for the casual corpora) or are
    skipped, so unlabelled data never trains the model to emit a guess."""
    pairs = []
    for example in examples:
        label = example.safety_label or default_label
        if label is not None:
            pairs.append((build_context(example.context, max_turns), canary_target(label, example.rots, separator)))
    return pairs


def split_rots(text: str, separator: str = ROT_SEP) -> list[str]:
    parts = text.split(separator) if separator.strip() not in (",", "") else [text]
    return [p.strip() for p in parts if p.strip()]


def parse_canary(text: str, scores: dict[str, float], separator: str = ROT_SEP) -> tuple[Verdict, bool]:
    """A generation back into a `Verdict`, and whether it was well formed.

    Well formed means it starts with a label token. Otherwise the label is the arg-max of `scores` and any text
    left over (label tokens removed) is kept as RoTs of a non-casual verdict, since it is still the model's
    explanation. Casual verdicts carry no RoTs, as the detector interface promises.
    """
    match = _LABEL_RE.match(text.strip())
    if match:
        label, rest, ok = SafetyLabel(match.group(0)), text.strip()[match.end():], True
    else:
        label, rest, ok = SafetyLabel(max(scores, key=scores.get)), _LABEL_RE.sub(" ", text), False
    rots = [] if label.is_casual else split_rots(_LABEL_RE.sub(" ", rest), separator)
    return Verdict(label, dict(scores), rots), ok


@register_detector("generative")
class GenerativeCanary(HFModelFolder, SafetyDetector):
    """Canary from a fine-tuned model folder (see `prosocial train canary`); weights load on first use.

    Scores are the model's probabilities of the five label tokens as the first target token, renormalised over
    those five. With RoTs, one greedy/beam generation also yields those scores; without, one forward pass.
    `rot_separator` and `max_turns` default to what the folder's ``canary.json`` says.
    """

    settings_file = CONFIG_FILE
    settings_keys = frozenset({"kind", "rot_separator", "max_turns", "max_source_len"})  # "kind": older folders

    def __init__(self, model: str | Path, rot_separator: str | None = None, max_new_tokens: int = 64,
                 **settings: Any):
        super().__init__(model, max_new_tokens=max_new_tokens, **settings)
        self.rot_separator = rot_separator
        self._label_ids: list[int] = []

    @property
    def separator(self) -> str:
        return self.rot_separator or ROT_SEP

    def _write_settings(self, path: Path) -> None:
        write_config(path, self.separator, self.max_turns, self.max_source_len)

    def _configure(self, saved: dict[str, Any]) -> None:
        super()._configure(saved)
        if self.rot_separator is None:
            self.rot_separator = saved.get("rot_separator", ROT_SEP)

    def _attach(self, model: Any, tokenizer: Any) -> None:
        ids = tokenizer.convert_tokens_to_ids([label.value for label in LABELS])
        if tokenizer.unk_token_id in ids or None in ids or len(set(ids)) != len(LABELS):
            raise ModelError(f"{self.model_dir} is not a Canary model: its tokenizer lacks the label tokens "
                             f"{[label.value for label in LABELS]} (train one with `prosocial train canary`)")
        super()._attach(model, tokenizer)
        self._label_ids = ids

    def label_scores(self, logits: torch.Tensor) -> list[dict[str, float]]:
        probs = logits[:, self._label_ids].float().softmax(dim=-1)
        return [{label.value: float(p) for label, p in zip(LABELS, row, strict=True)} for row in probs]

    def sources(self, contexts: Sequence[Sequence[str]]) -> list[str]:
        checked = [check_context(c, where=f"contexts[{i}]") for i, c in enumerate(contexts)]
        return [build_context(c, self.max_turns) for c in checked]

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        verdicts, _ = self.predict_raw(contexts, with_rots)
        return verdicts

    def predict_raw(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> tuple[list[Verdict], int]:
        """Verdicts and how many generations were malformed (each is also logged as a warning)."""
        from prosocial.lm.inference import first_token_logits, generate_texts

        sources = self.sources(contexts)
        model, tokenizer = self._ensure()
        if not sources:
            return [], 0
        if not with_rots:
            logits = first_token_logits(model, tokenizer, sources, self.batch_size, self.max_source_len)
            return [Verdict(SafetyLabel(max(s, key=s.get)), s) for s in self.label_scores(logits)], 0
        gen = generate_texts(model, tokenizer, sources, batch_size=self.batch_size,
                             max_source_len=self.max_source_len, max_new_tokens=self.max_new_tokens,
                             num_beams=self.num_beams, first_logits=True)
        verdicts, malformed = [], 0
        for text, scores in zip(gen.texts, self.label_scores(gen.first_logits), strict=True):
            verdict, ok = parse_canary(text, scores, self.separator)
            if not ok:
                malformed += 1
                log.warning("Canary generation has no leading label token (%r); using the top-scored label %s",
                            text[:120], verdict.safety_label.value)
            verdicts.append(verdict)
        return verdicts, malformed


def write_config(path: Path, separator: str, max_turns: int | None, max_source_len: int) -> None:
    """Name the backend of a trained folder and save its settings (``prosocial.json`` and ``canary.json``)."""
    write_backend(path, GenerativeCanary.name)
    write_model_config(path / CONFIG_FILE, {"rot_separator": separator, "max_turns": max_turns,
                                            "max_source_len": max_source_len})
