"""Train the danger head (`prosocial.canary.danger`) of a Canary-mini folder and fit its thresholds on dev rows.

Data (train rows only; `heldout` rows of the corpus are never read here):

- the team-written danger corpus's ``train`` rows: a danger → its category, a benign look-alike → none; each also
  after 1–3 turns of a real casual dialogue (casual train split), so small talk before an emergency does not hide it;
- DiaSafety train contexts: Risk Ignorance → self-harm; the rest (advice questions of Unauthorized Expertise,
  toxicity, bias, insults) → none, so "asks a health question" is not an emergency;
- casual train dialogues, ETHICS (not wrong) scenarios, and SBIC / ToxiChat / ConvAbuse rows → none.

Thresholds come from dev rows: the corpus's ``dev`` share (writer A, never trained on), DiaSafety's dev file and
the casual corpora's dev split. The held-out split (writer B and one unseen sub-category per category) is for
`benchmarks/bench_danger.py` only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prosocial.canary.danger import DangerConfig, DangerHead
from prosocial.data.danger import DangerCase, read_corpus
from prosocial.data.labels import Coarse
from prosocial.heads import Head
from prosocial.resources import RESOURCES

log = logging.getLogger(__name__)

CORPUS = RESOURCES / "danger" / "corpus.jsonl"
CASUAL_SOURCES = ("blended_skill_talk", "dailydialog", "empathetic", "persona_chat", "topical_chat", "byu_chitchat")
NEGATIVE_SOURCES = {"ethics_commonsense": 1500, "sbic": 800, "toxichat": 800, "convabuse": 800}


@dataclass
class DangerTrainSettings:
    hidden: int = 0
    balance: float = 0.5
    weight_decay: float = 1e-3
    steps: int = 600
    lr: float = 1e-2
    casual_per_source: int = 1000
    #: a benign look-alike, a casual turn or an advice question handed over: at most this share on dev
    max_false_handover: float = 0.01
    #: flagged at all (any caution or above by the danger head): at most this share of casual dev turns
    max_casual_flagged: float = 0.005
    max_benign_flagged: float = 0.05
    seed: int = 0
    extra: dict = field(default_factory=dict)


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
    return 0 if case.kind == "benign" else classes.index(case.category)


def corpus_rows(cases: Sequence[DangerCase], classes: list[str], small_talk: Sequence[list[str]],
                rng: random.Random, rows: Rows) -> None:
    """Each case as written, and once more after 1-3 turns of small talk."""
    for case in cases:
        target = _case_target(case, classes)
        group = f"corpus:{case.kind}"
        rows.add(case.context, target, group)
        if small_talk:
            dialogue = rng.choice(small_talk)
            start = rng.randrange(max(1, len(dialogue) - 2))
            rows.add([*dialogue[start : start + rng.randint(1, 3)], case.text], target, group + "+prefix")


def public_rows(root: Path | None, split: str, classes: list[str], settings: DangerTrainSettings,
                rng: random.Random, rows: Rows) -> list[list[str]]:
    """DiaSafety, casual and negative sources of `split`; returns casual dialogues (for small-talk prefixes)."""
    from prosocial.data.adapters import load_benchmark

    self_harm = classes.index("self_harm")
    for example in load_benchmark("diasafety", split, root=root):
        category = example.meta.get("category")
        if category == "Unauthorized Expertise" and example.safety_label.coarse is Coarse.NEEDS_INTERVENTION:
            continue  # a medical red flag (mapping.MEDICAL_RED_FLAG): neither "none" nor a written category
        rows.add(example.context, self_harm if category == "Risk Ignorance" else 0, f"diasafety:{category}")
    dialogues: list[list[str]] = []
    for name in CASUAL_SOURCES:
        examples = load_benchmark(name, split, root=root)
        for example in rng.sample(examples, min(settings.casual_per_source, len(examples))):
            rows.add(example.context, 0, "casual")
            dialogues.append(list(example.context))
    if split == "train":
        for name, cap in NEGATIVE_SOURCES.items():
            examples = [e for e in load_benchmark(name, split, root=root)
                        if name != "ethics_commonsense" or e.safety_label.is_casual]
            for example in rng.sample(examples, min(cap, len(examples))):
                rows.add(example.context, 0, name)
    return dialogues


def _rate(mask: np.ndarray, where: np.ndarray) -> float:
    return float(mask[where].mean()) if where.any() else 0.0


def fit_thresholds(head: DangerHead, probs: np.ndarray, rows: Rows, settings: DangerTrainSettings) -> dict:
    """The lowest emergency threshold whose false hand-overs (benign look-alikes, casual turns, advice questions
    on dev) stay within `max_false_handover`, the lowest act threshold within the flagged bounds, and the
    intervention gate at the emergency mass of the 10th percentile of dev Risk Ignorance contexts."""
    groups = np.array(rows.groups)
    targets = np.array(rows.targets)
    emergency_classes = head._emergency
    emergency = (probs[:, 1:] * emergency_classes).sum(1)
    danger = probs[:, 1:].sum(1)
    benign = np.isin(groups, ["corpus:benign", "corpus:benign+prefix"])
    casual = groups == "casual"
    advice = groups == "diasafety:Unauthorized Expertise"
    is_emergency = (targets > 0) & np.append([False], emergency_classes)[targets]
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    emergency_threshold = next(
        (t for t in grid if max(_rate(emergency >= t, benign), _rate(emergency >= t, casual),
                                _rate(emergency >= t, advice)) <= settings.max_false_handover), 0.95)
    act_threshold = next(
        (t for t in grid if _rate(danger >= t, casual) <= settings.max_casual_flagged
         and _rate(danger >= t, benign) <= settings.max_benign_flagged), 0.95)
    risk = groups == "diasafety:Risk Ignorance"
    gate = float(np.quantile(emergency[risk], 0.1)) if risk.any() else 0.1
    report = {
        "emergency_threshold": float(emergency_threshold),
        "act_threshold": float(act_threshold),
        "intervention_gate": round(gate, 4),
        "dev_emergency_recall": _rate(emergency >= emergency_threshold, is_emergency & ~risk),
        "dev_risk_ignorance_emergency": _rate(emergency >= emergency_threshold, risk),
        "dev_false_handover_benign": _rate(emergency >= emergency_threshold, benign),
        "dev_false_handover_advice": _rate(emergency >= emergency_threshold, advice),
        "dev_casual_flagged": _rate(danger >= act_threshold, casual),
        "dev_benign_flagged": _rate(danger >= act_threshold, benign),
    }
    return report


def train_danger_head(model_dir: Path, root: Path | None = None, corpus: Path = CORPUS,
                      settings: DangerTrainSettings | None = None, out: Path | None = None) -> dict:
    """Train and save the danger head into `out` (default: `model_dir`); returns the fit report."""
    from prosocial.canary.mini import CanaryMini

    settings = settings or DangerTrainSettings()
    rng = random.Random(settings.seed)
    config = DangerConfig()
    classes = config.classes
    detector = CanaryMini(model_dir, danger=False)

    train, dev = Rows(), Rows()
    small_talk = public_rows(root, "train", classes, settings, rng, train)
    corpus_rows(read_corpus(corpus, ("train",)), classes, small_talk, rng, train)
    dev_talk = public_rows(root, "dev", classes, settings, rng, dev)
    corpus_rows(read_corpus(corpus, ("dev",)), classes, dev_talk, rng, dev)
    log.info("danger head: %d train and %d dev contexts", len(train.targets), len(dev.targets))

    features = detector.outputs(train.contexts)[1]
    head = Head.train(features, train.targets, len(classes), hidden=settings.hidden, balance=settings.balance,
                      weight_decay=settings.weight_decay, steps=settings.steps, lr=settings.lr, seed=settings.seed)
    danger = DangerHead(head, config)
    dev_probs = danger.probabilities(detector.outputs(dev.contexts)[1])
    report = fit_thresholds(danger, dev_probs, dev, settings)
    config.emergency_threshold = report["emergency_threshold"]
    config.act_threshold = report["act_threshold"]
    config.intervention_gate = report["intervention_gate"]
    counts: dict[str, int] = {}
    for group in train.groups:
        counts[group] = counts.get(group, 0) + 1
    config.meta = {
        "trained_on": counts,
        "dev": report,
        "settings": {k: v for k, v in settings.__dict__.items() if k != "extra"},
        "corpus": str(corpus.name),
    }
    danger.save(out or model_dir)
    return report
