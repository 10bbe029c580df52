"""Train the danger head (`prosocial.canary.danger`) of a Canary-mini folder and fit its thresholds on dev rows.

all-MiniLM-L6-v2 (packaged; optionally only its first `layers` layers, which run faster) is fine-tuned end to end
on each row's latest turn, with cross-entropy and class weights ∝ count^-`balance`, under a linear head (as shipped)
or, with `described`, a `DescribedHead`: a category's logit is the scaled cosine between the message and the nearest
description of its sub-categories (`prosocial.data.danger.DESCRIPTIONS`). The descriptions are encoded by the same
encoder, without gradient, and re-encoded every `anchor_refresh` steps as it changes; the held-out sub-categories'
descriptions are left out of training (nothing of theirs is trained on) and join the others for the thresholds
and at run time.

Data (train rows only; `heldout` rows of the corpus are never read here):

- the team-written danger corpus's ``train`` rows (writers A, C, D, F and G): a danger → its category, a benign
  look-alike → ``lookalike``; each as written and once typed casually (`typed_casually`);
- DiaSafety train contexts: Risk Ignorance re-labelled needs intervention (`prosocial.data.mapping`) → self-harm,
  its ordinary distress → none; the rest (advice questions of Unauthorized Expertise,
  toxicity, bias, insults) → none, so "asks a health question" is not an emergency (with `advice_as_lookalike`, the
  advice questions → ``lookalike``);
- casual train dialogues, ETHICS (not wrong) scenarios, and SBIC / ToxiChat / ConvAbuse rows → none.

Thresholds come from dev rows: the corpus's ``dev`` split (writer E, a crowd never trained on; each row alone and
after 1–3 casual dev turns), DiaSafety's dev file, the casual corpora's dev split and SBIC / ToxiChat / ConvAbuse /
ETHICS dev rows (the look-alike threshold must leave their flagged rows alone). The held-out split (writer B and
one unseen sub-category per category) is for `benchmarks/bench_danger.py` only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prosocial.canary.danger import LOOKALIKE, DangerConfig, DangerHead
from prosocial.canary.mini import masked_mean
from prosocial.canary.mini_train import CASUAL_SOURCES, _batches, update
from prosocial.data.danger import DESCRIPTIONS, HELD_OUT_SUBCATEGORIES, DangerCase, read_corpus
from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.errors import ModelError
from prosocial.heads import Head
from prosocial.resources import RESOURCES

log = logging.getLogger(__name__)

CORPUS = RESOURCES / "danger" / "corpus.jsonl"
NEGATIVE_SOURCES = {"ethics_commonsense": 600, "sbic": 400, "toxichat": 400, "convabuse": 400}
#: row groups of DiaSafety's Risk Ignorance contexts: re-labelled needs intervention, and the rest (distress)
RISK = "diasafety:Risk Ignorance"
DISTRESS = "diasafety:Risk Ignorance:distress"


@dataclass
class DangerTrainSettings:
    #: keep the encoder's first `layers` transformer layers (None: all; all-MiniLM-L6-v2 has 6): fewer run faster
    layers: int | None = None
    #: tokens of the latest turn read; long chat messages often name the danger late
    max_length: int = 96
    #: categories scored by their sub-categories' descriptions (a `DescribedHead`); False: a linear head, as
    #: shipped (session 19: the described head measured no better on dev, see the model card)
    described: bool = False
    #: training steps between re-encodings of the descriptions
    anchor_refresh: int = 8
    epochs: float = 2.0
    batch_size: int = 32
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    balance: float = 0.5
    casual_per_source: int = 1500
    #: DiaSafety rows per category (train); Risk Ignorance is kept whole
    diasafety_per_category: int = 400
    #: Risk Ignorance rows (train): self-harm and distress posts, the one public source of a danger category
    risk_ignorance: int = 1000
    #: train DiaSafety's advice questions (Unauthorized Expertise without a red flag) as the look-alike class instead
    #: of none, so the look-alike veto can clear the safety head's hand-overs of them (v4 was trained with the old
    #: mapping and calls every dev advice question needs intervention; session 22)
    advice_as_lookalike: bool = False
    #: each written corpus row counts this many times: 1,600 situations and look-alikes against ~18k rows of
    #: public data, where the look-alikes are what teaches "topic is not danger"
    corpus_repeats: int = 4
    #: the share of dev emergencies the whole rule must hand over (the emergency threshold is the highest that does).
    #: Above the 90% target: dev (writer E) reads easier than a new crowd (at 0.9: 90.3% of dev, 70.9% held out)
    min_emergency_recall: float = 0.95
    #: flagged at all (any caution or above by the danger head): at most this share of casual dev turns
    max_casual_flagged: float = 0.005
    max_benign_flagged: float = 0.05
    #: the whole rule may hand over at most this share of dev look-alikes (None: no bound, as shipped): the emergency
    #: threshold then stops falling where the bound is reached, even short of `min_emergency_recall`
    max_benign_handover: float | None = None
    #: the share of dev Risk Ignorance contexts re-labelled needs intervention that must stay so (the suite's target)
    min_risk_ignorance: float = 0.9
    #: the look-alike class may clear at most this share of dev emergencies and acts, and of flagged public rows
    #: (toxic, biased, wrong acts), below the danger thresholds
    max_lookalike_danger: float = 0.01
    max_lookalike_flagged: float = 0.005
    seed: int = 0


@dataclass
class Rows:
    """Contexts, their class index, and the group each belongs to (for threshold fitting and reports)."""

    contexts: list[list[str]] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def add(self, context: Sequence[str], target: int, group: str) -> None:
        self.contexts.append(list(context))
        self.targets.append(target)
        self.groups.append(group)


def _case_target(case: DangerCase, classes: list[str]) -> int:
    if case.kind == "benign":
        return classes.index(LOOKALIKE) if LOOKALIKE in classes else 0
    return classes.index(case.category)


def typed_casually(text: str, rng: random.Random) -> str:
    """The same message as people type it in a hurry: lower case, no apostrophes, no final full stop, sometimes
    no punctuation at all (the written rows are tidier than real chat)."""
    out = text.lower().replace("'", "").replace("’", "")
    if rng.random() < 0.5:
        out = "".join(ch for ch in out if ch.isalnum() or ch.isspace() or ch in "!?")
    return " ".join(out.rstrip(".").split())


def corpus_rows(cases: Sequence[DangerCase], classes: list[str], small_talk: Sequence[list[str]],
                rng: random.Random, rows: Rows, variants: bool = False) -> None:
    """Each case as written, and once more after 1-3 turns of small talk; with `variants` (training), the second
    copy is typed casually instead (`typed_casually`): the head reads the latest turn alone, so a prefix would
    only repeat the row."""
    for case in cases:
        target = _case_target(case, classes)
        group = f"corpus:{case.kind}"
        rows.add(case.context, target, group)
        if variants:
            rows.add([*case.prefix, typed_casually(case.text, rng)], target, group + "+typed")
        elif small_talk:
            dialogue = rng.choice(small_talk)
            start = rng.randrange(max(1, len(dialogue) - 2))
            rows.add([*dialogue[start : start + rng.randint(1, 3)], case.text], target, group + "+prefix")


def public_rows(root: Path | None, split: str, classes: list[str], settings: DangerTrainSettings,
                rng: random.Random, rows: Rows) -> list[list[str]]:
    """DiaSafety, casual and negative sources of `split`; returns casual dialogues (for small-talk prefixes)."""
    from prosocial.data.adapters import load_benchmark

    self_harm = classes.index("self_harm")
    examples = load_benchmark("diasafety", split, root=root)
    if split == "train":
        rng.shuffle(examples)
    taken: dict[str, int] = {}
    for example in examples:
        category = example.meta.get("category")
        if category == "Unauthorized Expertise" and example.safety_label.coarse is Coarse.NEEDS_INTERVENTION:
            continue  # a medical red flag (mapping.MEDICAL_RED_FLAG): neither "none" nor a written category
        taken[category] = taken.get(category, 0) + 1
        cap = settings.risk_ignorance if category == "Risk Ignorance" else settings.diasafety_per_category
        if split == "train" and taken[category] > cap:
            continue
        if category == "Unauthorized Expertise" and settings.advice_as_lookalike and split == "train":
            rows.add(example.context, classes.index(LOOKALIKE), f"diasafety:{category}")
        elif category != "Risk Ignorance":
            rows.add(example.context, 0, f"diasafety:{category}")
        elif example.safety_label is SafetyLabel.NEEDS_INTERVENTION:
            rows.add(example.context, self_harm, RISK)
        else:  # ordinary distress by the re-labelling (mapping.RISK_IGNORANCE_LABELS): not a danger
            rows.add(example.context, 0, DISTRESS)
    dialogues: list[list[str]] = []
    for name in CASUAL_SOURCES:
        examples = load_benchmark(name, split, root=root)
        for example in rng.sample(examples, min(settings.casual_per_source, len(examples))):
            rows.add(example.context, 0, "casual")
            dialogues.append(list(example.context))
    for name, cap in NEGATIVE_SOURCES.items():
        examples = load_benchmark(name, split, root=root)
        if split == "train":  # ETHICS' wrong acts are not taught as "none"; dev keeps them to fit the look-alike
            examples = [e for e in examples if name != "ethics_commonsense" or e.safety_label.is_casual]
        for example in rng.sample(examples, min(cap, len(examples))):
            flagged = example.safety_label is not None and not example.safety_label.is_casual
            rows.add(example.context, 0, f"{name}:flagged" if flagged else name)
    return dialogues


def _rate(mask: np.ndarray, where: np.ndarray) -> float:
    return float(mask[where].mean()) if where.any() else 0.0


def fit_thresholds(head: DangerHead, probs: np.ndarray, rows: Rows, settings: DangerTrainSettings,
                   base_intervenes: np.ndarray | None = None) -> dict:
    """The danger head's thresholds, fitted on dev rows, recall first: a missed emergency costs more than a
    look-alike handed over.

    - act: the lowest value with casual turns flagged ≤ `max_casual_flagged` and look-alikes ≤
      `max_benign_flagged`;
    - emergency: the highest value at which the whole rule (the danger head's hand-overs, plus the safety head's
      where `base_intervenes` and they survive gate and veto) still hands over `min_emergency_recall` of the dev
      emergencies, within `max_casual_flagged`; where none does, the one that hands over the most;
    - for each candidate emergency threshold: the lowest look-alike threshold that clears at most
      `max_lookalike_danger` of the dev dangers and `max_lookalike_flagged` of the flagged public rows below the
      danger thresholds, the lowest veto that undoes at most `max_lookalike_danger` of the safety head's hand-overs
      of dev emergencies and Risk Ignorance contexts, and the highest gate that keeps `min_risk_ignorance` of dev
      Risk Ignorance contexts re-labelled needs intervention handed over (their distress is reported).

    False hand-overs of look-alikes and advice questions are reported (`dev_false_handover_*`); look-alikes are
    bounded only with `max_benign_handover` (the emergency threshold stops falling where the bound is reached): on
    dev rows no threshold of the shipped head keeps them at 1% without giving up emergencies (session 18, writer E:
    the danger head alone hands over 0.8% of look-alikes and 85.8% of emergencies at 0.99)."""
    groups = np.array(rows.groups)
    targets = np.array(rows.targets)
    emergency = (probs * head._emergency).sum(1)
    danger = (probs * head._category).sum(1)
    look = probs[:, head._lookalike] if head._lookalike is not None else None
    benign = np.isin(groups, ["corpus:benign", "corpus:benign+prefix"])
    casual = groups == "casual"
    advice = groups == "diasafety:Unauthorized Expertise"
    risk = groups == RISK
    distress = groups == DISTRESS
    is_emergency = head._emergency[targets] & ~risk
    real = head._category[targets] & ~risk
    # flagged public rows: toxic, biased and wrong-act ones, and DiaSafety's unsafe categories (not advice)
    flagged = np.char.endswith(groups, ":flagged") | (np.char.startswith(groups, "diasafety:") & ~advice)
    base = np.zeros(len(groups), bool) if base_intervenes is None else base_intervenes
    grid = np.concatenate([np.round(np.arange(0.05, 0.99, 0.01), 2), [0.99, 0.995, 0.998, 0.999]])
    act_threshold = next(
        (float(t) for t in grid if _rate(danger >= t, casual) <= settings.max_casual_flagged
         and _rate(danger >= t, benign) <= settings.max_benign_flagged), 0.999)

    def at(threshold: float) -> dict:
        """The rest of the rule for one emergency threshold, and what it does on dev rows."""
        lookalike_threshold = lookalike_veto = None
        vetoed = cleared = np.zeros(len(groups), bool)
        if look is not None:
            below = (emergency < threshold) & (danger < act_threshold)
            lookalike_threshold = next(
                (float(t) for t in grid if _rate(below & (look >= t), real) <= settings.max_lookalike_danger
                 and _rate(below & (look >= t), flagged) <= settings.max_lookalike_flagged), None)
            if lookalike_threshold is not None:
                cleared = below & (look >= lookalike_threshold)
            at_risk = base & (emergency < threshold) & (is_emergency | risk)
            lookalike_veto = next((float(t) for t in grid if _rate(at_risk & (look >= t), is_emergency | risk)
                                   <= settings.max_lookalike_danger), None)
            if lookalike_veto is not None:
                vetoed = look >= lookalike_veto
        gate = 0.0
        for g in np.round(np.arange(0.0, 0.96, 0.01), 2):
            if risk.any() and _rate((emergency >= threshold) | (base & (emergency >= g) & ~vetoed),
                                    risk) < settings.min_risk_ignorance:
                break
            gate = float(g)
        handed = (emergency >= threshold) | (base & (emergency >= gate) & ~vetoed)
        return {
            "emergency_threshold": float(threshold),
            "act_threshold": act_threshold,
            "intervention_gate": gate,
            "lookalike_threshold": lookalike_threshold,
            "lookalike_veto": lookalike_veto,
            "dev_emergency_recall": _rate(handed, is_emergency),
            "dev_risk_ignorance_handed_over": _rate(handed, risk),
            "dev_false_handover_benign": _rate(handed, benign),
            "dev_false_handover_advice": _rate(handed, advice),
            "dev_false_handover_distress": _rate(handed, distress),
            "dev_casual_flagged": _rate((emergency >= threshold) | (danger >= act_threshold), casual),
            "dev_benign_flagged_by_danger": _rate(danger >= act_threshold, benign),
            "dev_benign_cleared": _rate(cleared, benign),
        }

    best: dict | None = None
    for threshold in grid[::-1]:  # highest first: the fewest false alarms that still reach the recall
        if _rate(emergency >= threshold, casual) > settings.max_casual_flagged:
            break
        fit = at(threshold)
        if (best is not None and settings.max_benign_handover is not None
                and fit["dev_false_handover_benign"] > settings.max_benign_handover):
            break
        if best is None or fit["dev_emergency_recall"] > best["dev_emergency_recall"]:
            best = fit
        if fit["dev_emergency_recall"] >= settings.min_emergency_recall:
            break
    return best or at(grid[-1])


def build_rows(root: Path | None, corpus: Path, settings: DangerTrainSettings) -> tuple[Rows, Rows]:
    """Training and dev rows (see the module docstring). Dev rows are drawn with a generator of their own, so that
    new training rows leave the dev sample (and the thresholds fitted on it) as they were."""
    rng = random.Random(settings.seed)
    classes = DangerConfig().classes
    train, dev = Rows(), Rows()
    small_talk = public_rows(root, "train", classes, settings, rng, train)
    corpus_rows(read_corpus(corpus, ("train",)), classes, small_talk, rng, train, variants=True)
    rng = random.Random(f"{settings.seed}:dev")
    dev_talk = public_rows(root, "dev", classes, settings, rng, dev)
    corpus_rows(read_corpus(corpus, ("dev",)), classes, dev_talk, rng, dev)
    return train, dev


def training_descriptions(classes: list[str]) -> tuple[list[str], list[int]]:
    """The descriptions trained on: every sub-category's but the held-out ones', with their class index."""
    texts, owners = [], []
    for name, subs in DESCRIPTIONS.items():
        for sub, described in subs.items():
            if HELD_OUT_SUBCATEGORIES.get(name) != sub:
                texts += described
                owners += [classes.index(name)] * len(described)
    return texts, owners


def _described_logits(hidden: int, classes: int, owners: Sequence[int]):
    """The torch twin of `DescribedHead`: scaled cosines to the descriptions (set `anchors` before use) and to a
    learned vector per class without descriptions, plus a bias."""
    import math

    import torch
    from torch import nn

    class DescribedLogits(nn.Module):
        def __init__(self):
            super().__init__()
            self.owners = torch.tensor(list(owners))
            self.free = torch.tensor([c for c in range(classes) if c not in set(owners)])
            self.v = nn.Parameter(torch.randn(len(self.free), hidden) * 0.02)
            self.b = nn.Parameter(torch.zeros(classes))
            self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))
            self.anchors: torch.Tensor | None = None

        def forward(self, pooled):
            x = nn.functional.normalize(pooled, dim=-1)
            sims = x @ self.anchors.T
            logits = torch.full((len(x), classes), -1.0).scatter_reduce(
                1, self.owners.expand(len(x), -1), sims, reduce="amax", include_self=False)
            logits = logits.index_copy(1, self.free, x @ nn.functional.normalize(self.v, dim=-1).T)
            return logits * self.log_scale.clamp(max=math.log(100.0)).exp() + self.b

        def export(self) -> dict[str, np.ndarray]:
            return {"v": self.v.detach().numpy().copy(), "b": self.b.detach().numpy().copy(),
                    "scale": np.array(float(self.log_scale.detach().clamp(max=math.log(100.0)).exp()), np.float32)}

    return DescribedLogits()


def finetune(texts: Sequence[str], targets: Sequence[int], classes: int, settings: DangerTrainSettings,
             encoder_dir: Path | None = None, progress: bool = True, descriptions: tuple | None = None):
    """Fine-tune the encoder (default: the packaged all-MiniLM-L6-v2) with a linear head, or with a described head
    over `descriptions` = (texts, class indices); returns (tokenizer, encoder, head weights, losses)."""
    import torch
    from torch import nn
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    from prosocial.canary.encoders import packaged_minilm

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    directory = encoder_dir or packaged_minilm()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModel.from_pretrained(directory, dtype=torch.float32)
    layers = settings.layers or encoder.config.num_hidden_layers
    if not 1 <= layers <= encoder.config.num_hidden_layers:
        raise ValueError(f"layers must be 1..{encoder.config.num_hidden_layers}, got {layers}")
    encoder.encoder.layer = encoder.encoder.layer[:layers]
    encoder.config.num_hidden_layers = layers
    max_length = settings.max_length
    head = (nn.Linear(encoder.config.hidden_size, classes) if descriptions is None
            else _described_logits(encoder.config.hidden_size, classes, descriptions[1]))

    def refresh_anchors() -> None:
        encoder.eval()
        with torch.no_grad():
            batch = tokenizer(list(descriptions[0]), truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            hidden = encoder(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
            head.anchors = nn.functional.normalize(masked_mean(hidden, batch["attention_mask"]), dim=-1)
        encoder.train()
    counts = np.bincount(np.asarray(targets), minlength=classes).clip(min=1).astype(np.float32)
    weight = counts ** -settings.balance
    weight = torch.from_numpy(weight * classes / weight.sum())
    encoder.embeddings.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in encoder.parameters() if p.requires_grad], "lr": settings.encoder_lr},
         {"params": head.parameters(), "lr": settings.head_lr}], weight_decay=settings.weight_decay)
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    total = max(1, int(len(texts) / settings.batch_size * settings.epochs))
    warmup = max(1, total // 16)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    y = torch.tensor(list(targets))
    encoder.train()
    batches: list[list[int]] = []
    bar = tqdm(total=total, desc="train danger head", unit="step", disable=not progress)
    losses: list[float] = []
    for step in range(total):
        if descriptions is not None and step % settings.anchor_refresh == 0:
            refresh_anchors()
        if not batches:  # batches of similar length (little padding), in random order
            batches = _batches(lengths, settings.batch_size, rng)
        rows = batches.pop()
        batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        pooled = masked_mean(hidden, batch["attention_mask"])
        loss = nn.functional.cross_entropy(head(pooled), y[rows], weight=weight)
        update(loss, [*encoder.parameters(), *head.parameters()], optimizer, scheduler, losses, bar)
    bar.close()
    encoder.eval()
    if descriptions is None:
        weights = {"w": head.weight.detach().T.numpy().copy(), "b": head.bias.detach().numpy().copy()}
    else:
        weights = head.export()
    return tokenizer, encoder, weights, losses


THRESHOLDS = ("emergency_threshold", "act_threshold", "intervention_gate", "lookalike_threshold", "lookalike_veto")


def apply_thresholds(config: DangerConfig, report: dict) -> None:
    """Set a head's thresholds from a `fit_thresholds` report."""
    for key in THRESHOLDS:
        setattr(config, key, report[key])


