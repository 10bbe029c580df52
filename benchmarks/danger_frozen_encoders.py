"""Would a bigger frozen encoder read unseen dangers better? all-mpnet-base-v2 against all-MiniLM-L6-v2, dev only.

    python benchmarks/danger_frozen_encoders.py [--out docs/reports/danger-s20-frozen-encoders.json]
    # ~7 min on 2 cores; needs `make teacher` (MPNet) and the shared data

A logistic regression on each encoder's frozen mean-pooled embedding of the latest turn (classes: none, from the
casual corpora; look-alike; the 12 categories), measured two ways without reading the corpus's held-out split:

- the new crowd: trained on the train split, measured on dev (writer E), at P(any danger) >= 0.5;
- unseen situations: inside the train split, one trained sub-category per category left out (3 folds), trained
  on the rest, measured on the left-out rows (danger found; category right).

The shipped danger head's fine-tuned encoder is measured too; its unseen-situation figure is not a measurement
(it was fine-tuned on every train sub-category). The recorded report was made before writer G's rows joined the
train split (session 20).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from prosocial.canary.danger import pooled_features
from prosocial.canary.danger_train import CORPUS
from prosocial.canary.encoders import packaged_minilm, packaged_mpnet
from prosocial.canary.fast_encoder import fast_encoder
from prosocial.canary.mini import DEFAULT_DIR
from prosocial.canary.mini_train import CASUAL_SOURCES
from prosocial.data.adapters import load_benchmark
from prosocial.data.danger import BY_NAME, DangerCase, read_corpus
from prosocial.io import write_json

FOLDS = 3
THRESHOLD = 0.5


def embed(folder, texts: list[str]) -> dict[str, np.ndarray]:
    """Unit-length mean-pooled embeddings of `texts` by the encoder in `folder` (frozen)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = fast_encoder(AutoModel.from_pretrained(folder, dtype=torch.float32).eval())
    x = pooled_features(tokenizer, encoder, texts, workers=2, max_length=64)
    return dict(zip(texts, x / np.linalg.norm(x, axis=1, keepdims=True), strict=True))


def target(case: DangerCase) -> str:
    return "lookalike" if case.kind == "benign" else case.category


def fit(space: dict, rows: list[DangerCase], none: list[str]) -> LogisticRegression:
    x = np.array([space[c.text] for c in rows] + [space[t] for t in none])
    y = [target(c) for c in rows] + ["none"] * len(none)
    return LogisticRegression(C=10.0, max_iter=3000).fit(x, y)


def measure(model: LogisticRegression, space: dict, rows: list[DangerCase], none: list[str]) -> dict:
    classes = list(model.classes_)
    danger = [i for i, name in enumerate(classes) if name in BY_NAME]
    probs = model.predict_proba(np.array([space[c.text] for c in rows]))
    found = probs[:, danger].sum(1) >= THRESHOLD
    top = [classes[i] for i in probs.argmax(1)]
    real = np.array([c.kind != "benign" for c in rows])
    out = {"danger_found": float(found[real].mean()),
           "category_right": float(np.mean([t == c.category for t, c, r in zip(top, rows, real, strict=True) if r]))}
    if (~real).any():
        out["lookalike_flagged"] = float(found[~real].mean())
    if none:
        out["casual_flagged"] = float((model.predict_proba(np.array([space[t] for t in none]))[:, danger].sum(1)
                                       >= THRESHOLD).mean())
    return out


def unseen(space: dict, train: list[DangerCase], none: list[str]) -> dict:
    """Leave one trained sub-category per category out, FOLDS times; the mean over folds."""
    subs: dict[str, list[str]] = defaultdict(list)
    for case in train:
        if case.kind != "benign" and case.subcategory not in subs[case.category]:
            subs[case.category].append(case.subcategory)
    folds = []
    for fold in range(FOLDS):
        left_out = {name: sorted(s)[fold % len(s)] for name, s in subs.items()}
        held = [c for c in train if c.kind != "benign" and left_out.get(c.category) == c.subcategory]
        rest = [c for c in train if c not in held]
        folds.append(measure(fit(space, rest, none), space, held, []))
    return {k: round(float(np.mean([f[k] for f in folds])), 3) for k in ("danger_found", "category_right")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/reports/danger-s20-frozen-encoders.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = read_corpus(CORPUS, ("train", "dev"))
    train = [c for c in cases if c.split == "train"]
    dev = [c for c in cases if c.split == "dev"]
    rng = random.Random(0)
    none_train = [e.context[-1] for n in CASUAL_SOURCES for e in rng.sample(load_benchmark(n, "train"), 400)]
    none_dev = [e.context[-1] for n in CASUAL_SOURCES for e in rng.sample(load_benchmark(n, "dev"), 300)]
    texts = sorted({c.text for c in cases} | set(none_train) | set(none_dev))
    report = {}
    shipped = "shipped-danger-3L (fine-tuned: unseen not a measurement)"
    for name, folder in (("minilm", packaged_minilm()), ("mpnet", packaged_mpnet()),
                         (shipped, DEFAULT_DIR / "danger" / "encoder")):
        space = embed(folder, texts)
        report[name] = {"dev_new_crowd": measure(fit(space, train, none_train), space, dev, none_dev),
                        "unseen_subcategory_inner_folds": unseen(space, train, none_train)}
        print(name, json.dumps(report[name]), flush=True)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
