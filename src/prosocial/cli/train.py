"""`prosocial train canary|prost`: the paper's fine-tuning recipes (B.1, B.2) on any ProsocialDialog files.

The defaults are the paper's: lr 1e-5, early stopping on dev perplexity, the B.1/B.2 mixture weights with the
casual corpora read from the shared data folder (`prosocial.data.adapters`). Give a T5-large or BlenderBot
checkpoint and a GPU for the paper's models; `accelerate launch -m prosocial.cli.train ...` spreads it over
several GPUs. At the end the Table 2 / Table 3 columns are printed for the dev data.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prosocial.cli.errors import fail
from prosocial.data.mixture import CANARY_WEIGHTS, PROST_WEIGHTS, MixtureSampler
from prosocial.errors import DataError, ModelError
from prosocial.lm.finetune import TrainConfig, TrainResult, finetune
from prosocial.lm.inference import Pair
from prosocial.lm.recipe import PROSOCIAL, pretrain, read_split, training_sources

app = typer.Typer(help="Fine-tune Canary and Prost with the paper's recipes.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

# Options shared by both commands.
MODEL = typer.Option(..., "--model", help="Hugging Face hub id or local folder to start from.")
DATA = typer.Option(..., "--data", help="ProsocialDialog training file(s), any supported format.")
DEV = typer.Option(None, "--dev", help="Dev file(s); without, --dev-fraction of the dialogues is held out.")
DEV_FRACTION = typer.Option(0.05, help="Share of training dialogues held out as dev when no --dev is given.")
OUT = typer.Option(..., "--out", help="Output folder: the best model, and checkpoint/ for --resume.")
CASUAL_ROOT = typer.Option(None, help="Shared data folder holding casual/<corpus> (default: adapters' default).")
CASUAL_LIMIT = typer.Option(None, help="Read at most this many examples per casual corpus.")
NO_CASUAL = typer.Option(False, "--no-casual", help="Train on ProsocialDialog alone.")
MAX_STEPS = typer.Option(None, help="Optimizer updates (wins over --epochs).")
EPOCHS = typer.Option(1.0, help="Epochs over the mixture when --max-steps is not given.")
BATCH = typer.Option(8, help="Pairs per device per micro-batch.")
ACCUM = typer.Option(1, help="Gradient accumulation micro-batches per update.")
LR = typer.Option(1e-5, help="Adam learning rate (the paper's 1e-5).")
EVAL_EVERY = typer.Option(500, help="Evaluate dev perplexity and checkpoint every N updates.")
PATIENCE = typer.Option(5, help="Stop after this many evaluations without a better dev perplexity.")
MAX_SOURCE = typer.Option(512, help="Source tokens kept (the newest: truncated from the left).")
MAX_TARGET = typer.Option(128, help="Target tokens kept.")
MAX_TURNS = typer.Option(None, help="Keep only the last N utterances of each context.")
SEED = typer.Option(0)
LORA_RANK = typer.Option(None, help="Train LoRA adapters of this rank instead of all weights.")
LORA_ALPHA = typer.Option(16)
LORA_TARGETS = typer.Option(None, help="Comma-separated module names for LoRA (default: all linear layers).")
DEVICE = typer.Option("auto", help="auto (CUDA when available), cuda or cpu.")
PRECISION = typer.Option("no", help="accelerate mixed precision: no, fp16 or bf16.")
RESUME = typer.Option(False, "--resume", help="Continue from OUT/checkpoint.")
LIMIT = typer.Option(None, help="Use only the first N training examples (smoke runs).")
EVAL_LIMIT = typer.Option(500, help="Dev examples for the final table (generation is slow).")
NO_PROGRESS = typer.Option(False, "--no-progress", help="No progress bar.")



def parse_weights(text: str | None, default: dict[str, float]) -> dict[str, float]:
    """"prosocial=4,dailydialog=1" → {"prosocial": 4.0, "dailydialog": 1.0}; None gives `default`."""
    if not text:
        return dict(default)
    weights = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected name=weight pairs separated by commas, got {item!r}")
    if PROSOCIAL not in weights:
        raise typer.BadParameter(f"the weights must include {PROSOCIAL!r}, got {sorted(weights)}")
    return weights


def _config(**kw) -> TrainConfig:
    targets = kw.pop("lora_targets")
    return TrainConfig(lora_targets=[t.strip() for t in targets.split(",")] if targets else None, **kw)


def _mixture(sources: dict[str, list[Pair]], weights: dict[str, float], seed: int) -> MixtureSampler[Pair]:
    sampler = MixtureSampler(sources, weights, seed=seed)  # sources without pairs are left out
    console.print("mixture: " + ", ".join(f"{n}={weights[n]:g} ({len(p):,} pairs)" for n, p in sampler.sources.items()))
    return sampler


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def _print_saved(out: Path, result: TrainResult) -> None:
    best = f"; best dev perplexity {result.best_dev_perplexity:.3f}" if result.best_dev_perplexity else ""
    console.print(escape(f"model saved to {out} after {result.steps} updates{best}"), soft_wrap=True)


def _report_dev(out: Path, title: str, columns: list[tuple[str, str, bool]], result: dict[str, float]) -> None:
    """Save the dev scores as OUT/dev_eval.json and print the paper's columns of them."""
    (out / "dev_eval.json").write_text(json.dumps(result, indent=2))
    table = Table(title=title)
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_row(*[
        "–" if key not in result else f"{result[key] * 100:.1f}" if percent else f"{result[key]:.2f}"
        for _, key, percent in columns
    ])
    console.print(table)


