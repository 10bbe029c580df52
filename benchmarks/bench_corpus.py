"""Corpus labelling in one process and on a local Ray instance: rows/s, peak memory, identical outputs.

    python benchmarks/bench_corpus.py [--contexts 50000] [--shards 8] [--detector canary-mini] [--batch-size 64]
                                      [--work runs/bench-corpus] [--out docs/reports/corpus-scale.json]

The contexts are single utterances spread evenly over every utterance the shared data's benchmarks hold (repeated
when there are fewer), written as JSON Lines shards and labelled without RoTs (label and scores only). Each engine
runs in its own process; its peak memory is the largest sum of resident memory over that process and all its
children (Ray's raylet, GCS and actors included), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import psutil

from prosocial.io import write_json, write_jsonl


def contexts(count: int) -> tuple[list[list[str]], int]:
    """`count` one-utterance contexts spread evenly over the distinct utterances of every benchmark, and how many
    distinct utterances there are."""
    from prosocial.data.adapters import BENCHMARKS, load_benchmark

    seen: dict[str, None] = {}
    for name in BENCHMARKS:
        for split in ("train", "dev"):
            for example in load_benchmark(name, split):
                seen |= {u.strip(): None for u in example.context if u.strip()}
    utterances = list(seen)
    return [[utterances[i * len(utterances) // count % len(utterances)]] for i in range(count)], len(utterances)


def run(engine: str, inputs: Path, output: Path, detector: str, batch_size: int, cpus: int) -> None:
    """One engine's job (in a child process), printing its wall time as JSON."""
    from prosocial.jobs.corpus import check_rows, run_corpus

    if engine == "ray":
        import ray

        ray.init(num_cpus=cpus, object_store_memory=2**30, include_dashboard=False, logging_level="WARNING")
    started = time.perf_counter()
    report = run_corpus(str(inputs), str(output), partial(check_rows, detector, False), engine=engine,
                        actors=cpus if engine == "ray" else None, batch_size=batch_size)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": report.rows}))


def measured(command: list[str]) -> dict:
    """Run `command`; its JSON result plus the peak resident memory of its process tree."""
    process = psutil.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        tree = [process, *process.children(recursive=True)]
        total = 0
        for member in tree:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                pass
        peak = max(peak, total)
        time.sleep(0.2)
    stdout = process.stdout.read()
    if process.returncode:
        sys.exit(f"{command} failed with exit code {process.returncode}")
    return {**json.loads(stdout.strip().splitlines()[-1]), "peak_rss_mib": round(peak / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--detector", default="canary-mini")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (one actor each).")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-corpus"))
    parser.add_argument("--out", type=Path, default=Path("docs/reports/corpus-scale.json"))
    parser.add_argument("--run", choices=["local", "ray"], help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    inputs = args.work / "in"
    if args.run:
        run(args.run, inputs, args.work / args.run, args.detector, args.batch_size, args.cpus)
        return

    shutil.rmtree(args.work, ignore_errors=True)
    rows, distinct = contexts(args.contexts)
    per_shard = -(-len(rows) // args.shards)
    for shard in range(args.shards):
        part = rows[shard * per_shard : (shard + 1) * per_shard]
        write_jsonl(inputs / f"part-{shard:04d}.jsonl", [{"id": shard * per_shard + i, "context": c}
                                                         for i, c in enumerate(part)])
    results = {}
    for engine in ("local", "ray"):
        command = [sys.executable, __file__, "--run", engine, *sys.argv[1:]]
        results[engine] = measured(command)
        results[engine]["rows_per_s"] = round(results[engine]["rows"] / results[engine]["seconds"], 1)
        print(engine, results[engine], flush=True)
    names = sorted(p.name for p in (args.work / "local").iterdir())
    _, mismatch, errors = filecmp.cmpfiles(args.work / "local", args.work / "ray", names, shallow=False)
    report = {
        "detector": f"{args.detector} (labels and scores, no RoTs)",
        "contexts": len(rows),
        "distinct_utterances_in_shared_data": distinct,
        "shards": args.shards,
        "batch_size": args.batch_size,
        "ray_instance": f"local instance, num_cpus={args.cpus}, {args.cpus} actors, 1 GiB object store",
        "identical_outputs": not mismatch and not errors and len(names) == args.shards,
        **results,
        "command": " ".join(["python", "benchmarks/bench_corpus.py", *sys.argv[1:]]),
        "machine": f"{psutil.cpu_count()} CPU cores, {round(psutil.virtual_memory().total / 2**30)} GiB, no GPU",
    }
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
