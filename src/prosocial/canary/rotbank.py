"""Rules-of-thumb by retrieval: find the most similar known problematic utterances and reuse their RoTs.

Entries pair a key utterance (an SBIC post, a ProsocialDialog context) with the human-written RoTs for it.
Keys are embedded once, at build time, with the packaged all-MiniLM-L6-v2 (mean pooling, unit length, as
sentence-transformers does); a query is the context's last utterance, embedded the same way.

An off-topic RoT misleads more than none, so retrieval is gated: a query whose nearest key is less similar
than `min_similarity` gets no RoT. `fit_min_similarity` places the gate where a retrieved RoT becomes more
likely relevant than not, by leave-one-out retrieval over the bank itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from prosocial.canary.batching import run_batches
from prosocial.canary.encoders import packaged_minilm
from prosocial.errors import ModelError
from prosocial.io import atomic_write

ENTRIES = "entries.jsonl"
EMBEDDINGS = "embeddings.npy"
SETTINGS = "bank.json"


class Embedder:
    """Sentence embeddings from a MiniLM-style encoder: mean pooling over tokens, L2-normalised."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        max_length: int = 128,
        batch_size: int = 16,
        workers: int = 1,
        runtime: str | None = None,
    ):
        self.model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.workers = workers
        self.runtime = runtime

    @cached_property
    def _parts(self):
        from transformers import AutoModel, AutoTokenizer

        from prosocial.canary.fast_encoder import fast_encoder

        directory = Path(self.model_dir) if self.model_dir else packaged_minilm()
        model = AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
        threads = 1 if self.workers > 1 else torch.get_num_threads()
        return AutoTokenizer.from_pretrained(directory), fast_encoder(model, self.runtime, threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer, model = self._parts
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)

        def embed(rows: list[int]) -> None:
            batch = tokenizer(
                [texts[i] for i in rows], truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            )
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()

        run_batches([len(t) for t in texts], self.batch_size, self.workers, embed)
        return out


@dataclass
class Entry:
    key: str
    rots: list[str]
    source: str


class RotBank:
    """A searchable set of (utterance, RoTs) entries."""

    def __init__(
        self,
        entries: list[Entry],
        embeddings: np.ndarray,
        embedder: Embedder | None = None,
        neighbours: int = 8,
        min_similarity: float = -1.0,
    ):
        if len(entries) != len(embeddings):
            raise ModelError(f"RoT bank has {len(entries)} entries but {len(embeddings)} embeddings")
        self.entries = entries
        self.embeddings = embeddings.astype(np.float32)
        self.embedder = embedder or Embedder()
        self.neighbours = neighbours
        self.min_similarity = min_similarity

    @classmethod
    def build(cls, entries: list[Entry], embedder: Embedder | None = None) -> RotBank:
        embedder = embedder or Embedder()
        return cls(entries, embedder.encode([e.key for e in entries]), embedder)

    def save(self, directory: str | Path) -> None:
        """Entries, fp16 embeddings, and which embedder made them (None = the packaged MiniLM)."""
        directory = Path(directory)
        model_dir = self.embedder.model_dir
        with atomic_write(directory / SETTINGS) as handle:
            json.dump(
                {
                    "embedder": None if model_dir is None else str(model_dir),
                    "neighbours": self.neighbours,
                    "min_similarity": self.min_similarity,
                },
                handle,
            )
        with atomic_write(directory / ENTRIES) as handle:
            for e in self.entries:
                handle.write(json.dumps({"key": e.key, "rots": e.rots, "source": e.source}, ensure_ascii=False) + "\n")
        with atomic_write(directory / EMBEDDINGS, "wb") as handle:
            np.save(handle, self.embeddings.astype(np.float16))

    @classmethod
    def load(cls, directory: str | Path, workers: int = 1, runtime: str | None = None) -> RotBank:
        directory = Path(directory)
        if not (directory / ENTRIES).exists() or not (directory / EMBEDDINGS).exists():
            raise ModelError(f"RoT bank {directory} needs {ENTRIES} and {EMBEDDINGS}")
        settings = json.loads((directory / SETTINGS).read_text()) if (directory / SETTINGS).exists() else {}
        with open(directory / ENTRIES, encoding="utf-8") as handle:
            entries = [Entry(**json.loads(line)) for line in handle if line.strip()]
        embedder = Embedder(settings.get("embedder"), workers=workers, runtime=runtime)
        return cls(
            entries,
            np.load(directory / EMBEDDINGS),
            embedder,
            settings.get("neighbours", 8),
            settings.get("min_similarity", -1.0),
        )

    def similarities(self, contexts: Sequence[Sequence[str]]) -> np.ndarray:
        """Each context's (its latest turn's) cosine with every entry: one row per context."""
        return self.embedder.encode([c[-1] for c in contexts]) @ self.embeddings.T

    def search(
        self,
        contexts: Sequence[Sequence[str]],
        k: int = 2,
        min_similarity: float | None = None,
        similarity: np.ndarray | None = None,
    ) -> list[list[str]]:
        """Up to `k` distinct RoTs per context, taken from its nearest entries in order of similarity; none
        where even the nearest entry is less similar than `min_similarity` (default: the bank's fitted gate).
        `similarity`: the contexts' `similarities`, when already computed (a second search costs no encoding)."""
        gate = self.min_similarity if min_similarity is None else min_similarity
        similarity = self.similarities(contexts) if similarity is None else similarity
        top = np.argsort(-similarity, axis=1)[:, : self.neighbours]
        results = []
        for i, row in enumerate(top):
            found: list[str] = []
            if similarity[i, row[0]] < gate:
                results.append(found)
                continue
            for index in row:
                for rot in self.entries[index].rots:
                    if rot not in found:
                        found.append(rot)
                if len(found) >= k:
                    break
            results.append(found[:k])
        return results


