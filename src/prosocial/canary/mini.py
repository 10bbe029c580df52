"""Canary-mini: the offline default detector — a fine-tuned MiniLM classifier plus a retrieved-RoT bank.

A model directory holds small modules, each with its own files (as sentence-transformers does):

- ``encoder/``: the fine-tuned all-MiniLM-L6-v2 (transformers format, fp16) and its tokenizer;
- ``head.safetensors``: the linear head over pooled tokens → casual / needs caution / needs intervention (pooled
  over the whole context, and with ``pooling: "mean+last"`` also over the last utterance's own tokens);
- ``rot_bank/``: RoT bank entries, their embeddings and the relevance gate (see `prosocial.canary.rotbank`);
- ``config.json``: input shaping, the calibration temperature and decision thresholds, provenance.

Three coarse probabilities become the five labels through the paper's voting view (A.4): with p the
calibrated probability of intervention and q the share of "needs caution" among the other two, the label is
needs intervention when p clears its threshold (and, with an intervention gate, the probability of casual is below
the gate), casual when q is below the casual threshold, and otherwise the number of three annotators expected to
vote "needs caution" (1, 2, 3 → possibly, probably, needs).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.canary.batching import run_batches
from prosocial.canary.fast_encoder import fast_encoder
from prosocial.data.context import build_context, check_context
from prosocial.data.labels import COARSE_LABELS, Coarse, SafetyLabel
from prosocial.errors import ModelError
from prosocial.model_folder import resolve_model_dir
from prosocial.resources import RESOURCES

log = logging.getLogger(__name__)

DEFAULT_DIR = RESOURCES / "canary-mini"
#: small batches: little padding
BATCH_SIZE = 16
CONFIG = "config.json"
#: the last resort of `CanaryMini.add_rots`: true of anything flagged, specific to nothing
GENERAL_ROT = "It's important to think about how your words and actions affect other people."


@dataclass
class MiniConfig:
    """Everything besides weights that inference needs; saved as config.json."""

    max_turns: int = 4
    max_length: int = 96
    temperature: float = 1.0
    casual_threshold: float = 0.5
    intervention_threshold: float = 0.5
    #: needs intervention also requires P(casual) below this (None: no such condition). A student distilled from
    #: soft targets spreads a little intervention mass over chit-chat; a threshold low enough to catch every
    #: emergency then flags small talk, unless the turns the model calls clearly casual are kept out
    intervention_gate: float | None = None
    rots_per_context: int = 1
    #: the arithmetic the encoder runs in (a key of `PRECISIONS`); the temperature and thresholds were fitted
    #: with it, so it is saved with them
    precision: str = "float32"
    #: "mean": one mean over all tokens; "mean+last": beside it, the mean over the last utterance's tokens, so the
    #: turn being judged keeps its own voice however much small talk precedes it
    pooling: str = "mean"
    meta: dict | None = None

    @classmethod
    def load(cls, path: Path) -> MiniConfig:
        """The saved config; an unknown key is an error (a typo, or a file from a newer release), not ignored."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"unreadable Canary-mini config {path}: {exc}") from None
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__)) if isinstance(raw, dict) else ["(not an object)"]
        if unknown:
            raise ModelError(f"{path}: unknown setting(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**raw)


POOLINGS = ("mean", "mean+last")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MiniClassifier(nn.Module):
    """MiniLM encoder, mean pooling over real tokens (and over the last utterance's, see `MiniConfig.pooling`),
    dropout, linear head to the three coarse classes."""

    def __init__(self, encoder: nn.Module, dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {pooling!r}; known: {list(POOLINGS)}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size * (1 + (pooling == "mean+last")), len(COARSE_LABELS))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, last_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = masked_mean(hidden, attention_mask)
        if self.pooling == "mean+last":
            pooled = torch.cat([pooled, masked_mean(hidden, attention_mask if last_mask is None else last_mask)], -1)
        return self.head(self.dropout(pooled))


def context_texts(contexts: Sequence[Sequence[str]], max_turns: int) -> list[str]:
    """Validate and flatten contexts exactly as in training."""
    return [build_context(check_context(c, f"contexts[{i}]"), max_turns=max_turns) for i, c in enumerate(contexts)]


def caution_share(probs: np.ndarray) -> np.ndarray:
    """Per row of coarse probabilities, P(caution) / (P(casual) + P(caution)): the per-annotator "needs caution"
    rate of the A.4 vote view, which the casual threshold cuts."""
    return probs[:, 1] / np.clip(probs[:, 0] + probs[:, 1], 1e-9, None)


def five_way_scores(probs: np.ndarray) -> np.ndarray:
    """Spread coarse probabilities (casual, caution, intervention) over the five labels.

    The caution mass is split by how many of three annotators would vote "needs caution" given at least one
    does, with the per-annotator rate q = P(caution) / (P(casual) + P(caution)) — the A.4 view of agreement.
    """
    casual, caution, intervention = probs[:, 0], probs[:, 1], probs[:, 2]
    q = caution_share(probs)
    votes = np.stack([math.comb(3, k) * q**k * (1 - q) ** (3 - k) for k in (1, 2, 3)], axis=1)
    votes /= np.clip(votes.sum(1, keepdims=True), 1e-12, None)
    return np.column_stack([casual, caution[:, None] * votes, intervention])


def intervenes(probs: np.ndarray, threshold: float, gate: float | None = None) -> np.ndarray:
    """Per row of coarse probabilities: does it call for intervention (P(intervention) at the threshold, and
    P(casual) below the gate when there is one)? The one rule `decide` applies and calibration fits."""
    return (probs[:, 2] >= threshold) & (probs[:, 0] < (np.inf if gate is None else gate))


def decide(probs: np.ndarray, config: MiniConfig) -> list[SafetyLabel]:
    """Apply the calibrated thresholds (see the module docstring)."""
    labels = []
    intervened = intervenes(probs, config.intervention_threshold, config.intervention_gate)
    for intervene, q in zip(intervened, caution_share(probs), strict=True):
        if intervene:
            labels.append(SafetyLabel.NEEDS_INTERVENTION)
        elif q < config.casual_threshold:
            labels.append(SafetyLabel.CASUAL)
        else:
            votes = min(3, max(1, round(3 * q)))
            labels.append(
                (
                    SafetyLabel.POSSIBLY_NEEDS_CAUTION,
                    SafetyLabel.PROBABLY_NEEDS_CAUTION,
                    SafetyLabel.NEEDS_CAUTION,
                )[votes - 1]
            )
    return labels


@dataclass
class Encoded:
    """Token ids of flattened contexts, the span [start, end) of each one's last utterance, and how many were cut."""

    ids: list[list[int]]
    last_spans: list[tuple[int, int]]
    cut: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def encode(tokenizer, texts: Sequence[str], max_length: int, last_utterances: Sequence[str] | None = None) -> Encoded:
    """Token ids cut from the left (the oldest turns go first) to `max_length`.

    One tokenizer pass does both jobs: texts are tokenized whole, then the words between the leading and trailing
    special tokens are cut from the left, exactly as the tokenizer's own left truncation would. Each text ends with
    its last utterance (WordPiece tokenizes a line the same alone or joined), so that utterance's own token count,
    from the same pass, says where it starts; without `last_utterances` the whole text counts as the last one.
    """
    batch = tokenizer([*texts, *(last_utterances or [])], return_special_tokens_mask=True, verbose=False)
    n = len(texts)
    specials = batch["special_tokens_mask"]
    lasts = specials[n:] if last_utterances is not None else [None] * n
    ids_out, spans, cut = [], [], 0
    for ids, special, last in zip(batch["input_ids"][:n], specials[:n], lasts, strict=True):
        head = next(i for i, flag in enumerate(special) if not flag)
        tail = next(i for i, flag in enumerate(reversed(special)) if not flag)
        if len(ids) > max_length:
            end = len(ids) - tail
            ids = ids[:head] + ids[end - (max_length - head - tail) : end] + ids[end:]
            cut += 1
        end = len(ids) - tail
        length = end - head if last is None else len(last) - sum(last)
        spans.append((max(head, end - length), end))
        ids_out.append(ids)
    return Encoded(ids_out, spans, cut)


def encode_contexts(tokenizer, contexts: Sequence[Sequence[str]], config: MiniConfig) -> Encoded:
    """Validate, flatten and tokenize contexts: the one input shaping that training, calibration and inference
    share."""
    texts = context_texts(contexts, config.max_turns)
    return encode(tokenizer, texts, config.max_length, [c[-1].strip() for c in contexts])


def pad_batch(encoded: Encoded, rows: Sequence[int], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, attention mask and last-utterance mask for the given rows, right-padded to the longest."""
    width = max(len(encoded.ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    last = torch.zeros((len(rows), width), dtype=torch.long)
    for j, i in enumerate(rows):
        row = encoded.ids[i]
        ids[j, : len(row)] = torch.tensor(row)
        mask[j, : len(row)] = 1
        start, end = encoded.last_spans[i]
        last[j, start:end] = 1
    return ids, mask, last


def batched_logits(
    model: MiniClassifier,
    encoded: Encoded,
    pad: int,
    batch_size: int,
    workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Logits for many encoded texts, rows in input order (see `run_batches`)."""
    out = np.zeros((len(encoded), len(COARSE_LABELS)), dtype=np.float32)
    if model.training:  # walking every module to set eval mode costs ~2 ms a call
        model.eval()

    def classify(rows: list[int]) -> None:
        with torch.inference_mode():
            out[rows] = model(*pad_batch(encoded, rows, pad)).float().numpy()

    run_batches([len(ids) for ids in encoded.ids], batch_size, workers, classify, progress)
    return out


class Int8Linear(nn.Module):
    """A linear layer in int8: weights with one scale per output channel, activations with one scale per token.

    Per-token scales keep a context's scores independent of the other contexts in its batch (a scale per batch
    tensor, as `torch.ao`'s dynamic quantization uses, changed the top class of 5% of ToxiChat dev contexts between
    batches of 16 and one at a time). The products are summed exactly in int32 (`torch._int_mm`), about twice as
    fast as bfloat16 on CPUs with AVX512 or AVX-VNNI.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(1).clamp(min=1e-8) / 127
        self.register_buffer("weight", (weight / scale[:, None]).round().to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(len(scale))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        scale = rows.abs().amax(1, keepdim=True).clamp_(min=1e-8).div_(127)
        quantized = (rows / scale).round_().to(torch.int8)
        out = torch._int_mm(quantized, self.weight).float().mul_(scale).mul_(self.weight_scale).add_(self.bias)
        return out.reshape(*x.shape[:-1], -1)


def quantize_int8(model: MiniClassifier) -> MiniClassifier:
    """A copy whose encoder's linear layers run in int8 (`Int8Linear`); the head, attention and norms stay
    float32."""
    import copy

    model = copy.deepcopy(model)
    for module in list(model.encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child))
    return model


def to_bfloat16(model: MiniClassifier) -> MiniClassifier:
    """A bfloat16 copy where the CPU has native bfloat16 matrix units (AVX512-BF16, AMX); float32 elsewhere,
    where bfloat16 would be emulated and slower. Scores stay within about 0.05 logits of float32 and do not
    depend on the batch.
    """
    import copy

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning("this CPU has no native bfloat16; Canary-mini runs in float32 (same labels, slower)")
        return model
    return copy.deepcopy(model).to(torch.bfloat16)


#: precision name -> how to turn the float32 classifier into the one that runs
PRECISIONS: dict[str, Callable[[MiniClassifier], MiniClassifier]] = {
    "float32": lambda model: model,
    "bfloat16": to_bfloat16,
    "int8": quantize_int8,
}


def with_precision(model: MiniClassifier, precision: str) -> MiniClassifier:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {sorted(PRECISIONS)}")
    return PRECISIONS[precision](model)


def load_classifier(directory: Path, pooling: str = "mean") -> MiniClassifier:
    """The fp32 classifier of a model directory (encoder folder + head), in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    model = MiniClassifier(AutoModel.from_pretrained(directory / "encoder", dtype=torch.float32), pooling=pooling)
    model.head.load_state_dict(load_file(directory / "head.safetensors"))
    return model.eval()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def load_tokenizer(encoder_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(encoder_dir)


@register_detector("canary-mini")
class CanaryMini(SafetyDetector):
    """The offline default detector (see the module docstring and the model card in its directory).

    `workers` batches run at once (default: one per available core), each on `num_threads` torch threads
    (default: 1 when several workers run). Loading the model sets torch's process-wide thread count.
    `rot_min_similarity` overrides the RoT bank's fitted relevance gate (-1 returns an RoT for every flagged
    context, as before the gate). `rot_writer` (on by default, where the folder has one) writes an RoT for each
    flagged context that neither the danger head nor the bank gave one (`prosocial.canary.rotwriter`), in `predict`
    calls of at most `rot_writer_max_batch` contexts (None: any; in larger calls the nearest fitting bank rule
    stands in). The writer costs ~0.2-0.3 s a context on 2 cores; a service whose micro-batches grow under load
    can set 1 to write while traffic is light and fall back to the bank once requests queue up (`prosocial serve`
    turns the writer off unless configured: see `serve.app.LATENCY_SETTINGS`). `runtime` runs the encoders in
    ONNX Runtime ("onnx", the default: about 1.6x faster on small batches, same labels) or PyTorch ("torch"); see
    `prosocial.canary.fast_encoder`.
    """

    def __init__(
        self,
        model_dir: str | Path = DEFAULT_DIR,
        batch_size: int = BATCH_SIZE,
        workers: int | None = None,
        num_threads: int | None = None,
        rots_per_context: int | None = None,
        rot_min_similarity: float | None = None,
        danger: bool = True,
        rot_writer: bool = True,
        rot_writer_max_batch: int | None = None,
        runtime: str | None = None,
    ):
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.workers = workers
        self.num_threads = num_threads
        self.rots_per_context = rots_per_context
        self.rot_min_similarity = rot_min_similarity
        self.danger = danger
        self.rot_writer = rot_writer
        self.rot_writer_max_batch = rot_writer_max_batch
        self.runtime = runtime

    @cached_property
    def config(self) -> MiniConfig:
        path = resolve_model_dir(self.model_dir, [CONFIG, "encoder", "head.safetensors"])
        return MiniConfig.load(path / CONFIG)

    @cached_property
    def _tokenizer(self):
        return load_tokenizer(Path(self.model_dir) / "encoder")

    @cached_property
    def _workers(self) -> int:
        return self.workers or len(os.sched_getaffinity(0))

    @cached_property
    def _model(self) -> MiniClassifier:
        # Concurrent small batches on one torch thread each beat one batch on all threads: on two cores, 2 workers
        # x 1 thread classify 1.1-1.3x more contexts/s than 1 worker x 2 threads.
        threads = self.num_threads or (1 if self._workers > 1 else None)
        if threads:
            torch.set_num_threads(threads)
        model = with_precision(load_classifier(Path(self.model_dir), self.config.pooling), self.config.precision)
        model.encoder = fast_encoder(model.encoder, self.runtime, threads or torch.get_num_threads())
        return model

    @cached_property
    def _bank(self):
        from prosocial.canary.rotbank import RotBank

        bank = RotBank.load(Path(self.model_dir) / "rot_bank", workers=self._workers, runtime=self.runtime)
        if self.rot_min_similarity is not None:
            bank.min_similarity = self.rot_min_similarity
        return bank

    @cached_property
    def _danger(self):
        """The folder's danger head (`prosocial.canary.danger`), or None: switched off, or a folder without one."""
        from prosocial.canary.danger import DangerHead

        return DangerHead.load(self.model_dir, workers=self._workers, runtime=self.runtime) if self.danger else None

    @cached_property
    def _writer(self):
        """The folder's RoT writer (`prosocial.canary.rotwriter`), or None: switched off, or a folder without one."""
        from prosocial.canary.rotwriter import RotWriter

        return RotWriter.load(self.model_dir, groups=self._groups) if self.rot_writer else None

    @cached_property
    def _groups(self) -> frozenset[str]:
        """Who a stereotype-form RoT may be about: the groups of the bank's Social Bias Frames rules
        (`rotwriter.stereotyped_groups`)."""
        from prosocial.canary.rotwriter import stereotyped_groups

        return stereotyped_groups(r for entry in self._bank.entries for r in entry.rots)

    def warm_up(self) -> None:
        """The classifier and danger head, and what a casual check never reaches: the RoT bank and the RoT writer.
        A writer that cannot load is switched off (logged): verdicts still get the bank's RoTs."""
        self.predict([["Hello, how are you?"]])
        self._bank.search([["Hello, how are you?"]], k=1)
        if self._writer is not None:
            try:
                self._writer.write([["Hello, how are you?"]])
            except Exception:
                log.exception("the RoT writer cannot run; flagged verdicts take the RoT bank's nearest rules")
                self._writer = None

    def probabilities(self, contexts: Sequence[Sequence[str]]) -> np.ndarray:
        """Calibrated coarse probabilities (casual, caution, intervention), one row per context."""
        config = self.config
        encoded = encode_contexts(self._tokenizer, contexts, config)
        if encoded.cut:
            log.warning(
                "%d context(s) longer than %d tokens were truncated from the oldest turn",
                encoded.cut,
                config.max_length,
            )
        logits = batched_logits(self._model, encoded, self._tokenizer.pad_token_id, self.batch_size, self._workers)
        return softmax(logits, config.temperature)

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        if not contexts:
            return []
        head = self._danger
        if head is None or len(contexts) > self.batch_size:
            probs = self.probabilities(contexts)
            return self.verdicts(contexts, probs, *self.decide(probs, contexts), with_rots)
        # one batch (an interactive check, a service's micro-batch): its two encoder passes run at once, one per
        # core, so the danger pass adds little latency (several batches keep every core busy either way). Both
        # models load here first, one after the other: transformers' loading patches torch globally, and two loads
        # at once left later models on the meta device
        _ = self._model, head.encoder
        danger = self._pool.submit(head.calls, contexts)
        probs = self.probabilities(contexts)
        return self.verdicts(contexts, probs, *self.decide(probs, contexts, danger.result()), with_rots)

    @cached_property
    def _pool(self):
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(1, thread_name_prefix="danger")

    def decide(
        self, probs: np.ndarray, contexts: Sequence[Sequence[str]], danger: list | None = None
    ) -> tuple[list[SafetyLabel], list[str | None]]:
        """Labels from calibrated probabilities, then the danger head's reading (`danger`: its `DangerCall`s, if
        already made) where the folder has one."""
        labels = decide(probs, self.config)
        head = self._danger
        if head is None:
            return labels, [None] * len(labels)
        no_intervention = probs.copy()
        no_intervention[:, 2] = 0.0
        fallback = decide(no_intervention, self.config)
        return head.apply(labels, head.calls(contexts) if danger is None else danger, fallback)

    def verdicts(
        self,
        contexts: Sequence[Sequence[str]],
        probs: np.ndarray,
        labels: Sequence[SafetyLabel],
        categories: Sequence[str | None] | None = None,
        with_rots: bool = True,
    ) -> list[Verdict]:
        """Verdicts from decided probabilities, with this model's RoTs for the flagged contexts (a cascade decides
        some contexts with another model and still answers with this one's RoT bank). A danger category's safety
        rule comes first among the RoTs (`add_rots`)."""
        scores = five_way_scores(probs)
        names = [label.value for label in SafetyLabel]
        categories = categories or [None] * len(labels)
        verdicts = [
            Verdict(label, dict(zip(names, map(float, row), strict=True)), danger=category)
            for label, row, category in zip(labels, scores, categories, strict=True)
        ]
        if with_rots:
            self.add_rots(contexts, verdicts)
        return verdicts

    def add_rots(self, contexts: Sequence[Sequence[str]], verdicts: Sequence[Verdict]) -> None:
        """Give every flagged verdict its reasons, most precise source first:

        1. the danger category's safety rule (an emergency's only where it is handed over, an act's wherever flagged);
        2. the RoT bank, where a known post is close enough (its relevance gate);
        3. for a post about a group of people, a stereotype-form rule ("It's wrong to think women are …") about a
           group the dialogue names (`rotwriter.grounded` with the bank's groups) that says more of the post's own
           words than the group (`rotwriter.shared_words`): the nearest bank entries' (human written) or the RoT
           writer's, the one that shares the most words, the bank's on a tie;
        4. the RoT writer's rule of another form, if it passes the writer's own checks;
        5. `GENERAL_ROT`.

        Precision first: a rule about another situation is worse than a general one. Read by hand (session 19,
        `docs/reports/reasons-handread-rots-s19.md`), the nearest bank entries of other forms were about another
        situation three times in four, and stereotype rules sharing only the group named another stereotype. A
        flagged verdict never goes without a reason."""
        from prosocial.canary.rotwriter import grounded, shared_words, subject
        from prosocial.data.danger import BY_NAME, Level

        flagged = [i for i, v in enumerate(verdicts) if not v.safety_label.is_casual]
        if not flagged:
            return
        k = self.rots_per_context or self.config.rots_per_context
        queries = [list(contexts[i]) for i in flagged]
        similarity = self._bank.similarities(queries)  # encoded once, for the gated search and the nearest entries
        row = {i: r for r, i in enumerate(flagged)}
        for i, rots in zip(flagged, self._bank.search(queries, k=k, similarity=similarity), strict=True):
            verdicts[i].rots = rots
        for i in flagged:
            verdict = verdicts[i]
            if verdict.danger and (
                verdict.coarse is Coarse.NEEDS_INTERVENTION or BY_NAME[verdict.danger].level is Level.ACT
            ):
                rule = BY_NAME[verdict.danger].rot
                verdict.rots = [rule, *(r for r in verdict.rots if r != rule)]
        missing = [i for i in flagged if not verdicts[i].rots]
        if not missing:
            return
        written: list[str | None] = [None] * len(missing)
        limit = self.rot_writer_max_batch
        if self._writer is not None and (limit is None or len(contexts) <= limit):
            try:
                written = self._writer.write([list(contexts[i]) for i in missing])
            except Exception:  # a broken writer must not cost the verdict: the bank and the general rule stand in
                log.exception("the RoT writer failed on %d context(s); it is switched off, flagged verdicts take "
                              "the bank's rules or the general rule", len(missing))
                self._writer = None
        nearest = self._bank.search([list(contexts[i]) for i in missing], k=8, min_similarity=-1.0,
                                    similarity=similarity[[row[i] for i in missing]])
        for i, rots, rot in zip(missing, nearest, written, strict=True):
            context = contexts[i]
            candidates = [*rots, rot] if rot else rots  # the bank's first: they win a tie
            scored = [(shared_words(r, context, besides=who), -n, r) for n, r in enumerate(candidates)
                      if (who := subject(r)) and grounded(r, context, self._groups)]
            about_the_post = [r for score, _, r in sorted(scored, reverse=True) if score > 0]
            if about_the_post:
                verdicts[i].rots = about_the_post[:k]
            elif rot and not subject(rot):
                verdicts[i].rots = [rot]
            else:
                verdicts[i].rots = [GENERAL_ROT]
