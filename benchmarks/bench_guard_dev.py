"""What the reply guard costs in reply quality: the agent on train-tail dev dialogues, per guard, F1 against gold.

    .venv/bin/python benchmarks/bench_guard_dev.py --rows 200 [--guards none rules rules+judge] [--out FILE]

The last `--rows` rows of the ProsocialDialog train file (Prost-mini's dev rows: never trained on), each with its
dialogue's earlier turns (the file's shipped links, cut at the start of the block), go through the agent
(Canary-mini + Prost-mini) with each guard: none, the rules (`ReplyGuard()`), the rules and the learned agreement
judge (the agent's default). Printed per guard: unigram F1 and BLEU-4 (x100) against the gold replies, on
openers and later turns, and the guard's paths. Hand-overs are left out.

For comparing guards only: Canary-mini's RoT bank holds these train rows' norms, so the agent's replies are
grounded in near-gold RoTs more often than on unseen dialogues and the absolute F1 is inflated; and llama.cpp's
batched decoding makes two runs of one guard differ by about 0.3 F1. `benchmarks/bench_prost_guard.py` measures
agreement and loops on validation contexts.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter

from prosocial.canary import load_detector
from prosocial.io import write_json
from prosocial.lm.history import load_links, with_history
from prosocial.prost import load_generator
from prosocial.prost.agreement import AgreementJudge
from prosocial.prost.guard import ReplyGuard
from prosocial.prost.mini import MAX_TURNS, PROSOCIAL_TRAIN, read_partial_rows
from prosocial.scoring import bleu4, unigram_f1
from prosocial.steer import ProsocialAgent

GUARDS = ("none", "rules", "rules+judge")


def guard(name: str) -> ReplyGuard | bool:
    if name == "none":
        return False
    return ReplyGuard(judge=AgreementJudge.load() if name == "rules+judge" else None)


def measure(contexts: list[list[str]], golds: list[str], turns: list) -> dict:
    kept = [i for i, t in enumerate(turns) if not t.escalated]

    def mean(values: list[float]) -> float:
        return round(100 * statistics.mean(values), 2) if values else 0.0

    f1 = {i: unigram_f1(turns[i].response, golds[i]) for i in kept}
    return {
        "replies": len(kept),
        "f1": mean(list(f1.values())),
        "bleu4": mean([bleu4(turns[i].response, golds[i]) for i in kept]),
        "f1_openers": mean([f1[i] for i in kept if len(contexts[i]) == 1]),
        "f1_later_turns": mean([f1[i] for i in kept if len(contexts[i]) > 1]),
        "paths": dict(Counter(str(turns[i].guard) for i in kept)),
        "paths_later_turns": dict(Counter(str(turns[i].guard) for i in kept if len(contexts[i]) > 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="the last N train rows (Prost-mini's dev: at most 400)")
    parser.add_argument("--guards", nargs="+", choices=GUARDS, default=list(GUARDS))
    parser.add_argument("--out", default=None, help="write the numbers and the replies as JSON here")
    args = parser.parse_args()

    rows = read_partial_rows(PROSOCIAL_TRAIN)
    ids = load_links("train", len(rows))
    contexts = with_history(rows[-args.rows:], ids[-args.rows:], MAX_TURNS)
    golds = [reply for _, reply in rows[-args.rows:]]
    detector, generator = load_detector("canary-mini"), load_generator("prost-mini")
    result: dict = {"rows": args.rows, "later_turns": sum(len(c) > 1 for c in contexts), "guards": {}}
    for name in args.guards:
        turns = ProsocialAgent(detector, generator, guard=guard(name)).respond_batch(contexts)
        result["guards"][name] = measure(contexts, golds, turns) | {"replies_text": [t.response for t in turns]}
        print(name, json.dumps({k: v for k, v in result["guards"][name].items() if k != "replies_text"}), flush=True)
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
