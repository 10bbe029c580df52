"""The generator interface: dialogue contexts (optionally with RoTs) in, replies (and produced RoTs) out."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from prosocial.errors import ModelError


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

    @abstractmethod
    def generate(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None
    ) -> list[Reply]: ...

    def respond(self, context: Sequence[str], rots: Sequence[str] | None = None) -> Reply:
        return self.generate([context], None if rots is None else [rots])[0]


GENERATORS: dict[str, Callable[..., ResponseGenerator]] = {}


def register_generator(name: str) -> Callable[[type[ResponseGenerator]], type[ResponseGenerator]]:
    def add(cls: type[ResponseGenerator]) -> type[ResponseGenerator]:
        cls.name = name
        GENERATORS[name] = cls
        return cls

    return add


#: Built-in backends by module, imported on first use so `import prosocial.prost` stays light.
_BUILTIN = {
    "prost-mini": "prosocial.prost.mini",
    "prost": "prosocial.prost.seq2seq",
    "canned": "prosocial.prost.canned",
    "steered": "prosocial.steer.steered",
}


def load_generator(name: str = "prost-mini", **settings) -> ResponseGenerator:
    """A generator by registry name (e.g. "prost-mini", "prost", "steered", "canned") with its settings."""
    if name not in GENERATORS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in GENERATORS:
        raise ModelError(f"unknown generator backend {name!r}; known: {sorted(set(GENERATORS) | set(_BUILTIN))}")
    return GENERATORS[name](**settings)
