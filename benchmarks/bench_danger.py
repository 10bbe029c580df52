"""Danger: emergencies handed over, dangerous acts flagged, benign look-alikes left alone — detectors side by side.

    python benchmarks/bench_danger.py [--detectors canary-mini:danger=false canary-mini keywords profanity-check]
                                      [--no-suite] [--out docs/reports/danger.json]

Data (none of it trained on or used to fit a threshold):

- the danger corpus's **held-out** split (`src/prosocial/resources/danger/corpus.jsonl`, datasheet beside it):
  every row of writers B and H (crowds never trained on; H, added in session 20, wrote ordinary feelings that
  look like a crisis and suicidal thoughts in the same words: `heldout_before_session_20` leaves H out, for
  comparison with earlier reports) and every row of one unseen sub-category per category; alone,
  and after 1–3 turns of a casual dev dialogue from the shared data (the rows' own written prefixes are kept in
  both);
- XSTest's 250 safe prompts (Röttger et al. 2024, CC-BY-4.0; `benchmarks/data/xstest/`): benign look-alikes
  written by others ("How can I kill a Python process?");
- with the shared data: the safety suite's dev splits (`prosocial.eval.safety_suite`): DiaSafety Risk Ignorance
  → needs intervention, false alarms on casual dialogue and its short turns, mean balanced accuracy;
- speed: label-only contexts/s against a plain sentence-transformers all-MiniLM-L6-v2 encode of the same texts,
  one `check`'s median latency.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from prosocial.canary import load_detector
from prosocial.canary.danger_train import CASUAL_SOURCES, CORPUS
from prosocial.data.danger import (
    BENIGN_SUBCATEGORIES,
    BY_NAME,
    HELD_OUT_SUBCATEGORIES,
    HELD_OUT_WRITERS,
    DangerCase,
    read_corpus,
)
from prosocial.data.labels import Coarse
from prosocial.eval.reports import parse_spec
from prosocial.io import write_json

XSTEST = Path(__file__).parent / "data" / "xstest" / "xstest_prompts.csv"
#: parts of the held-out split reported apart (suffix → writers; None: all): the rows earlier reports measured
#: (a crowd joins the held-out split in the session named, and is first read by that session's run), and each
#: held-out crowd alone
CUTS: dict[str, tuple[str, ...] | None] = {
    "": None,
    "_before_session_20": ("A", "B", "C", "D"),
    "_before_session_21": ("A", "B", "C", "D", "H"),
    "_before_session_22": ("A", "B", "C", "D", "H", "I"),
    "_before_session_23": ("A", "B", "C", "D", "H", "I", "J"),
    "_before_session_24": ("A", "B", "C", "D", "H", "I", "J", "M"),
    **{f"_writer_{writer}": (writer,) for writer in HELD_OUT_WRITERS if writer != "B"},
}


def with_small_talk(cases: list[DangerCase], seed: int = 0) -> list[list[str]] | None:
    """Each case after 1-3 turns of a casual *dev* dialogue (None without the shared data)."""
    from prosocial.data.adapters import load_benchmark

    try:
        dialogues = [e.context for name in CASUAL_SOURCES for e in load_benchmark(name, "dev", limit=300)]
    except Exception:  # no shared data folder: the prefixed rows are skipped, and said so
        return None
    rng = random.Random(seed)
    out = []
    for case in cases:
        turns = rng.choice(dialogues)
        start = rng.randrange(max(1, len(turns) - 2))
        out.append([*turns[start : start + rng.randint(1, 3)], *case.context])
    return out


def rate(hits: list[bool]) -> dict:
    return {"rate": sum(hits) / len(hits) if hits else None, "n": len(hits)}


def score_cases(cases: list[DangerCase], verdicts: list) -> dict:
    emergencies = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.kind == "emergency"]
    acts = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.kind == "act"]
    benign = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.kind == "benign"]
    handed = [(c, v) for c, v in emergencies if v.coarse is Coarse.NEEDS_INTERVENTION]
    per_category = {}
    for name in BY_NAME:
        rows = [(c, v) for c, v in emergencies + acts if c.category == name]
        want = Coarse.NEEDS_INTERVENTION if BY_NAME[name].level.value == "emergency" else None
        per_category[name] = rate([(v.coarse is want) if want else not v.safety_label.is_casual for _, v in rows])
    misses = [c.text for c, v in emergencies if v.coarse is not Coarse.NEEDS_INTERVENTION][:15]
    false_handovers = [c.text for c, v in benign if v.coarse is Coarse.NEEDS_INTERVENTION]
    return {
        "emergencies_handed_over": rate([v.coarse is Coarse.NEEDS_INTERVENTION for _, v in emergencies]),
        "emergencies_flagged": rate([not v.safety_label.is_casual for _, v in emergencies]),
        "acts_flagged": rate([not v.safety_label.is_casual for _, v in acts]),
        "benign_handed_over": rate([v.coarse is Coarse.NEEDS_INTERVENTION for _, v in benign]),
        "benign_flagged": rate([not v.safety_label.is_casual for _, v in benign]),
        "handover_category_right": rate([v.danger == c.category for c, v in handed]),
        "handover_kind_right": rate([v.danger is not None and BY_NAME[v.danger].handover == BY_NAME[c.category].handover
                                     for c, v in handed]),
        "per_category": per_category,
        # why a row is held out: a crowd never trained on (writers B and H), or a situation never trained on
        "emergencies_handed_over_new_crowd": rate([v.coarse is Coarse.NEEDS_INTERVENTION for c, v in emergencies
                                                   if c.writer in HELD_OUT_WRITERS]),
        "per_writer": {w: {"emergencies_handed_over": rate([v.coarse is Coarse.NEEDS_INTERVENTION
                                                             for c, v in emergencies if c.writer == w]),
                           "acts_flagged": rate([not v.safety_label.is_casual for c, v in acts if c.writer == w]),
                           "benign_handed_over": rate([v.coarse is Coarse.NEEDS_INTERVENTION
                                                       for c, v in benign if c.writer == w]),
                           "benign_flagged": rate([not v.safety_label.is_casual for c, v in benign if c.writer == w])}
                       for w in HELD_OUT_WRITERS},
        "benign_handed_over_by_kind": {kind: rate([v.coarse is Coarse.NEEDS_INTERVENTION for c, v in benign
                                                   if c.subcategory == kind]) for kind in BENIGN_SUBCATEGORIES},
        "emergencies_handed_over_unseen_situation": rate([v.coarse is Coarse.NEEDS_INTERVENTION for c, v in emergencies
                                                          if HELD_OUT_SUBCATEGORIES[c.category] == c.subcategory]),
        "examples_missed": misses,
        "examples_false_handover": false_handovers[:15],
    }


def xstest_prompts() -> list[str]:
    with XSTEST.open(encoding="utf-8") as f:
        return [row["prompt"] for row in csv.DictReader(f) if row["label"] == "safe"]


def speed(detector, texts: list[str]) -> dict:
    """Label-only throughput against a plain sentence-transformers MiniLM encode, and one check's latency."""
    import torch
    from sentence_transformers import SentenceTransformer

    from prosocial.canary.encoders import packaged_minilm

    contexts = [[t] for t in texts]
    detector.predict(contexts[:32], with_rots=False)
    started = time.perf_counter()
    detector.predict(contexts, with_rots=False)
    ours = len(texts) / (time.perf_counter() - started)
    model = SentenceTransformer(str(packaged_minilm()), device="cpu")
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if bf16:
        model = model.to(torch.bfloat16)
    model.encode(texts[:32])
    started = time.perf_counter()
    model.encode(texts, batch_size=32)
    plain = len(texts) / (time.perf_counter() - started)
    latencies = []
    for context in contexts[:100]:
        started = time.perf_counter()
        detector.check(context, with_rots=False)
        latencies.append(time.perf_counter() - started)
    return {"label_only_contexts_per_s": ours, "sentence_transformers_minilm_per_s": plain,
            "sentence_transformers_dtype": "bfloat16" if bf16 else "float32 (no native bfloat16 on this CPU)",
            "ratio": ours / plain, "single_check_ms_median": 1000 * statistics.median(latencies), "n": len(texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+",
                        default=["canary-mini:danger=false", "canary-mini", "keywords", "profanity-check"])
    parser.add_argument("--no-suite", action="store_true", help="Skip the safety suite (it needs the shared data).")
    parser.add_argument("--out", default="docs/reports/danger.json")
    args = parser.parse_args()

    cases = read_corpus(CORPUS, ("heldout",))
    prefixed = with_small_talk(cases)
    xstest = [[p] for p in xstest_prompts()]
    suite = None
    if not args.no_suite:
        from prosocial.eval.safety_suite import load_suite

        suite = load_suite()
    results: dict = {"data": {
        "heldout": dict(Counter(c.kind for c in cases)),
        "heldout_writers": dict(Counter(c.writer for c in cases)),
        "xstest_safe": len(xstest),
        "prefixed": prefixed is not None,
    }, "detectors": {}}
    for spec in args.detectors:
        label, backend, settings = parse_spec(spec)
        detector = load_detector(backend, **settings)
        print(f"== {label}", flush=True)
        out: dict = {}
        for name, contexts in (("heldout", [c.context for c in cases]), ("heldout_after_small_talk", prefixed)):
            if contexts is None:
                continue
            verdicts = detector.predict(contexts, with_rots=False)
            for cut, writers in CUTS.items():
                keep = [i for i, c in enumerate(cases) if writers is None or c.writer in writers]
                out[name + cut] = score_cases([cases[i] for i in keep], [verdicts[i] for i in keep])
        verdicts = detector.predict(xstest, with_rots=False)
        out["xstest_safe"] = {
            "handed_over": rate([v.coarse is Coarse.NEEDS_INTERVENTION for v in verdicts]),
            "flagged": rate([not v.safety_label.is_casual for v in verdicts]),
            "examples_handed_over": [x[0] for x, v in zip(xstest, verdicts, strict=True)
                                     if v.coarse is Coarse.NEEDS_INTERVENTION][:10],
        }
        if suite is not None:
            from prosocial.eval.safety_suite import evaluate_detector

            result = evaluate_detector(detector, suite)
            per = result["per_source"]
            out["suite"] = {
                "mean_balanced_accuracy": result["mean_balanced_accuracy"],
                "mean_balanced_accuracy_first_suite": result["mean_balanced_accuracy_first_suite"],
                "risk_ignorance_intervention": per["diasafety"].get("risk_ignorance_intervention_recall"),
                "risk_ignorance_crisis_intervention": per["diasafety"].get("risk_ignorance_crisis_intervention_recall"),
                "risk_ignorance_distress_handed_over": per["diasafety"].get("risk_ignorance_distress_handed_over"),
                "casual_false_alarms": per["casual dialogue"]["false_alarm_rate"],
                "short_casual_false_alarms": per["casual dialogue"].get("short_false_alarm_rate"),
                "per_source_balanced_accuracy": {k: v["balanced_accuracy"] for k, v in per.items()},
            }
        if backend == "canary-mini":
            out["speed"] = speed(detector, [c.text for c in cases] * 2 + [x[0] for x in xstest])
        results["detectors"][label] = out
        print(json.dumps({k: v for k, v in out.items() if k != "suite"}, indent=1)[:3000], flush=True)
    write_json(args.out, results)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
