"""Build the reply-agreement judge (`prosocial.prost.agreement`) from DiaSafety's training split.

    .venv/bin/python scripts/train_reply_agreement.py --out src/prosocial/resources/reply-agreement  # ~40 s

Fits the head on DiaSafety train (contexts that also occur in val are dropped by the loader), sets the threshold
on a held-out slice of it, and records the precision and recall on DiaSafety val per category in the config.
`benchmarks/judge_condone.py` then compares it with the rules and the ToxiChat stance evaluator on every held-out slice.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from prosocial.io import atomic_write
from prosocial.prost.agreement import CATEGORIES, diasafety_pairs, train_agreement_judge


def precision_recall(flags: list[bool], gold: list[bool]) -> dict[str, float | int | None]:
    tp = sum(f and g for f, g in zip(flags, gold, strict=True))
    return {"n": len(gold), "flagged": sum(flags), "precision": round(tp / sum(flags), 3) if any(flags) else None,
            "recall": round(tp / sum(gold), 3) if any(gold) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--min-precision", type=float, default=0.85)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    judge = train_agreement_judge(diasafety_pairs("train"), min_precision=args.min_precision)
    dev = diasafety_pairs("dev")
    scores = judge.probabilities([p.turn for p in dev], [p.reply for p in dev])
    flags = [bool(s >= judge.threshold) for s in scores]
    judge.config["diasafety_val"] = {
        category: precision_recall([f for f, p in zip(flags, dev, strict=True) if p.category == category],
                                   [p.agrees for p in dev if p.category == category])
        for category in CATEGORIES
    }
    judge.save(args.out)
    print(json.dumps(judge.config | {"threshold": judge.threshold}, indent=2))
    with atomic_write(args.out / "MODEL_CARD.md") as handle:
        handle.write(model_card(judge.config, judge.threshold, float(np.mean(flags))))


def model_card(config: dict, threshold: float, flagged_share: float) -> str:
    rows = "\n".join(f"| {c} | {m['n']} | {m['flagged']} | {m['precision']} | {m['recall']} |"
                     for c, m in config["diasafety_val"].items())
    return f"""# Reply-agreement judge

Does a chatbot reply agree with, or go along with, the user's problematic turn? The agent's reply guard uses it
beside its rules by default (`ProsocialAgent`; `guard=ReplyGuard()` leaves it out; see
`docs/reports/prost-guard.md` for what it changes), and `benchmarks/bench_prost_guard.py` judges replies with it.

- **Model**: {config["encoder"]}; a logistic head (fp16), threshold {threshold:.3f}.
- **Data**: {config["data"]} (Unsafe = the reply agrees or goes along): {config["fitted_pairs"]} pairs fitted,
  {config["calibration_pairs"]} held out (whole contexts) to set the threshold at the lowest score with precision
  ≥ {config["min_precision"]} there. ToxiChat is not used, so its stance evaluator stays an independent judge.
- **Build**: `python scripts/train_reply_agreement.py --out DIR` (40 s on 2 idle cores).

## Held-out: DiaSafety val

| category | n | flagged | precision | recall |
|---|---|---|---|---|
{rows}

{flagged_share:.1%} of the val replies of both categories are flagged. The comparison with the guard's rules and the
ToxiChat stance evaluator on every held-out slice is `benchmarks/judge_condone.py` (`docs/reports/condone-judges.json`).

## Limits

DiaSafety's replies are chatbot replies to single Reddit-style or self-disclosure turns; the judge sees only the
user's last turn and the reply. It does not know whether the turn was problematic: on a benign turn, agreeing is
fine, and a flag there costs a resample: it flags 10.3% of Prost-mini's replies to 97 casual openings
(`docs/reports/prost-guard.md`).
"""


if __name__ == "__main__":
    main()
