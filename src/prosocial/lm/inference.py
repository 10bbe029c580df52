"""Loading, encoding, scoring and generation for any Hugging Face seq2seq or causal LM.

What the model-folder backends (`lm.hf_folder`, the generative Canary, Prost) run at inference time, and what the
training loop (`lm.finetune`) encodes and scores with, so serving never imports the trainer.

Conventions shared by training, scoring and generation, so a model is always fed what it was trained on:
- sources are truncated from the LEFT (the newest turns of a dialogue survive), targets from the right;
- seq2seq: the target is tokenised without special tokens and ends with EOS;
- causal: the sequence is source tokens (with the tokenizer's own BOS, if any) then target tokens then EOS; the
  loss covers the target part only, and generation continues a left-padded source.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prosocial.errors import ModelError

Pair = tuple[str, str]
"""A (source, target) text pair: one training or scoring example."""


# --------------------------------------------------------------------------- models and tokens


def is_seq2seq(model: Any) -> bool:
    """Whether `model` is an encoder-decoder; a DDP wrapper (multi-process training) holds it in `.module`."""
    return bool(getattr(getattr(model, "module", model).config, "is_encoder_decoder", False))


def load_model(name_or_path: str | Path, device: str | torch.device | None = None) -> tuple[Any, Any]:
    """A seq2seq or causal model (chosen by its config) and its tokenizer; a bad path is a `ModelError`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name_or_path)
        cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = cls.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"cannot load a Hugging Face model from {name_or_path}: {error}") from error
    prepare_tokenizer(tokenizer)
    if device is not None:
        model.to(device)
    return model, tokenizer


def resolve_device(device: str) -> str:
    """"auto" means CUDA when there is one; asking for CUDA without one is an error, not a silent CPU run."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but no CUDA device is available")
    return device


def prepare_tokenizer(tokenizer: Any) -> None:
    """Causal tokenizers often have no pad token; EOS serves, since padding is masked everywhere."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelError("the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token


def add_special_tokens(model: Any, tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    """Add `tokens` as special (never split) tokens and grow the embeddings only when they do not fit.

    T5 checkpoints have spare embedding rows beyond the tokenizer, so shrinking to len(tokenizer) would be wrong.
    `lstrip` folds the space before a token into it, so byte-level BPEs spend no lone-space token on it.
    """
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(t, lstrip=True, normalized=False, special=True) for t in tokens])
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(list(tokens))


def _device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def _truncation_side(tokenizer: Any, side: str) -> Iterator[None]:
    old = tokenizer.truncation_side
    tokenizer.truncation_side = side
    try:
        yield
    finally:
        tokenizer.truncation_side = old


def _source_ids(tokenizer: Any, sources: Sequence[str], max_len: int) -> list[list[int]]:
    """Left-truncated source ids with the tokenizer's own special tokens kept."""
    with _truncation_side(tokenizer, "left"):
        return tokenizer(list(sources), truncation=True, max_length=max_len)["input_ids"]


def _target_ids(tokenizer: Any, targets: Sequence[str], max_len: int, eos: bool = True) -> list[list[int]]:
    ids = tokenizer(list(targets), add_special_tokens=False)["input_ids"]
    if not eos:
        return [x[:max_len] for x in ids]
    return [x[: max_len - 1] + [tokenizer.eos_token_id] for x in ids]


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([[value] * (width - len(r)) + list(r) if left else list(r) + [value] * (width - len(r))
                         for r in rows])


