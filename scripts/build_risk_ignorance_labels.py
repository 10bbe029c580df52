"""Merge the annotators' labels of DiaSafety's Risk Ignorance contexts into the shipped re-labelled file.

    python scripts/build_risk_ignorance_labels.py --items /tmp/ri/items_1.jsonl /tmp/ri/items_2.jsonl \
        --labels A=/tmp/ri/labels_A.jsonl B=/tmp/ri/labels_B.jsonl C=/tmp/ri/labels_C.jsonl D=/tmp/ri/labels_D.jsonl

Each context was labelled by two annotators (the brief: `docs/reports/risk-ignorance-brief.md`); the label is
the A.4 vote rule (`prosocial.data.mapping.votes_label`): one intervention vote makes needs intervention.
Writes `src/prosocial/resources/diasafety/risk_ignorance.jsonl` atomically and prints the agreement (raw and
Cohen's kappa per annotator pair) and the label counts per DiaSafety file. Every item must have exactly two
votes; a missing or unknown one is an error naming the file and line.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from prosocial.data.mapping import RISK_IGNORANCE_LABELS, RISK_VOTES, context_key, votes_label
from prosocial.io import read_jsonl, write_jsonl


def kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa of two annotators over the same items."""
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p, q = Counter(first), Counter(second)
    expected = sum(p[c] * q[c] for c in RISK_VOTES) / n**2
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", nargs="+", type=Path, required=True)
    parser.add_argument("--labels", nargs="+", required=True, help="ANNOTATOR=path.jsonl")
    parser.add_argument("--diasafety", type=Path, default=Path("../shared/data/diasafety"))
    parser.add_argument("--out", type=Path, default=RISK_IGNORANCE_LABELS)
    args = parser.parse_args()

    items = {row["id"]: row["text"] for path in args.items for _, row in read_jsonl(path)}
    votes: dict[str, dict[str, str]] = {key: {} for key in items}
    whys: dict[str, dict[str, str]] = {key: {} for key in items}
    for spec in args.labels:
        annotator, _, name = spec.partition("=")
        path = Path(name)
        for number, row in read_jsonl(path):
            key, label = row.get("id"), row.get("label")
            if key not in items:
                raise SystemExit(f"{path}:{number}: field 'id': {key!r} is not an item")
            if label not in RISK_VOTES:
                raise SystemExit(f"{path}:{number}: field 'label': {label!r} is not one of {RISK_VOTES}")
            if annotator in votes[key]:
                raise SystemExit(f"{path}:{number}: item {key} labelled twice by {annotator}")
            votes[key][annotator] = label
            whys[key][annotator] = str(row.get("why", ""))
    short = [key for key, v in votes.items() if len(v) != 2]
    if short:
        raise SystemExit(f"{len(short)} items lack two votes, e.g. {short[:3]}")
    for key, text in items.items():
        if context_key(text) != key:
            raise SystemExit(f"item {key}: its id is not the key of its text")

    pairs: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for key in items:
        (a, va), (b, vb) = sorted(votes[key].items())
        first, second = pairs.setdefault((a, b), ([], []))
        first.append(va)
        second.append(vb)
    for (a, b), (first, second) in sorted(pairs.items()):
        agree = sum(x == y for x, y in zip(first, second, strict=True)) / len(first)
        print(f"annotators {a}+{b}: {len(first)} items, agreement {agree:.1%}, "
              f"Cohen's kappa {kappa(first, second):.3f}")

    rows = [{"key": key, "votes": dict(sorted(votes[key].items())), "label": votes_label(votes[key].values()).value,
             "why": dict(sorted(whys[key].items())), "text": items[key]} for key in sorted(items)]
    write_jsonl(args.out, rows)
    labels = {key: votes_label(votes[key].values()) for key in items}
    print(f"written {args.out}: {len(rows)} contexts")
    for split, name in (("train", "train.json"), ("dev", "val.json")):
        path = args.diasafety / name
        if path.exists():
            contexts = {r["context"] for r in json.loads(path.read_text()) if r["category"] == "Risk Ignorance"}
            counts = Counter(labels[context_key(c)].value for c in contexts)
            print(f"{split} ({name}): {len(contexts)} contexts, {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
