"""The learned situation–rule matcher for norms: a sentence encoder fine-tuned to put a situation near the rules
that apply to it (`prosocial train norm-matcher`, `prosocial.canary.norm_matcher_train`).

The prototype matcher's stock MiniLM puts texts near others on the same *topic* ("I traded my sword for his
shield" near a rule about selling accounts for money); a bi-encoder trained on (situation, rule) pairs, with rules
on the same topic that do not apply as negatives, learns the *act* a rule is about (issue #35). It is a drop-in
replacement: `NormBank(norms, matcher=folder)` (or `NormedDetector(..., matcher=folder)`, `prosocial norms test
--matcher folder`) builds the same prototypes from its vectors, so counter-examples, thresholds and calibration
work unchanged. Calibrated thresholds are kept per matcher id, as one matcher's scores mean nothing to another.

A matcher folder:

    matcher.json   {"kind": "bi-encoder", "id": …, "max_length": …, "min_similarity": …, "meta": {…}}
    encoder/       a transformers encoder and its tokenizer (mean pooling, L2-normalised; fp16 on disk)

Its `id` is "bi-encoder-" and the start of its weights' SHA-256, so a matcher retrained into the same folder is a
new matcher: thresholds calibrated for the old one are not applied to it, and cached embeddings are not reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary.rotbank import Embedder
from prosocial.errors import ModelError
from prosocial.model_folder import read_model_config, resolve_model_dir, write_model_config

MATCHER_FILE = "matcher.json"
ENCODER = "encoder"
KIND = "bi-encoder"
KNOWN = ("kind", "id", "max_length", "min_similarity", "meta")


@dataclass
class LearnedMatcher:
    """A trained matcher folder, as `prosocial.canary.norms` uses a matcher (see `PrototypeMatcher`)."""

    folder: Path
    id: str
    min_similarity: float
    max_length: int = 128
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> LearnedMatcher:
        """The matcher in `folder`; a missing file or a bad setting is a `ModelError` naming it."""
        folder = resolve_model_dir(folder, [MATCHER_FILE, f"{ENCODER}/config.json"])
        settings = read_model_config(folder / MATCHER_FILE, KNOWN)
        if settings.get("kind") != KIND:
            raise ModelError(f"{folder / MATCHER_FILE}: kind must be {KIND!r}, got {settings.get('kind')!r}")
        threshold = settings.get("min_similarity")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not -1 <= threshold <= 1:
            raise ModelError(f"{folder / MATCHER_FILE}: min_similarity must be a number from -1 to 1")
        if not isinstance(settings.get("id"), str) or not settings["id"]:
            raise ModelError(f"{folder / MATCHER_FILE}: id must be a non-empty string")
        return cls(folder, settings["id"], float(threshold), int(settings.get("max_length", 128)),
                   settings.get("meta") or {})

    @cached_property
    def _embedder(self) -> Embedder:
        # fp16 on disk, read as float32 (half precision is slow on CPUs and not needed to rank); ONNX Runtime runs it
        return Embedder(self.folder / ENCODER, max_length=self.max_length)

    @property
    def cache_key(self) -> str:
        return self.id

    def encode(self, texts) -> np.ndarray:
        return self._embedder.encode(list(texts))


def save_matcher(out: str | Path, tokenizer, encoder, min_similarity: float, max_length: int,
                 meta: dict[str, Any]) -> LearnedMatcher:
    """Write a matcher folder: into a hidden folder beside `out`, renamed over it only when complete, so a killed
    run never leaves a half-written matcher where a service would load it. A folder at `out` that is not a matcher
    is not replaced."""
    import torch

    out = Path(out)
    if out.exists() and not (out / MATCHER_FILE).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out} exists and is not a norm matcher folder; give another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    encoder.to(torch.float16).save_pretrained(partial / ENCODER)
    encoder.to(torch.float32)
    tokenizer.save_pretrained(partial / ENCODER)
    digest = hashlib.sha256()
    for file in sorted((partial / ENCODER).glob("*.safetensors")):
        digest.update(file.read_bytes())
    identifier = f"{KIND}-{digest.hexdigest()[:12]}"
    write_model_config(partial / MATCHER_FILE, {"kind": KIND, "id": identifier, "max_length": max_length,
                                                "min_similarity": round(float(min_similarity), 3), "meta": meta})
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)
    return LearnedMatcher.load(out)
