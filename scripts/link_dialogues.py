"""Recover the dialogue boundaries of the partial ProsocialDialog files (`prosocial.lm.history`).

    .venv/bin/python scripts/link_dialogues.py     # 16 minutes on 2 cores; writes resources/dialogue-links/

Scores every row's link to the row before it with SmolLM2-135M-Instruct (the base Prost-mini is trained on,
untuned, bfloat16), cuts each file at the rate of dialogue starts the paper's Table 1 implies, and writes per file
the scores, the threshold and the dialogue ids, plus how the 12 rows of known dialogues came out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prosocial.io import atomic_write
from prosocial.lm.history import LINKS_DIR, START_RATE, dialogue_ids, link_scores, rate_threshold
from prosocial.lm.inference import load_model
from prosocial.prost.mini import PROSOCIAL_TRAIN, base_model_dir, read_partial_rows

#: Dialogues 0-4 of the train split, as DialogStudio's copies give them: the first 12 rows of train.json.
KNOWN_TRAIN_IDS = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=LINKS_DIR)
    parser.add_argument("--files", nargs="+", default=["train"], choices=["train", "valid"],
                        help="partial files to link (the shipped links are the train file's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(base_model_dir())
    model = model.to(torch.bfloat16)
    for name in args.files:
        path = PROSOCIAL_TRAIN.with_name(f"{name}.json")
        rows = read_partial_rows(path)
        started = time.monotonic()
        scores = link_scores(rows, model, tokenizer)
        threshold = rate_threshold(scores, START_RATE)
        ids = dialogue_ids(scores, threshold)
        record = {"file": path.name, "rows": len(rows), "dialogues": ids[-1] + 1, "start_rate": START_RATE,
                  "threshold_nats": threshold, "seconds": round(time.monotonic() - started, 1),
                  "scorer": "SmolLM2-135M-Instruct (Q4_1 de-quantized), bfloat16, PMI summed over the context",
                  "dialogue_ids": ids, "link_scores": [None if s != s else round(s, 3) for s in scores]}
        if name == "train":
            known = ids[: len(KNOWN_TRAIN_IDS) + 1]
            record["known_links_recovered_of_12"] = sum(
                (known[i] == known[i - 1]) == (KNOWN_TRAIN_IDS[i] == KNOWN_TRAIN_IDS[i - 1])
                for i in range(1, len(KNOWN_TRAIN_IDS))) + (known[-1] != known[-2])
        with atomic_write(args.out / f"{name}.json") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k not in ("dialogue_ids", "link_scores")}))


if __name__ == "__main__":
    main()
