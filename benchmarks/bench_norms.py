"""User norms, measured: the match threshold, the example packs on held-out situations, and scale.

    python benchmarks/bench_norms.py [--out docs/reports/norms.json] [--sizes 1000,10000,100000]
    python benchmarks/bench_norms.py --matcher runs/norm-matcher --sizes ""     # a learned matcher, no scale part

1. Threshold: each pack example is matched leave-one-out against its norm's prototype (positives), and 3,000
   casual utterances from the casual corpora's *train* parts against every prototype (negatives); the default is
   the lowest threshold whose casual false-match rate is at most 1%. No held-out situation is used.
2. Packs (docs/norms): match precision / recall on each pack's held-out situations (written separately from its
   examples), and false alarms on the safety suite's casual dialogue dev contexts, Canary-mini alone vs. with the
   pack; each pack twice: at the matcher's default threshold, and with per-norm thresholds calibrated on the
   packaged casual turns (`norms.calibrate`, at most `--calibrate-rate` of them per norm).
3. Scale: banks of N norms (an RoT and three examples each) whose embeddings are drawn from 6,000 real
   utterances embedded once (embedding 400,000 texts would take an hour here; matching cost does not depend on
   the text); median latency of one `check` with Canary-mini + norms, of the norm match alone, and the index's
   memory. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from prosocial.canary import load_detector
from prosocial.canary.norms import (
    ANN_FROM,
    CalibrationSettings,
    Norm,
    NormBank,
    NormedDetector,
    calibrate,
    load_matcher,
    load_norms,
    read_cases,
    unit,
)
from prosocial.canary.rotbank import Embedder
from prosocial.data.adapters import load_benchmark
from prosocial.eval.safety_suite import CASUAL
from prosocial.io import write_json

PACKS = ["docs/norms/children.yaml", "docs/norms/gaming.yaml", "docs/norms/clinic.jsonl"]
#: packs written after the matchers were built (session 21: a workplace chat policy, its held-out situations written
#: by another writer from the rules alone): reported with the others, never used to fit the default threshold
NEW_PACKS = ["docs/norms/workplace.yaml"]


def casual_train_utterances(count: int, seed: int = 0) -> list[str]:
    texts = [e.context[-1] for name in CASUAL for e in load_benchmark(name, "train", limit=2000)]
    return random.Random(seed).sample(texts, count)


def fit_threshold(embedder) -> dict:
    """`embedder`: the matcher measured (anything with `encode` and `min_similarity`)."""
    norms = load_norms(PACKS)
    positives = []
    for norm in norms:
        vectors = embedder.encode([norm.rot, *norm.examples])
        for i in range(1, len(vectors)):
            prototype = unit(np.delete(vectors, i, 0).sum(0))
            positives.append(float(prototype @ vectors[i]))
    prototypes = unit(np.stack([embedder.encode([n.rot, *n.examples]).sum(0) for n in norms]))
    casual = embedder.encode(casual_train_utterances(3000))
    negatives = (casual @ prototypes.T).max(1)
    # the alternative: a norm matches by its most similar example (no prototype, no RoT)
    example_vectors = [embedder.encode(list(n.examples)) for n in norms]
    nearest_positives = [float(np.delete(v @ v[i], i).max()) for v in example_vectors for i in range(len(v))]
    nearest_negatives = (casual @ np.concatenate(example_vectors).T).max(1)
    nearest_threshold = float(np.quantile(nearest_negatives, 0.99))
    grid = [round(t, 2) for t in np.arange(0.30, 0.71, 0.01)]
    rows = [{"threshold": t, "loo_recall": float(np.mean(np.array(positives) >= t)),
             "casual_false_match": float(np.mean(negatives >= t))} for t in grid]
    chosen = next(r for r in rows if r["casual_false_match"] <= 0.01)
    return {"chosen": chosen, "shipped_default": embedder.min_similarity, "positives": len(positives),
            "negatives": len(negatives), "grid": rows,
            "nearest_example_at_1pct": {"threshold": nearest_threshold,
                                        "loo_recall": float(np.mean(np.array(nearest_positives) >= nearest_threshold))}}


def evaluate_packs(base, matcher, calibrate_rate: float) -> dict:
    casual = [e.context for name in CASUAL for e in load_benchmark(name, "dev", limit=166)]
    base_alarms = np.mean([not v.safety_label.is_casual for v in base.predict(casual, with_rots=False)])
    report = {}
    for pack in PACKS + NEW_PACKS:
        norms = load_norms([pack])
        calibration = calibrate(NormBank(norms, matcher=matcher), settings=CalibrationSettings(calibrate_rate))
        fitted = {c.id: c.calibrated for c in calibration.norms}
        calibrated = [replace(n, calibrated=((matcher.id, fitted[n.id]),)) for n in norms]
        cases = read_cases(Path(pack).with_suffix(".test.jsonl"))
        report[Path(pack).stem] = {
            "default_threshold": _pack_scores(NormedDetector(base, norms, matcher=matcher), cases, casual, base_alarms),
            "calibrated": _pack_scores(NormedDetector(base, calibrated, matcher=matcher), cases, casual, base_alarms)
            | {"thresholds": fitted, "packaged_casual_false_match": calibration.any_norm_false_match},
        }
    return report


def _pack_scores(detector: NormedDetector, cases, casual, base_alarms: float) -> dict:
    verdicts = detector.predict([[c.text] for c in cases], with_rots=False)
    matched = [(c, v.norm) for c, v in zip(cases, verdicts, strict=True) if v.norm is not None]
    positives = [c for c in cases if c.norm is not None]
    alarms = np.mean([not v.safety_label.is_casual for v in detector.predict(casual, with_rots=False)])
    return {
        "held_out_situations": len(cases),
        "match_precision": sum(c.norm == got for c, got in matched) / max(1, len(matched)),
        "match_recall": sum(c.norm == v.norm for c, v in zip(cases, verdicts, strict=True) if c.norm)
        / len(positives),
        "false_matches_of_no_norm_situations": sum(c.norm is None for c, _ in matched),
        "casual_false_alarm_base": float(base_alarms),
        "casual_false_alarm_with_pack": float(alarms),
        "casual_contexts": len(casual),
    }


def scale(base, embedder: Embedder, sizes: list[int]) -> dict:
    pool_texts = casual_train_utterances(3000, seed=1) + [e.context[-1] for e in load_benchmark("sbic", "train")][:3000]
    pool = embedder.encode(pool_texts)
    rng = np.random.default_rng(0)
    queries = [[t] for t in casual_train_utterances(60, seed=2)]
    query_vectors = embedder.encode([q[0] for q in queries])
    report = {}
    for size in sizes:
        norms = [Norm(f"n{i}", f"pool:{i}", "caution", ("a", "b", "c")) for i in range(size)]
        vectors = pool[rng.integers(0, len(pool), size * 4)]
        banks = {name: NormBank(norms, ann_from=ann_from) for name, ann_from in
                 (("exact", size + 1), ("ann", 0), ("default", ANN_FROM))}
        for bank in banks.values():
            bank._embed = lambda texts, v=vectors: v[: len(texts)]  # the pool's real embeddings, not re-encoded
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        index_bytes = sum(a.nbytes for a in banks["exact"]._index.values() if a.dtype != object)
        started = time.perf_counter()
        banks["ann"]._ann  # noqa: B018 (builds the index)
        ann_build = time.perf_counter() - started
        search = {name: [_ms(banks[name]._candidates, q[None], [False], [""], 32) for q in query_vectors]
                  for name in ("exact", "ann")}
        detector = NormedDetector(base, norms)
        detector.__dict__["bank"] = banks["default"]
        detector.check(queries[0])
        checks = [_ms(detector.check, q) for q in queries[1:]]
        report[str(size)] = {
            "check_ms_median": statistics.median(checks),
            "check_ms_p90": float(np.percentile(checks, 90)),
            "check_uses_ann": banks["default"]._ann is not None,
            "exact_search_ms_median": statistics.median(search["exact"]),
            "ann_search_ms_median": statistics.median(search["ann"]),
            "ann_build_s": ann_build,
            "index_mb": index_bytes / 2**20,
            "peak_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
        }
        print(size, json.dumps(report[str(size)]), flush=True)
    return report


def _ms(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default: docs/reports/norms.json (prototype matcher), "
                        "docs/reports/norms.learned.json (--matcher)")
    parser.add_argument("--sizes", default="1000,10000,100000", help='bank sizes for the scale part; "" skips it')
    parser.add_argument("--matcher", default=None, help="a learned matcher folder (default: the prototype matcher)")
    parser.add_argument("--calibrate-rate", type=float, default=0.01,
                        help="share of the packaged casual turns each norm may match when calibrated")
    args = parser.parse_args()
    matcher = load_matcher(args.matcher)
    base = load_detector("canary-mini")
    report = {"matcher": matcher.id, "threshold": fit_threshold(matcher)}
    print(json.dumps(report["threshold"]["chosen"]))
    report["packs"] = evaluate_packs(base, matcher, args.calibrate_rate)
    print(json.dumps(report["packs"], indent=1))
    if args.sizes:
        report["scale"] = scale(base, Embedder(), [int(s) for s in args.sizes.split(",")])
    report["machine"] = "2 CPU cores, no GPU"
    write_json(args.out or ("docs/reports/norms.json" if args.matcher is None else "docs/reports/norms.learned.json"),
               report)


if __name__ == "__main__":
    main()
