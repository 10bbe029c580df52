"""The generator interface: dialogue contexts (optionally with RoTs) in, replies (and produced RoTs) out.

`load_generator` takes a registry name or a saved model folder, whose ``prosocial.json`` names the backend
(`prosocial.model_folder`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from prosocial.registry import Registry


@dataclass
class Reply:
    response: str
    #: RoTs the generator produced (RoT & Response variant) or was given; empty otherwise.
    rots: list[str] = field(default_factory=list)


class ResponseGenerator(ABC):
    """Replies to dialogue contexts (lists of utterances, oldest first; the last is the user's).

    `rots`, when given, holds one list of RoTs per context to ground the reply in (e.g. Canary's).
    """

    name: ClassVar[str] = ""
    #: Greedy replies are the same batched as one at a time. False where batching may flip a near-tie between two
    #: tokens (llama.cpp's CPU kernels round differently for different batch shapes); each reply still belongs to
    #: its own context.
    batch_invariant: ClassVar[bool] = True

    @abstractmethod
    def generate(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None
    ) -> list[Reply]: ...

    def respond(self, context: Sequence[str], rots: Sequence[str] | None = None) -> Reply:
        return self.generate([context], None if rots is None else [rots])[0]


#: Built-in backends are imported on first use, so `import prosocial.prost` stays light.
GENERATORS: Registry[ResponseGenerator] = Registry("generator", {
    "prost-mini": "prosocial.prost.mini",
    "prost": "prosocial.prost.seq2seq",
    "canned": "prosocial.prost.canned",
    "steered": "prosocial.steer.steered",
})
register_generator = GENERATORS.register
#: Folders saved before ``prosocial.json``, known by the file their backend wrote (a bare Hugging Face folder is
#: a fine-tuned Prost, as `prosocial eval prost` always took it).
LEGACY_FOLDERS = (("prost.json", "prost"), ("prost-mini.json", "prost-mini"), ("config.json", "prost"))


def load_generator(name: str | Path = "prost-mini", **settings) -> ResponseGenerator:
    """A generator by registry name (e.g. "prost-mini", "prost", "steered", "canned") with its settings, or from a
    saved model folder (whose ``prosocial.json`` names its backend)."""
    return GENERATORS.load(name, LEGACY_FOLDERS, **settings)
