"""How far an encoder gets on ETHICS alone: fine-tune it end to end on the ETHICS train split, score the dev split.

    .venv/bin/python benchmarks/ethics_ceiling.py --encoder mpnet --epochs 2 --lr 2e-5    # about 26 min on 2 cores
    .venv/bin/python benchmarks/ethics_ceiling.py --encoder minilm --epochs 2 --lr 5e-5   # about 5 min

The same recipe for either encoder (mean pooling, linear head, AdamW, linear warm-up and decay, bfloat16 autocast,
128 tokens), so the two dev numbers say what the encoder adds on everyday wrongdoing before any mixing with other
sources or false-alarm bounds. A measurement for the Canary issue (a teacher worth distilling?), not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn
from transformers import AutoModel, AutoTokenizer

from prosocial.canary.encoders import packaged_minilm, packaged_mpnet
from prosocial.data.adapters import load_benchmark


def split(name: str) -> tuple[list[str], np.ndarray]:
    examples = [e for e in load_benchmark("ethics_commonsense", name) if e.safety_label is not None]
    return [e.context[-1] for e in examples], np.array([int(not e.safety_label.is_casual) for e in examples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=["minilm", "mpnet"], default="mpnet")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    path = packaged_mpnet() if args.encoder == "mpnet" else packaged_minilm()
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    head = nn.Linear(encoder.config.hidden_size, 2)
    texts, labels = split("train")
    dev_texts, dev_labels = split("dev")

    def logits(batch: list[str]) -> torch.Tensor:
        inputs = tokenizer(batch, truncation=True, max_length=128, padding=True, return_tensors="pt")
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return head((encoder(**inputs).last_hidden_state * mask).sum(1) / mask.sum(1))

    steps = int(len(texts) * args.epochs / args.batch_size)
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": args.lr},
                                   {"params": head.parameters(), "lr": 1e-3}], weight_decay=0.01)
    warmup = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1, (s + 1) / warmup) * max(0, 1 - s / steps))
    order: list[int] = []
    started = time.time()
    encoder.train()
    for step in range(steps):
        if len(order) < args.batch_size:
            order += rng.sample(range(len(texts)), len(texts))
        rows, order = order[: args.batch_size], order[args.batch_size :]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = logits([texts[i] for i in rows]).float()
        loss = nn.functional.cross_entropy(out, torch.tensor(labels[rows]))
        loss.backward()
        nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 50 == 0:
            print(f"step {step}/{steps} loss {loss.item():.3f} {time.time() - started:.0f} s", flush=True)
    encoder.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        probs = np.concatenate([torch.softmax(logits(dev_texts[i : i + 32]).float(), -1)[:, 1].numpy()
                                for i in range(0, len(dev_texts), 32)])
    auc = roc_auc_score(dev_labels, probs)
    balanced = balanced_accuracy_score(dev_labels, probs >= 0.5)
    print(json.dumps({"encoder": args.encoder, "epochs": args.epochs, "lr": args.lr, "train": len(texts),
                      "dev": len(dev_texts), "dev_auc": round(float(auc), 3),
                      "dev_balanced_accuracy_at_0.5": round(float(balanced), 3),
                      "minutes": round((time.time() - started) / 60, 1)}))


if __name__ == "__main__":
    main()
