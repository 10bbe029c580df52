"""The danger head: which danger of the taxonomy (`prosocial.data.danger`) a context describes, if any.

An all-MiniLM-L6-v2 fine-tuned to name the danger category of the user's latest turn (or "none"). It lives in
the Canary-mini folder's ``danger/`` module: ``encoder/`` (the fine-tuned encoder and its tokenizer), ``head.npz``
(`prosocial.heads.Head` weights over the mean-pooled tokens) and ``config.json`` (class order, thresholds,
provenance). It reads the latest turn, not the whole context, so no amount of small talk before an emergency
dilutes it; the user's turn before supports an intervention, so "ok" after one does not hide it (`calls`).

A head may instead score the categories by their **descriptions** (`DescribedHead`, `prosocial train danger
--described-head`): the taxonomy says in a sentence or two what each sub-category looks like
(`prosocial.data.danger.DESCRIPTIONS`), the encoder is trained to bring a message close to its sub-category's
descriptions, and a category's score is the best cosine similarity among its descriptions, so a sub-category can be
known from its description alone (the held-out ones are described, never trained on). Measured in session 19 and not
shipped: held-out unseen situations rose 3 points, and on dev its fitted gate handed over a quarter of the advice
questions (model card). Folders without ``descriptions`` in their config have a linear head.

Measured and not adopted (dev rows): a linear head over the safety head's own pooled features, over frozen
all-MiniLM-L6-v2 sentence embeddings, or both: at most 0.77 of the dev emergencies at 8% of the benign look-alikes
handed over. A fine-tuned encoder was needed to tell "my toddler ate berries off the yew hedge" from "my daughter
ate a berry yesterday and the nurse line said it's harmless".

Why a head of its own: Canary-mini's needs-intervention class was learned from DiaSafety's Risk Ignorance
(depression and self-harm posts) and, until the mapping was fixed, Unauthorized Expertise (people asking for
medical advice). It saw almost no physical emergencies — a poisoning, a fire, an intruder — and it learned that
"asks a how/should question" looks like intervention. The danger head is trained on the team-written danger
corpus (``resources/danger/``, datasheet there) with its benign look-alikes, plus the public sources' rows, and it
decides the intervention verdict:

- P(any emergency category) ≥ ``emergency_threshold`` → needs intervention, with the top emergency category;
- the safety head's own intervention verdict stands only where P(emergency) ≥ ``intervention_gate`` and
  P(look-alike) < ``lookalike_veto`` (below); elsewhere the context is judged casual or caution from the safety head's
  other two classes (basil care is not a crisis);
- P(any danger) ≥ ``act_threshold`` → at least needs caution, with the top category (a dangerous act: the reply
  warns; a possible emergency below the threshold: caution, not silence);
- otherwise P(look-alike) ≥ ``lookalike_threshold`` → casual (a caution of the safety head's is cleared).

Heads trained since the look-alike class have it: the corpus's benign rows ("this curry is killing me", a first-aid
course, a resolved scare) are their own class, apart from ``none`` (small talk, and toxic or biased text, which is
not a danger but still needs caution). The safety head learned danger words as caution ("How can I kill a Python
process?"); the look-alike class undoes that and nothing else, and its thresholds are fitted on dev rows so that
they clear almost no real danger and no toxic text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from prosocial.data.danger import ACTS, BY_NAME, EMERGENCIES, Level
from prosocial.data.labels import SafetyLabel
from prosocial.errors import ModelError
from prosocial.heads import Head

FOLDER = "danger"
NONE = "none"
#: harmless, though it shares a danger's words or topic (the corpus's benign rows)
LOOKALIKE = "lookalike"
#: the latest turn's tokens read by folders that do not say (the first shipped head)
MAX_LENGTH = 48
BATCH_SIZE = 32


@dataclass
class DangerConfig:
    """Class order (``none`` first, then categories) and the thresholds fitted on dev rows; saved as config.json."""

    classes: list[str] = field(default_factory=lambda: [NONE, LOOKALIKE, *EMERGENCIES, *ACTS])
    emergency_threshold: float = 0.5
    act_threshold: float = 0.5
    intervention_gate: float = 0.1
    #: P(look-alike) at or above this clears a caution verdict (None: never; heads without the class)
    lookalike_threshold: float | None = None
    #: P(look-alike) at or above this vetoes the safety head's intervention (None: never). Apart from the above:
    #: a veto risks only the few contexts the safety head hands over, clearing risks every toxic one it flags
    lookalike_veto: float | None = None
    #: tokens of the latest turn read (from its start); longer messages are cut
    max_length: int = MAX_LENGTH
    #: category -> sub-category -> descriptions: the described head's prototypes (None: a linear head)
    descriptions: dict[str, dict[str, list[str]]] | None = None
    meta: dict | None = None

    def __post_init__(self):
        rest = self.classes[2:] if self.classes[1:2] == [LOOKALIKE] else self.classes[1:]
        if not self.classes or self.classes[0] != NONE or any(c not in BY_NAME for c in rest):
            raise ModelError(f"danger head classes must be 'none', optionally 'lookalike', then taxonomy "
                             f"categories; got {self.classes}")
        for name, subs in (self.descriptions or {}).items():
            if name not in self.classes[1:] or name == LOOKALIKE:
                raise ModelError(f"danger head descriptions: {name!r} is not one of the head's categories")
            if not isinstance(subs, dict) or not all(
                    isinstance(texts, list | tuple) and texts and all(isinstance(t, str) and t.strip() for t in texts)
                    for texts in subs.values()):
                raise ModelError(f"danger head descriptions of {name!r}: each sub-category needs a non-empty list "
                                 "of non-empty texts")

    def described(self) -> tuple[list[str], list[int]]:
        """Every description, and the class index of the category it describes."""
        texts, owners = [], []
        for name, subs in (self.descriptions or {}).items():
            for described in subs.values():
                texts += described
                owners += [self.classes.index(name)] * len(described)
        return texts, owners


@dataclass
class DangerCall:
    """One context's danger reading: the top category (None: no danger), the emergency and any-danger mass, the
    emergency mass that supports a safety-head intervention (the latest turn's, or an earlier turn's if higher), and
    P(look-alike)."""

    category: str | None
    emergency: float
    danger: float
    support: float = -1.0
    lookalike: float = 0.0

    def __post_init__(self):
        self.support = max(self.support, self.emergency)


class DescribedHead:
    """Class probabilities from cosine similarities: a category scores its best-matching description, the classes
    without descriptions (``none``, ``lookalike``) score a learned vector each; logits are the similarities times a
    learned scale plus a bias. Weights: ``v`` (one row per class without descriptions, in class order), ``b``,
    ``scale``."""

    def __init__(self, weights: dict[str, np.ndarray], described: np.ndarray, owners: Sequence[int]):
        self.weights = weights
        order = np.argsort(np.asarray(owners), kind="stable")
        self._described = _unit(described[order])
        owners = np.asarray(owners)[order]
        self._starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        self._owned = owners[self._starts]
        classes = len(weights["b"])
        self._free = np.setdiff1d(np.arange(classes), self._owned)
        if len(self._free) != len(weights["v"]):
            raise ModelError(f"danger head: {len(weights['v'])} learned vectors for {len(self._free)} classes "
                             "without descriptions")
        self._vectors = _unit(weights["v"])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        x = _unit(x.astype(np.float32))
        logits = np.empty((len(x), len(self.weights["b"])), np.float32)
        logits[:, self._owned] = np.maximum.reduceat(x @ self._described.T, self._starts, axis=1)
        logits[:, self._free] = x @ self._vectors.T
        logits = logits * float(self.weights["scale"]) + self.weights["b"]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class DangerHead:
    """Danger probabilities for contexts, and how they change a safety verdict (module docstring).

    `head` holds the saved weights: a linear `Head`, or those of a `DescribedHead` (when the config has
    descriptions; its description embeddings are computed by the folder's encoder on first use). `encoder`, if
    given, is the (tokenizer, model) in memory (training), instead of the one in `encoder_dir`, which loads in
    `runtime` (`prosocial.canary.fast_encoder`)."""

    def __init__(self, head: Head, config: DangerConfig, encoder_dir: Path | None = None, workers: int = 1,
                 encoder: tuple | None = None, runtime: str | None = None):
        self.weights = head
        self.config = config
        self.encoder_dir = encoder_dir
        self.workers = workers
        self.runtime = runtime
        if encoder is not None:
            self.__dict__["encoder"] = encoder
        classes = config.classes
        #: columns of the taxonomy's categories, and of its emergencies, in `classes` order
        self._category = np.array([c in BY_NAME for c in classes])
        self._emergency = np.array([c in BY_NAME and BY_NAME[c].level is Level.EMERGENCY for c in classes])
        self._lookalike = classes.index(LOOKALIKE) if LOOKALIKE in classes else None

    @classmethod
    def load(cls, model_dir: str | Path, workers: int = 1, runtime: str | None = None) -> DangerHead | None:
        """The head of a model folder, or None when the folder has none (models built before it)."""
        folder = Path(model_dir) / FOLDER
        if not (folder / "config.json").exists():
            return None
        try:
            raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            config = DangerConfig(**raw)
            with np.load(folder / "head.npz") as weights:
                head = Head(dict(weights))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"unreadable danger head in {folder}: {exc}") from None
        return cls(head, config, folder / "encoder", workers, runtime=runtime)

    @cached_property
    def head(self) -> Head | DescribedHead:
        """What turns pooled features into class probabilities."""
        if self.config.descriptions is None:
            return self.weights
        texts, owners = self.config.described()
        return DescribedHead(self.weights.weights, self.features(texts), owners)

    def save(self, model_dir: str | Path) -> None:
        folder = Path(model_dir) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "head.npz", **{k: v.astype(np.float32) for k, v in self.weights.weights.items()})
        self.save_config(model_dir)

    def save_config(self, model_dir: str | Path) -> None:
        """Write ``danger/config.json`` alone (atomically): what a threshold refit changes."""
        from prosocial.io import atomic_write

        with atomic_write(Path(model_dir) / FOLDER / "config.json") as handle:
            handle.write(json.dumps(asdict(self.config), indent=2) + "\n")

    @cached_property
    def encoder(self):
        """(tokenizer, encoder), loaded on first use."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        if self.encoder_dir is None or not Path(self.encoder_dir).is_dir():
            raise ModelError(f"the danger head's encoder folder is missing: {self.encoder_dir}")
        from prosocial.canary.fast_encoder import fast_encoder

        model = AutoModel.from_pretrained(self.encoder_dir, dtype=torch.float32).eval()
        threads = 1 if self.workers > 1 else torch.get_num_threads()
        return AutoTokenizer.from_pretrained(self.encoder_dir), fast_encoder(model, self.runtime, threads)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled tokens of the fine-tuned encoder, one row per text; a text repeated in a batch is encoded
        once (a reply's windows share the user's turn before them, a client's history repeats)."""
        unique = list(dict.fromkeys(texts))
        found = pooled_features(*self.encoder, unique, self.workers, self.config.max_length)
        if len(unique) == len(texts):
            return found
        where = {text: i for i, text in enumerate(unique)}
        return found[[where[text] for text in texts]]

    def probabilities(self, contexts: Sequence[Sequence[str]]) -> np.ndarray:
        """P(none), then P(category) in `config.classes` order, for each context's latest turn."""
        return self.head.probabilities(self.features([c[-1] for c in contexts]))

    def calls(self, contexts: Sequence[Sequence[str]]) -> list[DangerCall]:
        """The reading of each context's latest turn, with the user's turn before it (two back) as support: an
        emergency told one turn earlier keeps the safety head's intervention verdict standing when the user then
        says "ok" (paper §3: needs intervention does not de-escalate). The earlier turn only supports; it never
        flags a context on its own, so an old turn of small talk adds no false alarm."""
        n = len(contexts)
        earlier = [i for i, c in enumerate(contexts) if len(c) >= 3]
        probs = self.head.probabilities(self.features([c[-1] for c in contexts] + [contexts[i][-3] for i in earlier]))
        calls = self.read(probs[:n])
        before = (probs[n:] * self._emergency).sum(1)
        for i, mass in zip(earlier, before, strict=True):
            calls[i].support = max(calls[i].support, float(mass))
        return calls

    def read(self, probs: np.ndarray) -> list[DangerCall]:
        """Per row of danger probabilities: the top category, the emergency / any-danger mass and P(look-alike)."""
        names = self.config.classes
        emergency = (probs * self._emergency).sum(1)
        danger = (probs * self._category).sum(1)
        lookalike = probs[:, self._lookalike] if self._lookalike is not None else np.zeros(len(probs))
        calls = []
        for row, e, d, look in zip(probs, emergency, danger, lookalike, strict=True):
            # the category of an emergency is an emergency one
            among = self._emergency if e >= self.config.emergency_threshold else self._category
            top = names[int(np.argmax(np.where(among, row, -1)))]
            calls.append(DangerCall(top if d >= self.config.act_threshold or e >= self.config.intervention_gate
                                    else None, float(e), float(d), lookalike=float(look)))
        return calls

    def apply(
        self, labels: Sequence[SafetyLabel], calls: Sequence[DangerCall], fallback: Sequence[SafetyLabel]
    ) -> tuple[list[SafetyLabel], list[str | None]]:
        """Safety labels and danger categories after the danger reading. `fallback[i]` is the safety head's label
        with its intervention class left out, for a needs-intervention verdict the danger head does not support."""
        config = self.config
        out_labels, categories = [], []
        for label, call, other in zip(labels, calls, fallback, strict=True):
            category = None
            lookalike = config.lookalike_threshold is not None and call.lookalike >= config.lookalike_threshold
            veto = config.lookalike_veto is not None and call.lookalike >= config.lookalike_veto
            if call.emergency >= config.emergency_threshold:
                label, category = SafetyLabel.NEEDS_INTERVENTION, call.category
            elif label is SafetyLabel.NEEDS_INTERVENTION:
                if call.support >= config.intervention_gate and not veto:
                    category = call.category if call.category in EMERGENCIES else None
                else:
                    label = other
            if label is not SafetyLabel.NEEDS_INTERVENTION:
                if call.danger >= config.act_threshold:
                    label, category = max(label, SafetyLabel.NEEDS_CAUTION), call.category
                elif lookalike:
                    label = SafetyLabel.CASUAL
            out_labels.append(label)
            categories.append(category)
        return out_labels, categories


def pooled_features(tokenizer, encoder, texts: Sequence[str], workers: int = 1,
                    max_length: int = MAX_LENGTH) -> np.ndarray:
    """Mean-pooled last hidden states of `encoder` for `texts` (cut to `max_length` tokens), in input order."""
    import torch

    from prosocial.canary.batching import run_batches
    from prosocial.canary.mini import masked_mean

    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)

    def embed(rows: list[int]) -> None:
        batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        with torch.inference_mode():
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        out[rows] = masked_mean(hidden, batch["attention_mask"]).float().numpy()

    run_batches([len(t) for t in texts], BATCH_SIZE, workers, embed)
    return out