def fit_head(train: Rows, dev: Rows, settings: DangerTrainSettings, encoder_dir: Path | None = None,
             workers: int = 2, base_intervenes: np.ndarray | None = None) -> tuple[DangerHead, dict, tuple]:
    """Fine-tune on `train` (written rows `corpus_repeats` times), fit the thresholds on `dev`; the head, the fit
    report, and (tokenizer, encoder) to save."""
    config = DangerConfig(max_length=settings.max_length)
    if settings.described:
        config.descriptions = {name: {sub: list(texts) for sub, texts in subs.items()}
                               for name, subs in DESCRIPTIONS.items()}
    rows = [i for i, group in enumerate(train.groups)
            for _ in range(settings.corpus_repeats if group.startswith("corpus:") else 1)]
    tokenizer, encoder, weights, losses = finetune(
        [train.contexts[i][-1] for i in rows], [train.targets[i] for i in rows], len(config.classes), settings,
        encoder_dir, descriptions=training_descriptions(config.classes) if settings.described else None)
    danger = DangerHead(Head(weights), config, workers=workers, encoder=(tokenizer, encoder))
    probs = danger.probabilities(dev.contexts)
    report = fit_thresholds(danger, probs, dev, settings, base_intervenes)
    apply_thresholds(config, report)
    counts: dict[str, int] = {}
    for group in train.groups:
        counts[group] = counts.get(group, 0) + 1
    config.meta = {"trained_on": counts, "dev": report, "first_loss": float(np.mean(losses[:20])),
                   "last_loss": float(np.mean(losses[-20:])),
                   "settings": dict(settings.__dict__)}
    return danger, report, (tokenizer, encoder, probs)


