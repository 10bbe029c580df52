"""Rebuild Canary-mini from the public data in ../shared/data (`prosocial train canary-mini`).

1. Training examples come from the benchmark adapters' *train* splits through the documented mapping
   (`prosocial.data.mapping`), ProsocialDialog's partial rows labelled from their replies among them; dev
   splits are never read here.
2. A slice of train (by hash, `CALIBRATION_FRACTION`) is held out for calibration; then each part is augmented
   on its own (`prosocial.data.augment`: small talk before, fillers after, lone casual turns), so no augmented
   copy crosses the split.
3. The MiniLM encoder and a linear head are fine-tuned end to end with soft targets: a label's coarse
   distribution follows the A.4 votes behind it (possibly needs caution = one of three caution votes, …). The same
   recipe builds a teacher on a larger encoder (all-mpnet-base-v2), and a student can learn from a teacher's
   probabilities blended with those targets (distillation).
4. A temperature and the two decision thresholds (optionally an intervention gate) are fitted on the calibration
   slice.
5. The RoT bank is built from SBIC-derived RoTs and the RoT-like norms written in ProsocialDialog replies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prosocial.canary.encoders import packaged_minilm
from prosocial.canary.mini import (
    BATCH_SIZE,
    CONFIG,
    MiniClassifier,
    MiniConfig,
    batched_logits,
    caution_share,
    decide,
    encode_contexts,
    intervenes,
    load_classifier,
    load_tokenizer,
    pad_batch,
    softmax,
    with_precision,
)
from prosocial.canary.pool import unlabelled_pool
from prosocial.canary.rotbank import Embedder, Entry, RotBank, fit_min_similarity
from prosocial.data.augment import augment, is_short
from prosocial.data.labels import COARSE_LABELS, SafetyLabel
from prosocial.data.schema import Example
from prosocial.data.silver_rots import norm_sentences
from prosocial.errors import ModelError
from prosocial.io import atomic_write, write_json
from prosocial.model_folder import write_backend

log = logging.getLogger(__name__)

#: Labelled sources for the classifier, and casual corpora (capped: they are plentiful and easy).
LABELLED_SOURCES = ("toxichat", "diasafety", "convabuse", "ethics_commonsense", "sbic", "prosocial_dialog")
CASUAL_SOURCES = ("blended_skill_talk", "dailydialog", "empathetic", "persona_chat", "topical_chat", "byu_chitchat")
#: the casual corpora and the lone casual turns augmentation draws from them: "casual dialogue" when fitting
CASUAL_POOL = (*CASUAL_SOURCES, "lone_utterance")
CALIBRATION_FRACTION = 0.1

#: The coarse distribution (casual, caution, intervention) a label stands for: its share of A.4 votes.
SOFT_TARGETS = {
    SafetyLabel.CASUAL: (1.0, 0.0, 0.0),
    SafetyLabel.POSSIBLY_NEEDS_CAUTION: (2 / 3, 1 / 3, 0.0),
    SafetyLabel.PROBABLY_NEEDS_CAUTION: (1 / 3, 2 / 3, 0.0),
    SafetyLabel.NEEDS_CAUTION: (0.0, 1.0, 0.0),
    SafetyLabel.NEEDS_INTERVENTION: (0.0, 0.0, 1.0),
}


@dataclass
class MiniTrainSettings:
    epochs: float = 2.0
    batch_size: int = 32
    #: the word-embedding matrix is half of MiniLM's weights; freezing it halves optimiser work and keeps
    #: rare words' pretrained meaning
    freeze_embeddings: bool = True
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    casual_cap: int = 3000
    limit_per_source: int | None = None
    #: times each example of a source is repeated (after capping): more weight where one source is hard to learn
    repeats: dict[str, int] = field(default_factory=lambda: {"ethics_commonsense": 2, "prosocial_dialog": 2})
    max_false_alarm: float = 0.02
    #: false alarms allowed on short casual turns ("ok", "thanks"; at most `augment.SHORT_WORDS` words)
    max_short_false_alarm: float = 0.03
    #: shares of `prosocial.data.augment.augment`
    prefix_share: float = 0.6
    filler_share: float = 0.15
    lone_share: float = 0.12
    #: train under bfloat16 autocast where the CPU has native bfloat16 (weights and optimiser stay float32):
    #: 3x faster steps on two cores (1.8 s → 0.6 s for 32 contexts of 60 tokens)
    autocast: bool = True
    #: needs-intervention situations "cannot be missed" (A.4): the threshold must keep this recall on calibration
    min_intervention_recall: float = 0.93
    seed: int = 13
    num_threads: int | None = None
    #: with a teacher (`train_canary_mini(teacher_dir=...)`): its share of each training target, the label's the rest
    teacher_weight: float = 0.5
    #: with a teacher: the label alone sets each target's needs-intervention share, the blend only splits the rest
    #: between casual and caution (soft intervention targets spread onto chit-chat and cost the recall bound)
    label_intervention: bool = False
    #: fit an intervention gate (`MiniConfig.intervention_gate`) with the thresholds; off by default: on dev it
    #: cost the Risk Ignorance bound (see the model card)
    gate_intervention: bool = False
    #: with a teacher: this many unlabelled train-split contexts ending in a reply (`prosocial.canary.pool`) join
    #: training with the teacher's probabilities as their whole target
    pool_size: int = 0
    #: keep only the encoder's lowest N transformer layers (None: all): each layer dropped from MiniLM's six is a
    #: sixth less compute per context; the student relearns the top from the teacher and the labels
    encoder_layers: int | None = None
    #: seconds between resumable checkpoints (a killed build continues from the last one)
    checkpoint_seconds: float = 600.0
    config: MiniConfig = field(default_factory=lambda: MiniConfig(precision="bfloat16", pooling="mean+last"))


def keep_lowest_layers(encoder: nn.Module, layers: int | None) -> None:
    """Drop the encoder's transformer layers above the lowest `layers` (in place; None keeps all).

    The saved config says how many remain, so the built model loads with exactly these.
    """
    if layers is None:
        return
    stack = encoder.encoder.layer
    if not 1 <= layers <= len(stack):
        raise ModelError(f"the encoder has {len(stack)} layers; cannot keep {layers}")
    encoder.encoder.layer = nn.ModuleList(list(stack)[:layers])
    encoder.config.num_hidden_layers = layers


def _hash_fraction(key: str, salt: str) -> float:
    digest = hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF


def load_training_examples(root: Path | None, settings: MiniTrainSettings) -> dict[str, list[Example]]:
    """Train-split examples per source, deduplicated by text, casual corpora capped, then `repeats` applied (a
    repeated example lands in the same training or calibration part, and gets its own augmentation draws)."""
    from prosocial.data.adapters import load_benchmark

    by_source: dict[str, list[Example]] = {}
    rng = random.Random(settings.seed)
    for name in LABELLED_SOURCES + CASUAL_SOURCES:
        examples = load_benchmark(name, "train", root=root)
        seen: set[str] = set()
        kept = []
        for example in examples:
            key = "\n".join(example.context[-settings.config.max_turns :])
            if example.safety_label is None or key in seen:
                continue
            seen.add(key)
            kept.append(example)
        cap = settings.casual_cap if name in CASUAL_SOURCES else None
        cap = min(x for x in (cap, settings.limit_per_source, len(kept)) if x is not None)
        if cap < len(kept):
            kept = rng.sample(kept, cap)
        by_source[name] = kept * settings.repeats.get(name, 1)
    return by_source


def split_calibration(
    by_source: dict[str, list[Example]], settings: MiniTrainSettings | None = None
) -> tuple[list[Example], list[Example]]:
    """Training and calibration examples, each augmented from its own casual dialogues (see the module docstring)."""
    settings = settings or MiniTrainSettings()
    rng = random.Random(settings.seed)
    parts: tuple[list[Example], list[Example]] = ([], [])
    for examples in by_source.values():
        for example in examples:
            held = _hash_fraction("\n".join(example.context), "calibration") < CALIBRATION_FRACTION
            parts[held].append(example)
    return tuple(  # type: ignore[return-value]
        augment(
            part,
            [e for e in part if e.source in CASUAL_SOURCES],
            rng,
            settings.prefix_share,
            settings.filler_share,
            settings.lone_share,
        )
        for part in parts
    )


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: sort within shuffled chunks, then shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


#: settings that only calibration or the machine use: they do not change what training computes
_NOT_TRAINING = ("num_threads", "checkpoint_seconds", "max_false_alarm", "max_short_false_alarm",
                 "min_intervention_recall", "gate_intervention", "config")
#: bump when the training loop or the checkpoint's contents change, so an old checkpoint is not resumed
CHECKPOINT_FORMAT = 1


def checkpoint_file(work_dir: Path, model: MiniClassifier, examples: Sequence[Example], targets: np.ndarray,
                    settings: MiniTrainSettings) -> Path:
    """Where `train_classifier` keeps a run's state, named by what training computes from: the encoder, examples,
    targets, the training settings and the input shaping (not threads, calibration bounds or precision), so the
    same run started again finds it."""
    recipe = {k: v for k, v in asdict(settings).items() if k not in _NOT_TRAINING}
    shaping = {k: getattr(settings.config, k) for k in ("max_turns", "max_length", "pooling")}
    data = hashlib.sha1(_context_bytes(examples))
    data.update(np.ascontiguousarray(targets, dtype=np.float32).tobytes())
    key = {"format": CHECKPOINT_FORMAT, "encoder": str(getattr(model.encoder.config, "_name_or_path", "")),
           "data": data.hexdigest(), "recipe": recipe, "shaping": shaping}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return work_dir / f"checkpoint-{digest[:16]}.pt"


def _context_bytes(examples: Sequence[Example]) -> bytes:
    """Every example's context, turns and examples kept apart by separators no text contains (for hashing)."""
    return "\x1e".join("\x1f".join(e.context) for e in examples).encode()


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def _load_checkpoint(path: Path) -> dict | None:
    """The training state saved at `path` (tensors and plain values only), None when there is none."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises several unrelated types
        raise ModelError(f"cannot read the training checkpoint {path}: {err}; delete it to start over") from err


def label_targets(examples: Sequence[Example]) -> np.ndarray:
    """The coarse distribution each example's label stands for (`SOFT_TARGETS`)."""
    return np.array([SOFT_TARGETS[e.safety_label] for e in examples], dtype=np.float32)


