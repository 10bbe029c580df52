"""Choose Prost-mini's `rot_bias` on dev rows: how readily it opens a "Rule of thumb:" line before replying.

    .venv/bin/python benchmarks/tune_prost_rot_bias.py --adapter DIR --bias 0 1 2 3 --out sweep.json

Dev = the last rows of the ProsocialDialog train file, which Prost-mini holds out of training (with their recovered
history, cut at the split); the validation file stays for `bench_prost.py`. Casual probes = first turns of casual
validation dialogues (the adapter trains on their train splits). Picks the bias with the best dev F1 among those
that put an RoT before at most `--max-casual-rot` of the casual replies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prosocial.data.adapters import load_benchmark
from prosocial.lm.history import load_links, with_history
from prosocial.prost.mini import MAX_TURNS, PROSOCIAL_TRAIN, ProstMini, read_partial_rows
from prosocial.scoring import bleu4, unigram_f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--bias", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--dev-rows", type=int, default=400, help="the train file's held-out tail, as in training")
    parser.add_argument("--rows", type=int, default=200, help="how many of them to score (the last ones)")
    parser.add_argument("--casual", type=int, default=100)
    parser.add_argument("--max-casual-rot", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rows = read_partial_rows(PROSOCIAL_TRAIN)
    tail = rows[-args.dev_rows:]
    dialogues = with_history(tail, load_links("train", len(rows))[-args.dev_rows:], MAX_TURNS)[-args.rows:]
    golds = [r for _, r in tail[-args.rows:]]
    casual = [e.context[:1] for name in ("dailydialog", "empathetic")
              for e in load_benchmark(name, "dev", limit=args.casual // 2)]
    generator = ProstMini(adapter=args.adapter)
    results = []
    for bias in args.bias:
        generator.rot_bias = bias
        dev = generator.generate(dialogues)
        chat = generator.generate(casual)
        results.append({
            "rot_bias": bias,
            "f1": 100 * sum(unigram_f1(r.response, g) for r, g in zip(dev, golds, strict=True)) / len(golds),
            "bleu4": 100 * sum(bleu4(r.response, g) for r, g in zip(dev, golds, strict=True)) / len(golds),
            "dev_rot_rate": sum(bool(r.rots) for r in dev) / len(dev),
            "casual_rot_rate": sum(bool(r.rots) for r in chat) / len(chat),
        })
        print(json.dumps(results[-1]))
    allowed = [r for r in results if r["casual_rot_rate"] <= args.max_casual_rot] or results[:1]
    chosen = max(allowed, key=lambda r: r["f1"])
    record = {"dev_rows": len(golds), "casual_probes": len(casual), "sweep": results, "chosen": chosen["rot_bias"]}
    print(json.dumps({"chosen": chosen}))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