def safety_head_intervenes(model_dir: Path, rows: Rows) -> np.ndarray:
    """Where the folder's safety head alone (no danger head) says needs intervention, one flag per row."""
    from prosocial.canary.mini import CanaryMini, decide

    detector = CanaryMini(model_dir, danger=False)
    labels = decide(detector.probabilities(rows.contexts), detector.config)
    return np.array([label is SafetyLabel.NEEDS_INTERVENTION for label in labels])


def train_danger_head(model_dir: Path, root: Path | None = None, corpus: Path = CORPUS,
                      settings: DangerTrainSettings | None = None, out: Path | None = None) -> dict:
    """Train and save the danger module into `out` (default: `model_dir`)/danger; returns the fit report."""
    import os
    import time

    import torch

    from prosocial.canary.danger import FOLDER

    started = time.perf_counter()
    settings = settings or DangerTrainSettings()
    train, dev = build_rows(root, corpus, settings)
    log.info("danger head: %d train and %d dev contexts", len(train.targets), len(dev.targets))
    danger, report, (tokenizer, encoder, _) = fit_head(train, dev, settings,
                                                       base_intervenes=safety_head_intervenes(model_dir, dev))
    danger.config.meta |= {"corpus": corpus.name, "train_seconds": round(time.perf_counter() - started),
                           "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"}
    target = Path(out or model_dir)
    danger.save(target)
    encoder.to(torch.float16).save_pretrained(target / FOLDER / "encoder")
    tokenizer.save_pretrained(target / FOLDER / "encoder")
    return report


def refit_thresholds(model_dir: Path, root: Path | None = None, corpus: Path = CORPUS,
                     settings: DangerTrainSettings | None = None) -> dict:
    """Fit a trained head's thresholds again on the dev rows under `settings`' bounds, without retraining (a few
    minutes instead of half an hour): the encoder and head weights stay as they are, only ``danger/config.json``
    changes (its `meta.dev` records the new fit, `meta.refit` the bounds). For a change of policy — e.g. fewer
    look-alikes flagged — on a head already trained."""
    settings = settings or DangerTrainSettings()
    danger = DangerHead.load(model_dir)
    if danger is None:
        raise ModelError(f"{model_dir} has no danger head to refit (train one with `prosocial train danger`)")
    _, dev = build_rows(root, corpus, settings)
    report = fit_thresholds(danger, danger.probabilities(dev.contexts), dev, settings,
                            safety_head_intervenes(model_dir, dev))
    apply_thresholds(danger.config, report)
    danger.config.meta = (danger.config.meta or {}) | {"dev": report, "refit": dict(settings.__dict__)}
    danger.save_config(model_dir)
    return report
