"""Speed of a detector on this machine: cold start, single-check latency, batch throughput with and without RoTs.

    python benchmarks/bench_canary.py [--detector canary-mini[:model_dir=DIR]] [--out docs/reports/canary-speed.json]

Contexts are dev examples from the safety suite (ToxiChat, SBIC, casual dialogue); nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from prosocial.canary import load_detector
from prosocial.data.adapters import load_benchmark
from prosocial.eval.reports import parse_spec
from prosocial.eval.safety_suite import CASUAL
from prosocial.io import write_json

COLD_START = (
    "import time; t = time.perf_counter(); from prosocial.canary import load_detector; "
    "d = load_detector({name!r}, **{settings!r}); d.check(['I want to pull the fire alarm as a prank.']); "
    "print(time.perf_counter() - t)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="canary-mini", help="NAME[:key=value,...] as in prosocial eval")
    parser.add_argument("--contexts", type=int, default=2000)
    parser.add_argument("--out", default="docs/reports/canary-speed.json")
    args = parser.parse_args()
    _, backend, settings = parse_spec(args.detector)

    colds = [
        float(subprocess.run([sys.executable, "-c", COLD_START.format(name=backend, settings=settings)], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1])
        for _ in range(3)
    ]
    examples = load_benchmark("toxichat", "dev") + load_benchmark("sbic", "dev")
    for name in CASUAL:
        examples += load_benchmark(name, "dev", limit=200)
    contexts = [e.context for e in examples][: args.contexts]
    flagged = [e.context for e in load_benchmark("sbic", "dev") if e.rots][:200]

    detector = load_detector(backend, **settings)
    detector.predict(contexts[:64])  # warm up: load weights, first allocations
    started = time.perf_counter()
    detector.predict(contexts, with_rots=False)
    label_only = len(contexts) / (time.perf_counter() - started)
    detector.predict(flagged[:8])
    started = time.perf_counter()
    detector.predict(flagged, with_rots=True)
    with_rots = len(flagged) / (time.perf_counter() - started)
    latencies = []
    for context in contexts[:100]:
        started = time.perf_counter()
        detector.check(context)
        latencies.append(time.perf_counter() - started)
    result = {
        "detector": args.detector,
        "cold_start_s_median_of_3": statistics.median(colds),
        "label_only_contexts_per_s": label_only,
        "label_only_contexts": len(contexts),
        "with_rots_contexts_per_s": with_rots,
        "with_rots_contexts": len(flagged),
        "single_check_ms_median": 1000 * statistics.median(latencies),
        "single_check_ms_p90": 1000 * sorted(latencies)[int(0.9 * len(latencies))],
        "machine": "2 CPU cores, no GPU",
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
