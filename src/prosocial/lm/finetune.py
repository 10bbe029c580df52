"""MLE fine-tuning of any Hugging Face seq2seq or causal LM on (source, target) text pairs, and its scoring helpers.

This is the training loop behind the paper's Canary (T5-large, §4.1/B.1) and Prost (BlenderBot-size, §4.2/B.2):
the same code runs a tiny model on 2 CPU cores in the tests and a T5-large on one or more GPUs (through
`accelerate`; launch with `accelerate launch` for several). Pairs come from a weighted `MixtureSampler`, so the
paper's multi-task weights apply directly.

Conventions shared by training, scoring and generation, so a model is always fed what it was trained on:
- sources are truncated from the LEFT (the newest turns of a dialogue survive), targets from the right;
- seq2seq: the target is tokenised without special tokens and ends with EOS;
- causal: the sequence is source tokens (with the tokenizer's own BOS, if any) then target tokens then EOS; the
  loss covers the target part only, and generation continues a left-padded source.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prosocial.data.mixture import MixtureSampler
from prosocial.errors import ModelError
from prosocial.io import atomic_write
from prosocial.scoring import perplexity

log = logging.getLogger(__name__)

Pair = tuple[str, str]
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults follow the paper (Adam, lr 1e-5, early stopping on dev perplexity).

    `max_steps` wins over `epochs`; one epoch is as many draws as the mixture's sources hold items. Steps count
    optimizer updates, i.e. `batch_size * grad_accum` pairs per process. `plateau_factor` < 1 multiplies the
    learning rate after each dev evaluation that does not improve perplexity (Prost's B.2 schedule).
    """

    lr: float = 1e-5
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None
    epochs: float = 1.0
    warmup_steps: int = 100
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_source_len: int = 512
    max_target_len: int = 128
    eval_every: int = 500
    eval_batch_size: int = 16
    patience: int | None = 5
    plateau_factor: float = 1.0
    seed: int = 0
    lora_rank: int | None = None
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None
    device: str = "auto"
    mixed_precision: str = "no"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("give max_steps or a positive number of epochs")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if not 0 < self.plateau_factor <= 1:
            raise ValueError("plateau_factor must be in (0, 1]")


@dataclass
class TrainResult:
    """What a run did: where the final model is, how far it went, and the dev perplexity history. Under a
    multi-process launch only the main process (`main`) should write or report anything else."""

    model_dir: Path
    steps: int
    best_dev_perplexity: float | None
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    main: bool = True


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


def _logits_and_labels(model: Any, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned (logits, labels): position i's logits predict labels[i]."""
    labels = batch["labels"]
    if is_seq2seq(model):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=batch["decoder_input_ids"])
        return out.logits, labels
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits[:, :-1], labels[:, 1:]


def _batch_for(model: Any, tokenizer: Any, sources, targets, max_source_len, max_target_len, prefixes=None):
    seq2seq = is_seq2seq(model)
    start = _decoder_start(model, tokenizer) if seq2seq else None  # e.g. EOS for BART, pad for T5
    batch = encode_pairs(tokenizer, seq2seq, sources, targets, max_source_len, max_target_len, prefixes, start)
    device = _device_of(model)
    return {k: v.to(device) for k, v in batch.items()}