@app.command()
def canary(
    model: str = MODEL,
    data: list[Path] = DATA,
    out: Path = OUT,
    dev: list[Path] = DEV,
    dev_fraction: float = DEV_FRACTION,
    weights: str = typer.Option(None, help="Mixture weights name=w,… (default B.1: prosocial=4, three casual=1)."),
    casual_root: Path = CASUAL_ROOT,
    casual_limit: int = CASUAL_LIMIT,
    no_casual: bool = NO_CASUAL,
    pretrain_data: list[Path] = typer.Option(
        None, help='Stage-1 pairs, JSON Lines {"source","target"} (Social Chemistry / MIC / Delphi style).'
    ),
    pretrain_steps: int = typer.Option(None, help="Updates for stage 1 (default: --epochs over its data)."),
    max_steps: int = MAX_STEPS,
    epochs: float = EPOCHS,
    batch_size: int = BATCH,
    grad_accum: int = ACCUM,
    lr: float = LR,
    warmup: int = typer.Option(0, help="Linear warm-up updates (B.1 names none)."),
    eval_every: int = EVAL_EVERY,
    patience: int = PATIENCE,
    max_source_len: int = MAX_SOURCE,
    max_target_len: int = MAX_TARGET,
    max_turns: int = MAX_TURNS,
    seed: int = SEED,
    lora_rank: int = LORA_RANK,
    lora_alpha: int = LORA_ALPHA,
    lora_targets: str = LORA_TARGETS,
    device: str = DEVICE,
    mixed_precision: str = PRECISION,
    resume: bool = RESUME,
    limit: int = LIMIT,
    eval_limit: int = EVAL_LIMIT,
    no_progress: bool = NO_PROGRESS,
) -> None:
    """Canary (§4.1, B.1): context → safety token + RoTs, by MLE, optionally after a pre-training stage."""
    from prosocial.canary.generative import CANARY_TOKENS, ROT_SEP, GenerativeCanary, canary_pairs
    from prosocial.canary.generative import write_config as write_canary_config
    from prosocial.data.labels import SafetyLabel
    from prosocial.eval.reports import canary_report

    try:
        mix = parse_weights(weights, CANARY_WEIGHTS)
        config = _config(lr=lr, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, epochs=epochs,
                         warmup_steps=warmup, eval_every=eval_every, patience=patience,
                         max_source_len=max_source_len, max_target_len=max_target_len, seed=seed,
                         lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets, device=device,
                         mixed_precision=mixed_precision, progress=not no_progress)
        train, dev_examples = read_split(data, dev, dev_fraction, seed, limit)
        sources = training_sources(
            train, partial(canary_pairs, max_turns=max_turns),
            partial(canary_pairs, max_turns=max_turns, default_label=SafetyLabel.CASUAL),
            mix, casual_root, casual_limit, not no_casual, _warn,
        )
        dev_pairs = canary_pairs(dev_examples, max_turns=max_turns)
        start: str | Path = model
        if pretrain_data:
            start = pretrain(model, pretrain_data, out, config, pretrain_steps, CANARY_TOKENS, resume, console.print)
        result = finetune(start, _mixture(sources, mix, seed), out, config, dev=dev_pairs or None,
                          new_tokens=CANARY_TOKENS, resume=resume)
        if not result.main:  # under `accelerate launch`, the main process writes and reports
            return
        write_canary_config(out, ROT_SEP, max_turns, max_source_len)
        _print_saved(out, result)
        labelled = [e for e in dev_examples if e.safety_label is not None][:eval_limit]
        if labelled:
            detector = GenerativeCanary(out, device=device, max_source_len=max_source_len, max_turns=max_turns)
            scores = canary_report(detector, labelled)
            _report_dev(out, f"Table 2 columns on {len(labelled)} dev examples", [
                ("Safety acc.", "accuracy", True), ("coarse acc.", "accuracy_coarse", True),
                ("RoT BLEU-4", "rot_bleu4", True), ("RoT F1", "rot_f1", True), ("RoT PPL", "rot_perplexity", False),
            ], scores)
    except (DataError, ModelError, ValueError, FileNotFoundError) as error:
        fail(err, error)


