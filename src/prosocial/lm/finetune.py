"""MLE fine-tuning of any Hugging Face seq2seq or causal LM on (source, target) text pairs.

This is the training loop behind the paper's Canary (T5-large, §4.1/B.1) and Prost (BlenderBot-size, §4.2/B.2):
the same code runs a tiny model on 2 CPU cores in the tests and a T5-large on one or more GPUs (through
`accelerate`; launch with `accelerate launch` for several). Pairs come from a weighted `MixtureSampler`, so the
paper's multi-task weights apply directly.

Batches are encoded and dev perplexity scored by `lm.inference`, with the conventions it states, so a model is
always fed at inference what it was trained on.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from prosocial.data.mixture import MixtureSampler
from prosocial.errors import ModelError
from prosocial.io import atomic_write
from prosocial.lm.inference import (
    Pair,
    add_special_tokens,
    batch_for,
    is_seq2seq,
    load_model,
    logits_and_labels,
    prepare_tokenizer,
    token_nlls,
)
from prosocial.scoring import perplexity

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults follow the paper (Adam, lr 1e-5, early stopping on dev perplexity).

    `max_steps` wins over `epochs`; one epoch is as many draws as the mixture's sources hold items. Steps count
    optimizer updates, i.e. `batch_size * grad_accum` pairs per process. `plateau_factor` < 1 multiplies the
    learning rate after each dev evaluation that does not improve perplexity (Prost's B.2 schedule). `decay`
    "linear" takes the learning rate from its peak after warm-up down to zero at the last step, so the final model
    is not one noisy iterate of a constant-rate run.
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
    decay: str = "constant"
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
        if self.decay not in ("constant", "linear"):
            raise ValueError(f"decay must be constant or linear, got {self.decay!r}")


def _lr_factor(warmup: int, max_steps: int, decay: str, step: int) -> float:
    """The learning rate's share of its peak at `step`: a linear warm-up, then constant or down to 0 at the end."""
    rise = min(1.0, (step + 1) / (warmup + 1))
    if decay == "constant" or step < warmup:
        return rise
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup))


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


def mle_loss(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean token NLL of the unmasked target tokens."""
    logits, labels = logits_and_labels(model, batch)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)



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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_lr_factor, warmup, max_steps, config.decay))
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
            batch = batch_for(unwrapped, tokenizer, [s for s, _ in pairs], [t for _, t in pairs],
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