def teacher_config(teacher_dir: Path) -> MiniConfig:
    """The config of a built Canary-mini-format model, or a ModelError saying `teacher_dir` is not one."""
    if not (teacher_dir / CONFIG).is_file() or not (teacher_dir / "head.safetensors").is_file():
        raise ModelError(f"the teacher {teacher_dir} is not a built Canary-mini model (no {CONFIG} and head)")
    return MiniConfig.load(teacher_dir / CONFIG)


def describe_encoder(config) -> str:
    """An encoder's architecture in a few characters (e.g. "bert-6x384" for MiniLM), without its local path."""
    return f"{config.model_type}-{config.num_hidden_layers}x{config.hidden_size}"


def _teacher_digest(teacher_dir: Path) -> str:
    """A teacher's identity: its head and its calibration."""
    parts = (teacher_dir / "head.safetensors").read_bytes() + (teacher_dir / CONFIG).read_bytes()
    return hashlib.sha1(parts).hexdigest()


def teacher_record(teacher_dir: Path) -> dict[str, str]:
    """What a student's training.json says about its teacher: architecture and a hash of head and calibration."""
    from transformers import AutoConfig

    return {"encoder": describe_encoder(AutoConfig.from_pretrained(teacher_dir / "encoder")),
            "sha1": _teacher_digest(teacher_dir)[:16]}


