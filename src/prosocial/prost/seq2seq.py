"""The paper's Prost (§4.2, B.2): a fine-tuned seq2seq (or causal) LM that takes Speaker 2's turn.

Two variants, as in the paper:
- ``response``: p(u|c), the target is the reply;
- ``rot-response``: p(u, r|c), the target is the RoTs (joined by Canary's `ROT_SEP`), `RESPONSE_SEP`, then the
  reply: ``r1 __rot__ r2 __response__ reply``. Contexts without RoTs (casual data) train on the reply alone,
  as the paper does. Generations are split back at `RESPONSE_SEP`.

Given RoTs (gold ones for Table 3's last row, or Canary's): the rot-response model gets them as a forced start
of its output, so it writes only the reply after them, which is exactly p(u|r, c) under the trained model. The
response-only model was never shown RoTs, so they are appended to its input as a "Rules-of-thumb:" line
(zero-shot grounding, as in the paper's §6.2 prompts).

Mixture defaults: `PROST_WEIGHTS` (B.2: ProsocialDialog 9 and the six casual corpora; see mixture.py).

A saved folder: the model and tokenizer, ``prosocial.json`` naming this backend (``prost``, so
``load_generator(folder)`` finds it) and ``prost.json`` (the variant and context settings).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prosocial.canary.generative import ROT_SEP, split_rots
from prosocial.data.context import build_context, check_context
from prosocial.data.schema import Example
from prosocial.errors import ModelError
from prosocial.lm.hf_folder import HFModelFolder
from prosocial.model_folder import read_model_config, write_backend, write_model_config
from prosocial.prost.base import Reply, ResponseGenerator, register_generator

if TYPE_CHECKING:  # torch and transformers load only when a model does, so registering this backend is cheap
    from prosocial.lm.inference import Pair

log = logging.getLogger(__name__)

Variant = Literal["response", "rot-response"]
VARIANTS: tuple[str, ...] = ("response", "rot-response")
RESPONSE_SEP = "__response__"
PROST_TOKENS: tuple[str, ...] = (ROT_SEP, RESPONSE_SEP)
CONFIG_FILE = "prost.json"
ROTS_LINE = "Rules-of-thumb:"


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown Prost variant {variant!r}; expected one of {VARIANTS}")
    return variant


def _clean(rots: Sequence[str]) -> list[str]:
    return [r.strip() for r in rots if r.strip()]


def rot_prefix(rots: Sequence[str]) -> str:
    """The start of a rot-response target: the RoTs, then the response separator."""
    return f" {ROT_SEP} ".join(_clean(rots)) + f" {RESPONSE_SEP}"


def prost_source(context: Sequence[str], rots: Sequence[str] | None, variant: str, max_turns: int | None) -> str:
    source = build_context(context, max_turns)
    if variant == "response" and rots and _clean(rots):
        source += f"\n{ROTS_LINE} " + " ".join(_clean(rots))
    return source


def prost_target(response: str, rots: Sequence[str], variant: str) -> str:
    response = response.strip()
    if variant == "rot-response" and _clean(rots):
        return f"{rot_prefix(rots)} {response}"
    return response


def prost_pairs(examples: Sequence[Example], variant: str, max_turns: int | None = None) -> list[Pair]:
    """Training pairs from examples that have a reply (others, e.g. label-only rows, are skipped)."""
    _check_variant(variant)
    return [
        (prost_source(e.context, None, variant, max_turns), prost_target(e.response, e.rots, variant))
        for e in examples
        if e.response and e.response.strip()
    ]


def parse_prost(text: str) -> tuple[Reply, bool]:
    """A rot-response generation back into RoTs and reply, and whether it was well formed.

    No separator and no RoT separator: the whole text is the reply (the casual form). RoT separators without a
    response separator means the generation stopped inside the RoTs: the reply is empty (logged by the caller).
    """
    if RESPONSE_SEP in text:
        head, _, reply = text.partition(RESPONSE_SEP)
        return Reply(reply.replace(RESPONSE_SEP, " ").strip(), split_rots(head)), True
    if ROT_SEP in text:
        return Reply("", split_rots(text)), False
    return Reply(text.strip()), True


@register_generator("prost")
class Prost(HFModelFolder, ResponseGenerator):
    """Prost from a fine-tuned model folder (see `prosocial train prost`); weights load on first use.

    `variant` and `max_turns` default to what the folder's ``prost.json`` says.
    """

    settings_file = CONFIG_FILE
    settings_keys = frozenset({"kind", "variant", "max_turns", "max_source_len"})  # "kind": older folders

    def __init__(self, model: str | Path, variant: Variant | None = None, max_new_tokens: int = 128,
                 **settings: Any):
        super().__init__(model, max_new_tokens=max_new_tokens, **settings)
        if variant is None:  # a small JSON, no weights
            variant = read_model_config(self.model_dir / CONFIG_FILE, self.settings_keys).get("variant")
        self.variant = None if variant is None else _check_variant(variant)

    def _write_settings(self, path: Path) -> None:
        write_config(path, self.variant or "response", self.max_turns, self.max_source_len)

    def _configure(self, saved: dict[str, Any]) -> None:
        super()._configure(saved)
        self.variant = self.variant or _check_variant(saved.get("variant", "response"))

    def _attach(self, model: Any, tokenizer: Any) -> None:
        if self.variant == "rot-response" and tokenizer.convert_tokens_to_ids(RESPONSE_SEP) in (
            None, tokenizer.unk_token_id
        ):
            raise ModelError(f"{self.model_dir} is not a rot-response Prost: its tokenizer lacks {RESPONSE_SEP}")
        super()._attach(model, tokenizer)

    def _inputs(self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None):
        checked = [check_context(c, where=f"contexts[{i}]") for i, c in enumerate(contexts)]
        if rots is not None and len(rots) != len(checked):
            raise ValueError(f"{len(rots)} RoT lists for {len(checked)} contexts; give one list per context")
        given = [None] * len(checked) if rots is None else [_clean(r) for r in rots]
        return checked, given

    def sources(self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None) -> list[str]:
        checked, given = self._inputs(contexts, rots)
        self._ensure()
        return [prost_source(c, r, self.variant, self.max_turns) for c, r in zip(checked, given, strict=True)]

    def generate(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None
    ) -> list[Reply]:
        from prosocial.lm.inference import generate_texts

        model, tokenizer = self._ensure()
        _, given = self._inputs(contexts, rots)
        sources = self.sources(contexts, rots)
        if not sources:
            return []
        forced = self.variant == "rot-response" and rots is not None
        # a forced prefix only where RoTs were given; an empty list lets the model choose its own RoTs
        prefixes = [rot_prefix(r) if forced and r else "" for r in given]
        texts = generate_texts(model, tokenizer, sources, prefixes=prefixes if forced else None,
                               batch_size=self.batch_size, max_source_len=self.max_source_len,
                               max_new_tokens=self.max_new_tokens, num_beams=self.num_beams).texts
        replies = []
        for text, prefix, r in zip(texts, prefixes, given, strict=True):
            if self.variant == "response":
                replies.append(Reply(text.strip(), list(r or [])))
                continue
            reply, ok = parse_prost(text) if not prefix else (Reply(text.replace(RESPONSE_SEP, " ").strip()), True)
            if not ok:
                log.warning("Prost generation stopped before %s (%r); the reply is empty", RESPONSE_SEP, text[:120])
            if prefix:
                reply.rots = list(r)
            replies.append(reply)
        return replies

    def response_nlls(self, examples: Sequence[Example], gold_rots: bool = False) -> list[list[float]]:
        """Per-token NLLs of the gold responses: the full trained target for rot-response (RoTs, separator and
        reply), or with `gold_rots` the reply alone after the gold RoTs (teacher-forced, not scored)."""
        from prosocial.lm.inference import token_nlls

        model, tokenizer = self._ensure()
        contexts = [e.context for e in examples]
        if gold_rots and self.variant == "rot-response":
            sources = self.sources(contexts)
            targets = [" " + e.response.strip() for e in examples]
            prefixes = [rot_prefix(e.rots) for e in examples]
            return token_nlls(model, tokenizer, sources, targets, self.batch_size, self.max_source_len,
                              prefixes=prefixes)
        sources = self.sources(contexts, [e.rots for e in examples] if gold_rots else None)
        targets = [prost_target(e.response, e.rots, self.variant) for e in examples]
        return token_nlls(model, tokenizer, sources, targets, self.batch_size, self.max_source_len)


def write_config(path: Path, variant: str, max_turns: int | None, max_source_len: int) -> None:
    """Name the backend of a trained folder and save its settings (``prosocial.json`` and ``prost.json``)."""
    write_backend(path, Prost.name)
    write_model_config(path / CONFIG_FILE, {"variant": _check_variant(variant), "max_turns": max_turns,
                                            "max_source_len": max_source_len})