def encode_pairs(
    tokenizer: Any,
    seq2seq: bool,
    sources: Sequence[str],
    targets: Sequence[str],
    max_source_len: int,
    max_target_len: int,
    prefixes: Sequence[str] | None = None,
    decoder_start: int | None = None,
) -> dict[str, torch.Tensor]:
    """A training/scoring batch. `prefixes` are target beginnings that are teacher-forced but not scored (-100).

    A prefix should end with a special token, and the rest of the target keep the space it has in the full text,
    so that tokenising the two apart matches tokenising the whole target as in training.
    `decoder_start` is the seq2seq model's decoder start token (pad, as for T5, when None).
    """
    src = _source_ids(tokenizer, sources, max_source_len)
    tgt = _target_ids(tokenizer, targets, max_target_len)
    pre = [[] for _ in tgt] if prefixes is None else _target_ids(tokenizer, prefixes, max_target_len, eos=False)
    pad = tokenizer.pad_token_id
    if seq2seq:
        labels = [p + t for p, t in zip(pre, tgt, strict=True)]
        masked = [[-100] * len(p) + t for p, t in zip(pre, tgt, strict=True)]
        input_ids = _pad(src, pad)
        return {
            "input_ids": input_ids,
            "attention_mask": _pad([[1] * len(s) for s in src], 0),
            "decoder_input_ids": _shift_right(_pad(labels, pad), pad if decoder_start is None else decoder_start),
            "labels": _pad(masked, -100),
        }
    rows = [s + p + t for s, p, t in zip(src, pre, tgt, strict=True)]
    masked = [[-100] * (len(s) + len(p)) + t for s, p, t in zip(src, pre, tgt, strict=True)]
    return {
        "input_ids": _pad(rows, pad),
        "attention_mask": _pad([[1] * len(r) for r in rows], 0),
        "labels": _pad(masked, -100),
    }


def _shift_right(labels: torch.Tensor, start: int) -> torch.Tensor:
    """Decoder inputs: the decoder start token, then the labels shifted by one (pad where labels are padding)."""
    return torch.cat([torch.full_like(labels[:, :1], start), labels[:, :-1]], dim=1)