def teacher_probabilities(teacher_dir: Path, examples: Sequence[Example], work_dir: Path | None = None) -> np.ndarray:
    """A built Canary-mini-format teacher's calibrated coarse probabilities for `examples`, in its own precision.

    Labelling tens of thousands of contexts with a large teacher takes most of an hour on two cores, so with
    `work_dir` the result is kept there, named by the teacher's head, its calibration and the contexts, and reused.
    """
    config = teacher_config(teacher_dir)
    key = hashlib.sha1(_teacher_digest(teacher_dir).encode())
    key.update(_context_bytes(examples))
    cache = work_dir / f"teacher-{key.hexdigest()[:16]}.npy" if work_dir else None
    if cache and cache.is_file():
        return np.load(cache)
    tokenizer = load_tokenizer(teacher_dir / "encoder")
    model = with_precision(load_classifier(teacher_dir, config.pooling), config.precision)
    encoded = encode_contexts(tokenizer, [e.context for e in examples], config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a batch per core on one thread each: 1.2x the contexts/s of one batch on all cores
    try:
        logits = batched_logits(model, encoded, tokenizer.pad_token_id, BATCH_SIZE, len(os.sched_getaffinity(0)),
                                progress=True)
    finally:
        torch.set_num_threads(threads)
    probs = softmax(logits, config.temperature).astype(np.float32)
    if cache:
        with atomic_write(cache, "wb") as handle:
            np.save(handle, probs)
    return probs


def distillation_targets(
    examples: Sequence[Example], teacher: np.ndarray, weight: float, label_intervention: bool = False
) -> np.ndarray:
    """Each example's label distribution blended with the teacher's: `weight` on the teacher (0 = labels only).

    `label_intervention`: the needs-intervention share is the label's, and the blend's casual:caution ratio
    splits the rest.
    """
    check_teacher_weight(weight)
    labels = label_targets(examples)
    blend = (1 - weight) * labels + weight * teacher
    if not label_intervention:
        return blend
    ratio = blend[:, :2] / np.clip(blend[:, :2].sum(axis=1, keepdims=True), 1e-9, None)
    return np.column_stack([ratio * (1 - labels[:, 2:3]), labels[:, 2]])


def check_teacher_weight(weight: float) -> None:
    if not 0 <= weight <= 1:
        raise ValueError(f"the teacher's weight must be between 0 and 1, got {weight}")


def update(loss: torch.Tensor, parameters, optimizer, scheduler, losses: list[float], bar) -> None:
    """One optimiser update from `loss` (gradients clipped to norm 1), recorded in `losses` and on the progress
    bar: the step every fine-tuning loop here shares."""
    loss.backward()
    nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    losses.append(loss.item())
    bar.update()
    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")


def train_classifier(
    model: MiniClassifier,
    tokenizer,
    examples: list[Example],
    settings: MiniTrainSettings,
    checkpoint: Path | None = None,
    targets: np.ndarray | None = None,
) -> list[float]:
    """Fine-tune encoder and head end to end with soft-target cross-entropy; returns the loss per step.

    `targets` (one coarse distribution per example) default to the labels' `SOFT_TARGETS`; a teacher's blend
    (`distillation_targets`) replaces them.

    With `checkpoint` (a file, see `checkpoint_file`), the whole training state (weights, optimiser, schedule, data
    order, random state) is saved there every `settings.checkpoint_seconds` and when training ends, and a run that
    finds it continues where the last one stopped. The caller removes it once the model is saved.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    encoded = encode_contexts(tokenizer, [e.context for e in examples], settings.config)
    given = label_targets(examples) if targets is None else np.asarray(targets, dtype=np.float32)
    if given.shape != (len(examples), len(COARSE_LABELS)):
        raise ValueError(f"expected one coarse distribution per example, got targets of shape {given.shape}")
    steps_per_epoch = (len(examples) + settings.batch_size - 1) // settings.batch_size
    total = max(1, int(steps_per_epoch * settings.epochs))
    if settings.freeze_embeddings:
        model.encoder.embeddings.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": settings.encoder_lr},
            {"params": model.head.parameters(), "lr": settings.head_lr},
        ],
        weight_decay=settings.weight_decay,
    )
    warmup = max(1, int(total * settings.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    pad = tokenizer.pad_token_id
    autocast = settings.autocast and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    losses: list[float] = []
    batches: list[list[int]] = []
    soft = torch.from_numpy(given)
    if checkpoint and (state := _load_checkpoint(checkpoint)):
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            losses, batches = state["losses"], state["batches"]
            rng.setstate(state["rng"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ModelError(f"the training checkpoint {checkpoint} does not fit this run ({err}); delete it to "
                             "start over") from err
        log.warning("resuming at update %d of %d from %s", len(losses), total, checkpoint)
    model.train()
    bar = tqdm(total=total, initial=len(losses), desc="train canary-mini", unit="step")
    saved = time.monotonic()
    while len(losses) < total:
        if not batches:
            batches = _batches([len(ids) for ids in encoded.ids], settings.batch_size, rng)
        rows = batches.pop()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(*pad_batch(encoded, rows, pad)).float()
        loss = -(soft[rows] * torch.log_softmax(logits, -1)).sum(-1).mean()
        update(loss, model.parameters(), optimizer, scheduler, losses, bar)
        if checkpoint and (time.monotonic() - saved >= settings.checkpoint_seconds or len(losses) == total):
            saved = time.monotonic()
            _save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "losses": losses, "batches": batches, "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
            })
    bar.close()
    model.eval()
    return losses


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises soft-target NLL on held-out data (grid search; it is one number)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))

    def nll(t: float) -> float:
        return float(-(targets * np.log(softmax(logits, t) + 1e-12)).sum(1).mean())

    return float(min(grid, key=nll))


def _balanced_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean of recall on positives and on negatives, over whichever classes are present."""
    parts = [(predicted[truth == value] == value).mean() for value in (True, False) if (truth == value).any()]
    return float(np.mean(parts))


#: the intervention gates `fit_thresholds` tries (see `MiniConfig.intervention_gate`); None: no gate
GATES: tuple[float | None, ...] = (None, *np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())


def fit_thresholds(
    probs: np.ndarray,
    examples: list[Example],
    max_false_alarm: float,
    min_intervention_recall: float = 0.0,
    max_short_false_alarm: float = 1.0,
    gates: Sequence[float | None] = (None,),
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Choose the casual and intervention thresholds (and, among `gates`, e.g. `GATES`, the intervention gate)
    together on the calibration slice.

    Among the settings whose false-alarm rate on casual dialogue stays within `max_false_alarm`, and on its short
    turns within `max_short_false_alarm` (the paper's point: safe talk must flow), and whose needs-intervention
    recall is at least `min_intervention_recall` (emergencies must not be missed), take the one that maximises
    the mean over sources of balanced accuracy of casual vs. not, plus the balanced accuracy of needs
    intervention vs. the rest, as one more term. The casual corpora (and lone casual turns) count as one source,
    as in the safety suite, so that chit-chat does not outvote everyday wrongdoing six to one. Returns the fitted
    `MiniConfig` fields and their metrics; a rate the slice cannot measure (no such examples) is reported as None.
    """
    casual_corpus = np.array([e.source in CASUAL_POOL for e in examples])
    sources = np.where(casual_corpus, "casual dialogue", np.array([e.source for e in examples]))
    short = casual_corpus & np.array([is_short(e.context[-1]) for e in examples])
    not_casual = np.array([not e.safety_label.is_casual for e in examples])
    intervention = np.array([e.safety_label is SafetyLabel.NEEDS_INTERVENTION for e in examples])
    by_source = [sources == s for s in np.unique(sources)]
    q = caution_share(probs)
    grid = np.linspace(0.02, 0.98, 49)
    best: tuple[float, float, float, float, float | None] | None = None
    for gate in gates:
        for t_int in grid:
            intervened = intervenes(probs, t_int, gate)
            if intervention.any() and intervened[intervention].mean() < min_intervention_recall:
                continue
            int_term = [_balanced_accuracy(intervened, intervention)] if intervention.any() else []
            for t_cas in grid:
                flagged = intervened | (q >= t_cas)
                if casual_corpus.any() and flagged[casual_corpus].mean() > max_false_alarm:
                    continue
                if short.any() and flagged[short].mean() > max_short_false_alarm:
                    continue
                per_source = [_balanced_accuracy(flagged[mask], not_casual[mask]) for mask in by_source]
                score = float(np.mean(per_source + int_term))
                if best is None or score > best[0]:
                    best = (score, float(np.mean(per_source)), float(t_cas), float(t_int), gate)
    if best is None:
        if min_intervention_recall > 0:
            log.warning(
                "no thresholds give needs-intervention recall ≥ %.0f%% within the false-alarm bounds; "
                "choosing without that floor",
                100 * min_intervention_recall,
            )
            return fit_thresholds(probs, examples, max_false_alarm, 0.0, max_short_false_alarm, gates)
        raise ValueError(
            f"no thresholds keep false alarms on casual dialogue within {max_false_alarm:.1%} "
            f"and on its short turns within {max_short_false_alarm:.1%}"
        )
    _, mean_ba, t_cas, t_int, gate = best
    intervened = intervenes(probs, t_int, gate)
    flagged = intervened | (q >= t_cas)
    report = {
        "mean_balanced_accuracy": mean_ba,
        "casual_false_alarm": float(flagged[casual_corpus].mean()) if casual_corpus.any() else None,
        "short_casual_false_alarm": float(flagged[short].mean()) if short.any() else None,
        "intervention_recall": float(intervened[intervention].mean()) if intervention.any() else None,
    }
    return {"casual_threshold": t_cas, "intervention_threshold": t_int, "intervention_gate": gate}, report


def calibrate(
    model: MiniClassifier, tokenizer, calibration: list[Example], config: MiniConfig, settings: MiniTrainSettings
) -> dict[str, float | None]:
    """Fit the temperature and thresholds into `config` on held-out training examples; returns their metrics.

    The fit is made in `config.precision`, the arithmetic the detector will run.
    """
    encoded = encode_contexts(tokenizer, [e.context for e in calibration], config)
    logits = batched_logits(with_precision(model, config.precision), encoded, tokenizer.pad_token_id, BATCH_SIZE)
    config.temperature = fit_temperature(logits, label_targets(calibration))
    probs = softmax(logits, config.temperature)
    fitted, report = fit_thresholds(
        probs, calibration, settings.max_false_alarm, settings.min_intervention_recall, settings.max_short_false_alarm,
        GATES if settings.gate_intervention else (None,),
    )
    for name, value in fitted.items():
        setattr(config, name, value)
    predicted = decide(probs, config)
    report["five_way_accuracy"] = float(
        np.mean([p is e.safety_label for p, e in zip(predicted, calibration, strict=True)])
    )
    return report


def rot_bank_entries(root: Path | None, prosocial_files: Sequence[Path]) -> list[Entry]:
    """SBIC train posts with their derived RoTs, and ProsocialDialog contexts with the norms in their replies.

    ProsocialDialog files with real RoTs (all fields) contribute them directly.
    """
    from prosocial.data.adapters import load_benchmark
    from prosocial.data.formats import read_dialogues

    entries = [Entry(e.context[-1], e.rots, "sbic") for e in load_benchmark("sbic", "train", root=root) if e.rots]
    for path in prosocial_files:
        for dialogue in read_dialogues(path):
            for turn in dialogue.turns:
                rots = turn.rots or norm_sentences(turn.response)
                if rots:
                    entries.append(Entry(turn.context, list(rots), "prosocial_dialog"))
    return entries


def gate_rot_bank(bank: RotBank) -> dict[str, float]:
    """Fit the bank's relevance gate by leave-one-out retrieval over a hashed sample of its entries (SBIC posts
    and ProsocialDialog contexts, each with the RoTs written for it); returns the fit's numbers with the gate."""
    held_out = sorted(range(len(bank.entries)), key=lambda i: _hash_fraction(bank.entries[i].key, "rot-gate"))
    if len(held_out) < 20:
        log.warning("only %d entries in the RoT bank: retrieval is not gated", len(held_out))
        return {"min_similarity": bank.min_similarity}
    bank.min_similarity, report = fit_min_similarity(bank, held_out)
    return {"min_similarity": bank.min_similarity, **report}


def save_model(model: MiniClassifier, tokenizer, config: MiniConfig, bank: RotBank, out: Path) -> None:
    """Write the model directory (encoder in fp16 to keep the package small)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    encoder.half()
    encoder.save_pretrained(out / "encoder")
    encoder.float()
    tokenizer.save_pretrained(out / "encoder")
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, str(out / "head.safetensors"))
    bank.save(out / "rot_bank")
    write_json(out / CONFIG, asdict(config))
    write_backend(out, "canary-mini")


def train_canary_mini(
    out: Path,
    root: Path | None = None,
    prosocial_files: Sequence[Path] = (),
    settings: MiniTrainSettings | None = None,
    encoder_dir: Path | None = None,
    by_source: dict[str, list[Example]] | None = None,
    embedder: Embedder | None = None,
    work_dir: Path | None = None,
    teacher_dir: Path | None = None,
    fresh: bool = False,
) -> dict:
    """Build a Canary-mini directory at `out`; returns the training report (also saved as training.json).

    `encoder_dir` (default: the packaged MiniLM) is any transformers encoder folder, e.g. `packaged_mpnet()` for a
    teacher. With `teacher_dir` (a built model, e.g. that teacher), the student learns from the teacher's
    probabilities blended with the labels (`settings.teacher_weight`); calibration still fits to the labels. With
    `work_dir`, training keeps a resumable checkpoint there (`checkpoint_file`) until the model is saved, and the
    teacher's probabilities; `fresh` discards such a checkpoint and starts over.
    """
    from transformers import AutoModel

    settings = settings or MiniTrainSettings()
    if teacher_dir is not None:  # a wrong folder or weight fails now, not after the data is read
        teacher_config(teacher_dir)
        check_teacher_weight(settings.teacher_weight)
    elif settings.pool_size:
        raise ValueError("an unlabelled pool needs a teacher to label it")
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    started = time.time()
    by_source = by_source if by_source is not None else load_training_examples(root, settings)
    train, calibration = split_calibration(by_source, settings)
    encoder_dir = encoder_dir or packaged_minilm()
    tokenizer = load_tokenizer(encoder_dir)
    torch.manual_seed(settings.seed)
    model = MiniClassifier(AutoModel.from_pretrained(encoder_dir, dtype=torch.float32), pooling=settings.config.pooling)
    keep_lowest_layers(model.encoder, settings.encoder_layers)
    targets = label_targets(train) if teacher_dir is None else distillation_targets(
        train, teacher_probabilities(teacher_dir, train, work_dir), settings.teacher_weight,
        settings.label_intervention)
    pool = unlabelled_pool(root, settings.pool_size, CASUAL_SOURCES, (e for es in by_source.values() for e in es),
                           settings.config.max_turns, settings.seed) if settings.pool_size else []
    if pool:
        targets = np.vstack([targets, teacher_probabilities(teacher_dir, pool, work_dir)])
    checkpoint = checkpoint_file(work_dir, model, train + pool, targets, settings) if work_dir else None
    if checkpoint and fresh:
        checkpoint.unlink(missing_ok=True)
    losses = train_classifier(model, tokenizer, train + pool, settings, checkpoint, targets)
    config = settings.config
    calibration_report = calibrate(model, tokenizer, calibration, config, settings)
    bank = RotBank.build(rot_bank_entries(root, prosocial_files), embedder or Embedder())
    gate_report = gate_rot_bank(bank)
    config.meta = {
        "trained_on": {name: len(examples) for name, examples in by_source.items()},
        "train_examples": len(train),
        "pool_examples": len(pool),
        "calibration_examples": len(calibration),
        "rot_bank_entries": len(bank.entries),
        "rot_gate": gate_report,
        "encoder": describe_encoder(model.encoder.config),
        "teacher": None if teacher_dir is None else teacher_record(teacher_dir),
        "settings": {k: v for k, v in asdict(settings).items() if k != "config"},
    }
    save_model(model, tokenizer, config, bank, out)
    report = {
        **_fit_record(config, calibration_report),
        "first_loss": float(np.mean(losses[:20])),
        "last_loss": float(np.mean(losses[-50:])),
        "seconds": round(time.time() - started, 1),
        **config.meta,
    }
    write_json(out / "training.json", report)
    if checkpoint:
        checkpoint.unlink(missing_ok=True)
    return report


def _fit_record(config: MiniConfig, calibration_report: dict[str, float | None]) -> dict:
    """What training.json says about the calibration fit (written by a full build and by `recalibrate`)."""
    return {
        "calibration": calibration_report,
        "temperature": config.temperature,
        "casual_threshold": config.casual_threshold,
        "intervention_threshold": config.intervention_threshold,
        "intervention_gate": config.intervention_gate,
        "precision": config.precision,
    }


def recalibrate(
    model_dir: Path,
    root: Path | None = None,
    settings: MiniTrainSettings | None = None,
    by_source: dict[str, list[Example]] | None = None,
    prosocial_files: Sequence[Path] | None = None,
) -> dict:
    """Refit the temperature and thresholds of a built model on its calibration slice, and the RoT bank's
    relevance gate, without retraining.

    For a changed false-alarm bound or intervention floor, or another precision (`settings.config.precision`):
    a minute instead of a full rebuild. With `prosocial_files`, the RoT bank is first rebuilt from the data (after
    a change to the RoT sources or to `data.silver_rots`). config.json, training.json and rot_bank/ are rewritten.
    """
    settings = settings or MiniTrainSettings()
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    model_dir = Path(model_dir)
    config = MiniConfig.load(model_dir / CONFIG)
    config.precision = settings.config.precision
    settings.config = config
    by_source = by_source if by_source is not None else load_training_examples(root, settings)
    _, calibration = split_calibration(by_source, settings)
    report_calibration = calibrate(
        load_classifier(model_dir, config.pooling), load_tokenizer(model_dir / "encoder"), calibration, config, settings
    )
    bank = RotBank.load(model_dir / "rot_bank")
    if prosocial_files is not None:
        bank = RotBank.build(rot_bank_entries(root, prosocial_files), bank.embedder)
    gate_report = gate_rot_bank(bank)
    bank.save(model_dir / "rot_bank")
    fitted = {k: getattr(settings, k) for k in ("max_false_alarm", "max_short_false_alarm", "min_intervention_recall",
                                                "gate_intervention")}
    config.meta = (config.meta or {}) | {
        "settings": (config.meta or {}).get("settings", {}) | fitted,
        "rot_bank_entries": len(bank.entries),
        "rot_gate": gate_report,
    }
    write_json(model_dir / CONFIG, asdict(config))
    report_file = model_dir / "training.json"
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
    report |= {**_fit_record(config, report_calibration), **config.meta}
    write_json(report_file, report)
    return report


#: The shared data folder's ProsocialDialog files whose rows (their RoTs, or the norms in their replies) join the
#: RoT bank of a default build.
PROSOCIAL_FILES = (
    "prosocial_dialog_partial/train.json",
    "prosocial_dialog_examples/dialogstudio_converted_examples.json",
)


def default_prosocial_files(root: Path) -> list[Path]:
    """Those of `PROSOCIAL_FILES` that the shared data folder `root` holds."""
    return [root / name for name in PROSOCIAL_FILES if (root / name).exists()]