@app.command()
def prost(
    model: str = MODEL,
    data: list[Path] = DATA,
    out: Path = OUT,
    variant: str = typer.Option("rot-response", help="rot-response: p(u, r|c); response: p(u|c)."),
    dev: list[Path] = DEV,
    dev_fraction: float = DEV_FRACTION,
    weights: str = typer.Option(None, help="Mixture weights name=w,… (default B.2: prosocial=9, …)."),
    casual_root: Path = CASUAL_ROOT,
    casual_limit: int = CASUAL_LIMIT,
    no_casual: bool = NO_CASUAL,
    max_steps: int = MAX_STEPS,
    epochs: float = EPOCHS,
    batch_size: int = BATCH,
    grad_accum: int = ACCUM,
    lr: float = LR,
    warmup: int = typer.Option(100, help="Linear warm-up updates (B.2: 100)."),
    plateau_factor: float = typer.Option(0.5, help="LR factor after a dev evaluation without improvement."),
    eval_every: int = EVAL_EVERY,
    patience: int = PATIENCE,
    max_source_len: int = MAX_SOURCE,
    max_target_len: int = MAX_TARGET,
    max_turns: int = MAX_TURNS,
    seed: int = SEED,
    lora_rank: int = LORA_RANK,
    lora_alpha: int = LORA_ALPHA,
    lora_targets: str = LORA_TARGETS,
    device: str = DEVICE,
    mixed_precision: str = PRECISION,
    resume: bool = RESUME,
    limit: int = LIMIT,
    eval_limit: int = EVAL_LIMIT,
    no_progress: bool = NO_PROGRESS,
) -> None:
    """Prost (§4.2, B.2): context → (RoTs +) reply, by MLE on ProsocialDialog mixed with casual dialogue."""
    from prosocial.eval.reports import prost_report
    from prosocial.prost.seq2seq import PROST_TOKENS, VARIANTS, Prost, prost_pairs
    from prosocial.prost.seq2seq import write_config as write_prost_config

    try:
        if variant not in VARIANTS:
            raise typer.BadParameter(f"--variant must be one of {VARIANTS}, got {variant!r}")
        mix = parse_weights(weights, PROST_WEIGHTS)
        config = _config(lr=lr, batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, epochs=epochs,
                         warmup_steps=warmup, plateau_factor=plateau_factor, eval_every=eval_every,
                         patience=patience, max_source_len=max_source_len, max_target_len=max_target_len,
                         seed=seed, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets,
                         device=device, mixed_precision=mixed_precision, progress=not no_progress)
        train, dev_examples = read_split(data, dev, dev_fraction, seed, limit)
        to_pairs = partial(prost_pairs, variant=variant, max_turns=max_turns)
        sources = training_sources(train, to_pairs, to_pairs, mix, casual_root, casual_limit, not no_casual, _warn)
        dev_pairs = prost_pairs(dev_examples, variant, max_turns)
        result = finetune(model, _mixture(sources, mix, seed), out, config, dev=dev_pairs or None,
                          new_tokens=PROST_TOKENS if variant == "rot-response" else (), resume=resume)
        if not result.main:
            return
        write_prost_config(out, variant, max_turns, max_source_len)
        _print_saved(out, result)
        replied = [e for e in dev_examples if e.response and e.response.strip()][:eval_limit]
        if replied:
            generator = Prost(out, device=device, max_source_len=max_source_len, max_turns=max_turns)
            scores = prost_report(generator, replied)
            _report_dev(out, f"Table 3 columns on {len(replied)} dev examples ({variant})", [
                ("BLEU-4", "bleu4", True), ("F1", "f1", True), ("PPL", "perplexity", False),
                ("w/ gold RoT BLEU-4", "gold_rot_bleu4", True), ("w/ gold RoT F1", "gold_rot_f1", True),
                ("w/ gold RoT PPL", "gold_rot_perplexity", False),
            ], scores)
    except (DataError, ModelError, ValueError, FileNotFoundError) as error:
        fail(err, error)


if __name__ == "__main__":
    app()