def _decoder_start(model: Any, tokenizer: Any) -> int:
    start = getattr(model.generation_config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(model.config, "decoder_start_token_id", None)
    return tokenizer.pad_token_id if start is None else start


def logits_and_labels(model: Any, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned (logits, labels): position i's logits predict labels[i]."""
    labels = batch["labels"]
    if is_seq2seq(model):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=batch["decoder_input_ids"])
        return out.logits, labels
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits[:, :-1], labels[:, 1:]


def batch_for(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    targets: Sequence[str],
    max_source_len: int,
    max_target_len: int,
    prefixes: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """`encode_pairs` for this model (its kind and decoder start token), on its device."""
    seq2seq = is_seq2seq(model)
    start = _decoder_start(model, tokenizer) if seq2seq else None  # e.g. EOS for BART, pad for T5
    batch = encode_pairs(tokenizer, seq2seq, sources, targets, max_source_len, max_target_len, prefixes, start)
    device = _device_of(model)
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def token_nlls(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    targets: Sequence[str],
    batch_size: int = 16,
    max_source_len: int = 512,
    max_target_len: int = 128,
    prefixes: Sequence[str] | None = None,
) -> list[list[float]]:
    """Per-token NLL (nats) of each target given its source, teacher-forced, EOS included (as ParlAI scores).

    Feed the result to `prosocial.scoring.perplexity`. With `prefixes`, those target beginnings are given
    to the model but not scored (e.g. the gold RoTs before a response).
    """
    if len(sources) != len(targets) or (prefixes is not None and len(prefixes) != len(targets)):
        raise ValueError("sources, targets (and prefixes) must pair up one to one")
    was_training = model.training
    model.eval()
    out: list[list[float]] = []
    try:
        for i in range(0, len(sources), batch_size):
            batch = batch_for(model, tokenizer, sources[i : i + batch_size], targets[i : i + batch_size],
                               max_source_len, max_target_len,
                               None if prefixes is None else prefixes[i : i + batch_size])
            logits, labels = logits_and_labels(model, batch)
            nll = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
            for row, mask in zip(nll, labels != -100, strict=True):
                out.append(row[mask].tolist())
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- generation


@dataclass
class Generation:
    """Decoded continuations (special tokens other than pad/EOS/BOS kept) and the first step's raw logits."""

    texts: list[str]
    first_logits: torch.Tensor | None = None


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    drop = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}
    kept = [i for i in ids if i not in drop]
    return tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()


def _cut_at_eos(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    ids = list(ids)
    return ids[: ids.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in ids else ids


@torch.no_grad()
def generate_texts(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    prefixes: Sequence[str] | None = None,
    batch_size: int = 16,
    max_source_len: int = 512,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    first_logits: bool = False,
) -> Generation:
    """Greedy (or beam) continuations of each source, after a forced target `prefix` when given.

    Seq2seq decoder prefixes cannot be padded, so prefixed examples are batched by prefix length. With
    `first_logits`, the raw logits of the first generated position come back too (one pass for both).
    """
    seq2seq = is_seq2seq(model)
    pad = tokenizer.pad_token_id
    device = _device_of(model)
    pre_ids = (_target_ids(tokenizer, prefixes, 10**6, eos=False) if prefixes is not None
               else [[] for _ in sources])
    order = sorted(range(len(sources)), key=lambda i: len(pre_ids[i])) if seq2seq else list(range(len(sources)))
    texts: list[str] = [""] * len(sources)
    logits_rows: list[torch.Tensor | None] = [None] * len(sources)
    was_training = model.training
    model.eval()
    try:
        chunks: list[list[int]] = []
        for i in order:
            if chunks and len(chunks[-1]) < batch_size and (
                not seq2seq or len(pre_ids[chunks[-1][0]]) == len(pre_ids[i])
            ):
                chunks[-1].append(i)
            else:
                chunks.append([i])
        for chunk in chunks:
            src = _source_ids(tokenizer, [sources[i] for i in chunk], max_source_len)
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": False,
                "pad_token_id": pad, "return_dict_in_generate": True, "output_logits": first_logits,
            }
            if seq2seq:
                input_ids = _pad(src, pad).to(device)
                mask = _pad([[1] * len(s) for s in src], 0).to(device)
                start = _decoder_start(model, tokenizer)
                dec = torch.tensor([[start] + pre_ids[i] for i in chunk], device=device)
                out = model.generate(input_ids=input_ids, attention_mask=mask, decoder_input_ids=dec, **kwargs)
                new = out.sequences[:, dec.size(1):]
            else:
                rows = [s + pre_ids[i] for s, i in zip(src, chunk, strict=True)]
                input_ids = _pad(rows, pad, left=True).to(device)
                mask = _pad([[1] * len(r) for r in rows], 0, left=True).to(device)
                out = model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
                new = out.sequences[:, input_ids.size(1):]
            for row, i in enumerate(chunk):
                texts[i] = _decode(tokenizer, _cut_at_eos(tokenizer, new[row].tolist()))
                if first_logits:
                    logits_rows[i] = out.logits[0][row].float().cpu()
    finally:
        model.train(was_training)
    return Generation(texts, torch.stack(logits_rows) if first_logits and sources else None)


@torch.no_grad()
def first_token_logits(model: Any, tokenizer: Any, sources: Sequence[str], batch_size: int = 16,
                       max_source_len: int = 512) -> torch.Tensor:
    """Raw logits of the first target token for each source, in one forward pass per batch (no generation)."""
    seq2seq = is_seq2seq(model)
    pad = tokenizer.pad_token_id
    device = _device_of(model)
    rows: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(sources), batch_size):
            src = _source_ids(tokenizer, sources[i : i + batch_size], max_source_len)
            mask = _pad([[1] * len(s) for s in src], 0, left=not seq2seq).to(device)
            input_ids = _pad(src, pad, left=not seq2seq).to(device)
            if seq2seq:
                dec = torch.full((len(src), 1), _decoder_start(model, tokenizer), device=device)
                logits = model(input_ids=input_ids, attention_mask=mask, decoder_input_ids=dec).logits[:, 0]
            else:
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, -1]
            rows.append(logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(rows) if rows else torch.empty(0)