def mle_loss(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean token NLL of the unmasked target tokens."""
    logits, labels = _logits_and_labels(model, batch)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


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

    Feed the result to `prosocial.eval.metrics.perplexity`. With `prefixes`, those target beginnings are given
    to the model but not scored (e.g. the gold RoTs before a response).
    """
    if len(sources) != len(targets) or (prefixes is not None and len(prefixes) != len(targets)):
        raise ValueError("sources, targets (and prefixes) must pair up one to one")
    was_training = model.training
    model.eval()
    out: list[list[float]] = []
    try:
        for i in range(0, len(sources), batch_size):
            batch = _batch_for(model, tokenizer, sources[i : i + batch_size], targets[i : i + batch_size],
                               max_source_len, max_target_len,
                               None if prefixes is None else prefixes[i : i + batch_size])
            logits, labels = _logits_and_labels(model, batch)
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


# --------------------------------------------------------------------------- training


def _apply_lora(model: Any, config: TrainConfig, new_token_ids: Sequence[int]) -> Any:
    """Wrap in LoRA adapters; newly added tokens' embedding rows stay trainable, or they could never be learnt."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets or "all-linear",
        task_type=TaskType.SEQ_2_SEQ_LM if is_seq2seq(model) else TaskType.CAUSAL_LM,
        trainable_token_indices=list(new_token_ids) or None,
    )
    return get_peft_model(model, lora)


def _save_model(model: Any, tokenizer: Any, path: Path, merge: bool, state_dict: dict | None = None) -> None:
    """A plain `save_pretrained` folder; LoRA adapters are merged into a copy so any loader can read it.
    `state_dict` holds the full weights when the model's own are shards (FSDP)."""
    path.mkdir(parents=True, exist_ok=True)
    if merge:
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(path, state_dict=state_dict)
    tokenizer.save_pretrained(path)


def _steps_for(config: TrainConfig, items: int, processes: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum * processes
    return max(1, math.ceil(config.epochs * items / per_step))


def _accelerator(config: TrainConfig):
    from accelerate import Accelerator

    if config.device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA device is available")
    return Accelerator(
        cpu=config.device == "cpu",
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=config.mixed_precision,
    )


def finetune(
    model: str | Path | Any,
    train: MixtureSampler[Pair] | Sequence[Pair],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    tokenizer: Any = None,
    dev: Sequence[Pair] | None = None,
    new_tokens: Sequence[str] = (),
    resume: bool = False,
) -> TrainResult:
    """Fine-tune `model` (hub id, folder, or a loaded model with its `tokenizer`) on `train` pairs by MLE.

    The best model by dev perplexity (the last one without `dev`) is saved to `out_dir` with `save_pretrained`;
    `out_dir/checkpoint` holds the latest resumable state (model, optimizer, scheduler, RNG, step, mixture
    position), written at every evaluation and at the end. With `resume`, training continues from it.
    `new_tokens` are added as special tokens first (Canary's safety labels, the RoT separators).
    """
    from accelerate.utils import DistributedType

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    ckpt = out_dir / CHECKPOINT_DIR
    if resume and not (ckpt / STATE_FILE).is_file():
        raise ModelError(f"nothing to resume: no {STATE_FILE} in {ckpt}")
    if isinstance(model, str | Path):
        model, tokenizer = load_model(model)
    elif tokenizer is None:
        raise ValueError("pass the tokenizer with a loaded model")
    prepare_tokenizer(tokenizer)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    new_ids = add_special_tokens(model, tokenizer, new_tokens) if new_tokens else []
    lora = config.lora_rank is not None
    if lora:
        model = _apply_lora(model, config, new_ids)

    sampler = train if isinstance(train, MixtureSampler) else MixtureSampler({"train": train}, {"train": 1},
                                                                             seed=config.seed)
    accelerator = _accelerator(config)
    sharded = accelerator.distributed_type == DistributedType.FSDP
    if sharded and lora:
        raise ModelError("LoRA cannot be merged from FSDP shards; train LoRA with DDP or DeepSpeed ZeRO-2")
    max_steps = _steps_for(config, sum(len(s) for s in sampler.sources.values()), accelerator.num_processes)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(0, config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    state = {"step": 0, "best": None, "bad_evals": 0, "history": [], "stopped_early": False}
    if resume:
        accelerator.load_state(str(ckpt / "state"))
        state = json.loads((ckpt / STATE_FILE).read_text())
        log.info("resuming from step %d", state["step"])

    per_update = config.batch_size * accelerator.num_processes
    draws = islice(iter(sampler), state["step"] * config.grad_accum * per_update, None)
    unwrapped = accelerator.unwrap_model(model)

    def evaluate() -> float:
        return perplexity(token_nlls(unwrapped, tokenizer, [s for s, _ in dev], [t for _, t in dev],
                                     config.eval_batch_size, config.max_source_len, config.max_target_len))

    def save(path: Path, merge: bool) -> None:
        """Save from the main process only; FSDP shards are first gathered, which every process takes part in."""
        weights = accelerator.get_state_dict(model) if sharded else None
        if accelerator.is_main_process:
            _save_model(unwrapped, tokenizer, path, merge, weights)

    def checkpoint() -> None:
        save(ckpt, merge=False)
        accelerator.save_state(str(ckpt / "state"))
        if accelerator.is_main_process:
            with atomic_write(ckpt / STATE_FILE) as handle:
                json.dump({**state, "config": asdict(config)}, handle, indent=2)

    def dev_check() -> bool:
        """Evaluate, keep the best model, and say whether patience has run out."""
        ppl = evaluate()
        state["history"].append({"step": state["step"], "dev_perplexity": ppl})
        if state["best"] is None or ppl < state["best"]:
            state["best"], state["bad_evals"] = ppl, 0
            save(out_dir, merge=lora)
        else:
            state["bad_evals"] += 1
            scheduler.base_lrs = [lr * config.plateau_factor for lr in scheduler.base_lrs]
        log.info("step %d: dev perplexity %.3f (best %.3f)", state["step"], ppl, state["best"])
        return config.patience is not None and state["bad_evals"] >= config.patience

    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps, initial=state["step"], desc="fine-tuning", unit="step",
               disable=not (config.progress and accelerator.is_main_process))
    model.train()
    rank = accelerator.process_index
    while state["step"] < max_steps and not state["stopped_early"]:
        for _ in range(config.grad_accum):
            pairs = [pair for _, pair in islice(draws, per_update)][rank * config.batch_size:][: config.batch_size]
            batch = _batch_for(unwrapped, tokenizer, [s for s, _ in pairs], [t for _, t in pairs],
                               config.max_source_len, config.max_target_len)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(model), accelerator.autocast():
                loss = mle_loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)  # FSDP swaps them
                optimizer.step()
                optimizer.zero_grad()
        scheduler.step()
        state["step"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        at_eval = bool(dev) and (state["step"] % config.eval_every == 0 or state["step"] == max_steps)
        if at_eval:
            state["stopped_early"] = dev_check()
            checkpoint()
    bar.close()
    if not dev:
        save(out_dir, merge=lora)
        checkpoint()
    accelerator.wait_for_everyone()
    return TrainResult(out_dir, state["step"], state["best"], state["stopped_early"],
                       [dict(h) for h in state["history"]], accelerator.is_main_process)
