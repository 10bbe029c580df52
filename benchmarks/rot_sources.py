"""Retrieval vs. generation as the source of Canary-mini's RoTs, on the same offensive SBIC dev posts.

    python benchmarks/rot_sources.py [--posts 150] [--out docs/reports/rot-sources.json]

- retrieval: the RoT bank (SBIC train RoTs + norms in ProsocialDialog replies), nearest posts' RoTs, k = 1, 2;
- generation: SmolLM2-135M-Instruct (packaged GGUF, llama.cpp) prompted with four SBIC *train* posts and
  their RoTs (few-shot), greedy, one RoT per post.
Scores are ParlAI BLEU-4 and unigram F1 (×100) against the SBIC-derived references (best reference).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from prosocial.canary.base import Verdict
from prosocial.canary.mini_train import rot_bank_entries
from prosocial.canary.rotbank import Embedder, RotBank
from prosocial.data.adapters import default_root, load_benchmark
from prosocial.data.labels import SafetyLabel
from prosocial.eval.safety_suite import rot_scores
from prosocial.io import write_json
from prosocial.lm import load_lm

INSTRUCTION = "Write a rule of thumb that says what is wrong with each statement.\n\n"


def few_shot_prompt(shots, post: str) -> str:
    lines = [INSTRUCTION]
    for example in shots:
        lines.append(f"Statement: {example.context[-1]}\nRule of thumb: {example.rots[0]}\n\n")
    lines.append(f"Statement: {post}\nRule of thumb:")
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=150)
    parser.add_argument("--out", default="docs/reports/rot-sources.json")
    args = parser.parse_args()
    root = default_root()
    posts = [e for e in load_benchmark("sbic", "dev", root=root) if e.rots][: args.posts]
    shots = [e for e in load_benchmark("sbic", "train", root=root) if e.rots][:4]
    results = {}

    bank = RotBank.build(rot_bank_entries(root, [root / "prosocial_dialog_partial" / "train.json"]), Embedder())
    for k in (1, 2):
        started = time.perf_counter()
        found = bank.search([p.context for p in posts], k=k)
        verdicts = [Verdict(SafetyLabel.NEEDS_CAUTION, rots=r) for r in found]
        results[f"retrieval k={k}"] = {**rot_scores(verdicts, posts), "seconds": time.perf_counter() - started}

    lm = load_lm("llamacpp")
    started = time.perf_counter()
    outputs = lm.generate([few_shot_prompt(shots, p.context[-1]) for p in posts], max_new_tokens=32, stop=["\n"])
    verdicts = [Verdict(SafetyLabel.NEEDS_CAUTION, rots=[o.strip()]) for o in outputs]
    results["SmolLM2 few-shot"] = {**rot_scores(verdicts, posts), "seconds": time.perf_counter() - started}
    results["examples"] = [
        {"post": p.context[-1], "gold": p.rots, "retrieval": r[:1], "generated": o.strip()}
        for p, r, o in list(zip(posts, bank.search([p.context for p in posts[:5]], k=1), outputs, strict=False))[:5]
    ]
    write_json(args.out, {"posts": len(posts), "split": "sbic dev (offensive posts with RoTs)", "results": results})
    print(json.dumps({k: v for k, v in results.items() if k != "examples"}, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