def fit_min_similarity(
    bank: RotBank, held_out: Sequence[int], relevance: float = 0.5, max_queries: int = 2000
) -> tuple[float, dict[str, float]]:
    """The similarity gate above which a retrieved RoT is more likely relevant than not.

    Each held-out entry (e.g. a ProsocialDialog context with the norm its reply wrote) queries the rest of the
    bank with its key. Its top RoT counts as relevant when its embedding's cosine with one of the entry's own
    RoTs reaches `relevance`. A logistic fit of relevance on query-key similarity gives P(relevant | s); the
    gate is the s where it crosses ½ (returning an RoT then does more good than harm). Returns the gate and the
    fit's numbers.
    """
    from sklearn.linear_model import LogisticRegression

    held_out = list(held_out)[:max_queries]
    if len(held_out) < 20:
        raise ModelError(f"fitting the RoT gate needs at least 20 held-out entries, got {len(held_out)}")
    queries = bank.embeddings[held_out]
    similarity = queries @ bank.embeddings.T
    similarity[np.arange(len(held_out)), held_out] = -np.inf
    nearest = similarity.argmax(1)
    top_similarity = similarity[np.arange(len(held_out)), nearest]
    retrieved = [bank.entries[j].rots[0] for j in nearest]
    gold = [bank.entries[i].rots for i in held_out]
    flat_gold = [r for rots in gold for r in rots]
    vectors = bank.embedder.encode(retrieved + flat_gold)
    retrieved_vec, gold_vec = vectors[: len(retrieved)], vectors[len(retrieved) :]
    relevant, start = [], 0
    for i, rots in enumerate(gold):
        relevant.append(float((gold_vec[start : start + len(rots)] @ retrieved_vec[i]).max()) >= relevance)
        start += len(rots)
    y = np.array(relevant)
    if y.all() or not y.any():
        gate = -1.0 if y.all() else 1.0
    else:
        fit = LogisticRegression().fit(top_similarity[:, None], y)
        gate = float(np.clip(-fit.intercept_[0] / fit.coef_[0, 0], -1.0, 1.0))
    kept = top_similarity >= gate
    return gate, {
        "queries": len(held_out),
        "relevant_without_gate": float(y.mean()),
        "relevant_with_gate": float(y[kept].mean()) if kept.any() else float("nan"),
        "answered_with_gate": float(kept.mean()),
    }
