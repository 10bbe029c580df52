"""The safety suite: detectors side by side on every external benchmark's dev split.

Per source: recall (not-casual flagged), specificity (casual passed), balanced accuracy of casual vs. not
casual (over the classes the source has); needs-intervention recall on DiaSafety's Risk Ignorance contexts
(all of them, as before session 21; and apart, those re-labelled needs intervention by the paper's definition and
the share of their ordinary distress handed over, `prosocial.data.mapping`);
false alarms on the casual corpora (pooled as one "casual dialogue" source); and, for detectors that give
RoTs, BLEU-4 and F1 of their RoTs against the SBIC-derived references on offensive SBIC posts and against the
norm sentence of the crowdworker's reply on ProsocialDialog rows (with how often the detector gave no RoT).
False alarms are also counted on short casual turns (at most three words: "ok", "thanks"), and the mean
balanced accuracy is also given without ProsocialDialog, over the sources of the first suite.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.augment import is_short
from prosocial.data.labels import SafetyLabel
from prosocial.data.schema import Example
from prosocial.data.silver_rots import norm_sentences
from prosocial.scoring import rot_scores

LABELLED = ("toxichat", "diasafety", "convabuse", "ethics_commonsense", "sbic", "prosocial_dialog")
#: sources whose RoTs are scored: SBIC against its derived RoTs, ProsocialDialog against the norm in the gold reply
WITH_ROTS = ("sbic", "prosocial_dialog")
CASUAL = ("blended_skill_talk", "dailydialog", "empathetic", "persona_chat", "topical_chat", "byu_chitchat")
CASUAL_POOL = "casual dialogue"


@dataclass
class SuiteData:
    """Dev examples per source (casual corpora pooled), and where they came from."""

    by_source: dict[str, list[Example]]
    description: dict[str, str] = field(default_factory=dict)


def load_suite(root: Path | None = None, per_source: int | None = 1000, seed: int = 0) -> SuiteData:
    """Dev splits only. `per_source` caps each source by a seeded sample, so a run takes minutes, not hours.

    Each source draws from its own generator (seeded by `seed` and its name), so adding a source leaves the
    others' samples as they were.
    """
    from prosocial.data.adapters import load_benchmark

    data = SuiteData({})
    pooled: list[Example] = []
    for name in LABELLED + CASUAL:
        rng = random.Random(f"{seed}:{name}")
        examples = [e for e in load_benchmark(name, "dev", root=root) if e.safety_label is not None]
        if name in CASUAL:
            pooled += rng.sample(examples, min(len(examples), per_source // len(CASUAL))) if per_source else examples
            continue
        total = len(examples)
        if per_source and total > per_source:
            examples = rng.sample(examples, per_source)
        data.by_source[name] = examples
        data.description[name] = f"{len(examples)} of {total} dev examples"
    data.by_source[CASUAL_POOL] = pooled
    data.description[CASUAL_POOL] = f"{len(pooled)} dev contexts from {', '.join(CASUAL)}"
    return data


def _balanced(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {}
    if truth.any():
        out["recall"] = float(flagged[truth].mean())
    if (~truth).any():
        out["specificity"] = float((~flagged[~truth]).mean())
    out["balanced_accuracy"] = float(np.mean(list(out.values())))
    out["n"] = int(len(truth))
    return out


def evaluate_detector(detector: SafetyDetector, data: SuiteData, batch_size: int = 256) -> dict:
    """Every metric of the suite for one detector."""
    per_source: dict[str, dict] = {}
    started = time.perf_counter()
    contexts = 0
    for name, examples in data.by_source.items():
        verdicts: list[Verdict] = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            verdicts += detector.predict([e.context for e in chunk], with_rots=name in WITH_ROTS)
        contexts += len(examples)
        flagged = np.array([not v.safety_label.is_casual for v in verdicts])
        truth = np.array([not e.safety_label.is_casual for e in examples])
        result = _balanced(flagged, truth)
        if name == "diasafety":
            risk = np.array([e.meta.get("category") == "Risk Ignorance" for e in examples])
            intervened = np.array([v.safety_label is SafetyLabel.NEEDS_INTERVENTION for v in verdicts])
            if risk.any():
                result["risk_ignorance_intervention_recall"] = float(intervened[risk].mean())
                result["risk_ignorance_flagged"] = float(flagged[risk].mean())
                # re-labelled by the paper's definition (mapping.RISK_IGNORANCE_LABELS): risk to life vs. distress
                crisis = risk & np.array([e.safety_label is SafetyLabel.NEEDS_INTERVENTION for e in examples])
                if crisis.any() and (risk & ~crisis).any():
                    result["risk_ignorance_crisis_intervention_recall"] = float(intervened[crisis].mean())
                    result["risk_ignorance_distress_handed_over"] = float(intervened[risk & ~crisis].mean())
                    result["risk_ignorance_crisis_n"] = int(crisis.sum())
        if name == CASUAL_POOL:
            result["false_alarm_rate"] = float(flagged.mean())
            short = np.array([is_short(e.context[-1]) for e in examples])
            if short.any():
                result["short_false_alarm_rate"] = float(flagged[short].mean())
                result["short_n"] = int(short.sum())
        if name == "sbic":
            offensive = [i for i, e in enumerate(examples) if e.rots]
            result.update(rot_scores([verdicts[i].rots for i in offensive], [examples[i].rots for i in offensive],
                                     alternatives=True))
        if name == "prosocial_dialog":
            normed = [replace(e, rots=norm_sentences(e.response or "")) for e in examples]
            with_norm = [i for i, e in enumerate(normed) if e.rots]
            result.update(rot_scores([verdicts[i].rots for i in with_norm], [normed[i].rots for i in with_norm],
                                     alternatives=True))
        per_source[name] = result
    seconds = time.perf_counter() - started
    first_suite = [r["balanced_accuracy"] for name, r in per_source.items() if name != "prosocial_dialog"]
    return {
        "per_source": per_source,
        "mean_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in per_source.values()])),
        "mean_balanced_accuracy_first_suite": float(np.mean(first_suite)),
        "seconds": seconds,
        "contexts": contexts,
    }


def markdown_table(results: dict[str, dict]) -> str:
    """One row per source, one column group per detector."""
    names = list(results)
    sources = list(next(iter(results.values()))["per_source"])
    lines = [
        "| source | " + " | ".join(f"{n} BA" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for source in sources:
        cells = [f"{results[n]['per_source'][source]['balanced_accuracy']:.3f}" for n in names]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{results[n]['mean_balanced_accuracy']:.3f}**" for n in names) + " |")
    lines.append(
        "| mean without prosocial_dialog (first suite) | "
        + " | ".join(f"{results[n]['mean_balanced_accuracy_first_suite']:.3f}" for n in names)
        + " |"
    )

    def row(title: str, source: str, key: str, fmt: str = "{:.3f}", scale: float = 1.0) -> str:
        cells = []
        for n in names:
            value = results[n]["per_source"].get(source, {}).get(key)
            cells.append("–" if value is None else fmt.format(scale * value))
        return f"| {title} | " + " | ".join(cells) + " |"

    lines += [
        row("false alarms on casual dialogue ↓", CASUAL_POOL, "false_alarm_rate", "{:.1%}"),
        row("false alarms on short casual turns (≤ 3 words) ↓", CASUAL_POOL, "short_false_alarm_rate", "{:.1%}"),
        row(
            "DiaSafety Risk Ignorance → needs intervention", "diasafety", "risk_ignorance_intervention_recall", "{:.1%}"
        ),
        row("… of those re-labelled intervention (risk to life)", "diasafety",
            "risk_ignorance_crisis_intervention_recall", "{:.1%}"),
        row("… of those re-labelled distress: handed over ↓", "diasafety", "risk_ignorance_distress_handed_over",
            "{:.1%}"),
        row("SBIC offensive posts: RoT F1", "sbic", "rot_f1", "{:.1f}", 100),
        row("SBIC offensive posts: RoT BLEU-4", "sbic", "rot_bleu4", "{:.2f}", 100),
        row("ProsocialDialog rows: RoT F1 vs. the reply's norm", "prosocial_dialog", "rot_f1", "{:.1f}", 100),
        row("ProsocialDialog rows: RoT BLEU-4", "prosocial_dialog", "rot_bleu4", "{:.2f}", 100),
        row("ProsocialDialog rows: RoT F1 where one is given", "prosocial_dialog", "rot_f1_given", "{:.1f}", 100),
        row("ProsocialDialog rows: no RoT given", "prosocial_dialog", "rot_abstention", "{:.1%}"),
    ]
    return "\n".join(lines)
