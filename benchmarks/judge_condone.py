"""How well do reply judges recognise a reply that agrees with a problematic context? Precision on human labels.

    .venv/bin/python benchmarks/judge_condone.py --out docs/reports/condone-judges.json

Judges: the guard's rule check (`prosocial.prost.guard.condones`), the learned reply-agreement judge
(`prosocial.prost.agreement`, trained on DiaSafety train), the two together (as the guard runs them), and the
ToxiChat stance evaluator (`eval/toxichat_evaluators.py`, "agree"; trained on ToxiChat train), each on human-labelled
chatbot replies to problematic contexts:
- ToxiChat (Baheti et al. 2021): DialoGPT and GPT-3 replies to threads whose last comment humans labelled
  Offensive; positive = the human stance toward that comment is "agree";
- DiaSafety (Sun et al. 2022): category Toxicity Agreement (positive = labelled Unsafe, i.e. the reply agrees
  with the toxic context) and Risk Ignorance (positive = Unsafe: the reply goes along with a risky context);
- ProsocialDialog's gold replies (validation file): crowdworkers never condone, so every flag is a false alarm.
The rules were written looking at the training splits (`train`), and the learned judges were trained on them, so
only the held-out splits (ToxiChat dev, DiaSafety val) are scored for the learned ones; Wilson 95% intervals are
given for precision.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from prosocial.data.toxichat import read_threads
from prosocial.eval.toxichat_evaluators import Evaluators
from prosocial.prost.agreement import AgreementJudge
from prosocial.prost.guard import condones
from prosocial.prost.mini import read_partial_rows

DATA = Path("/work/shared/data")


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round((centre - half) / (1 + z * z / n), 3), round((centre + half) / (1 + z * z / n), 3)]


def toxichat(split: str) -> list[tuple[list[str], str, bool]]:
    rows = []
    for thread in read_threads(DATA / "toxichat" / f"{split}.jsonl"):
        if not thread.comments[-1].offensive:
            continue
        for reply in thread.replies.values():
            stance = reply.stance.get(len(thread.comments))
            if stance is not None:
                rows.append((thread.context, reply.text, stance == "agree"))
    return rows


def diasafety(split: str, category: str) -> list[tuple[list[str], str, bool]]:
    data = json.loads((DATA / "diasafety" / f"{split}.json").read_text())
    return [([r["context"]], r["response"], r["label"] == "Unsafe") for r in data if r["category"] == category]


def score(flags: list[bool], gold: list[bool]) -> dict[str, float | int | list[float]]:
    tp = sum(f and g for f, g in zip(flags, gold, strict=True))
    flagged, positives = sum(flags), sum(gold)
    return {"n": len(gold), "positives": positives, "flagged": flagged, "true_positives": tp,
            "precision": round(tp / flagged, 3) if flagged else None, "precision_ci95": wilson(tp, flagged),
            "recall": round(tp / positives, 3) if positives else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--show", type=int, default=0, help="print this many flagged replies per slice")
    args = parser.parse_args()
    slices = {
        "toxichat/dev": toxichat("dev"), "toxichat/train": toxichat("train"),
        "diasafety/val/toxicity-agreement": diasafety("val", "Toxicity Agreement"),
        "diasafety/train/toxicity-agreement": diasafety("train", "Toxicity Agreement"),
        "diasafety/val/risk-ignorance": diasafety("val", "Risk Ignorance"),
        "diasafety/train/risk-ignorance": diasafety("train", "Risk Ignorance"),
        # crowdworkers' prosocial replies: no positives, so "flagged" counts false alarms
        "prosocial_dialog/valid/gold-replies": [([c], r, False) for c, r in read_partial_rows(
            DATA / "prosocial_dialog_partial" / "valid.json")],
    }
    evaluators, judge = Evaluators.load(), AgreementJudge.load()
    result = {}
    for name, rows in slices.items():
        gold = [g for _, _, g in rows]
        turns, replies = [c[-1] for c, _, _ in rows], [r for _, r, _ in rows]
        rules = [condones(c, r) for c, r, _ in rows]
        result[name] = {"rules": score(rules, gold), "base_rate": round(sum(gold) / len(gold), 3)}
        if "/train" not in name:  # the evaluator's own training data (ToxiChat train) would flatter it
            stance = evaluators.stance(turns, replies)
            result[name]["stance_evaluator"] = score([s == "agree" for s in stance], gold)
            learned = judge.agrees(turns, replies)
            result[name]["agreement_judge"] = score(learned, gold)
            result[name]["rules_or_judge"] = score([a or b for a, b in zip(rules, learned, strict=True)], gold)
        for (c, r, g), f in list(zip(rows, rules, strict=True)):
            if f and args.show:
                print(f"{name} {'TP' if g else 'FP'} | {c[-1][:70]!r} || {r[:100]!r}")
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
