"""Train the learned situation–rule matcher for norms (`prosocial.canary.norm_matcher`): `prosocial train
norm-matcher`.

The packaged all-MiniLM-L6-v2 is fine-tuned as a bi-encoder on (situation, rule) pairs, so that "does this rule
apply to this situation" becomes a cosine (issue #35: the stock encoder matches topic, not the act a rule is
about). Pairs, from train splits only:

- ``sbic``: Social Bias Frames train posts with up to `PER_SITUATION` RoTs made from their implied statements
  (paper §3.1), except posts whose text is also in the dev split (SBIC repeats posts under different ids);
- ``prosocial``: ProsocialDialog train contexts (the user's turn) with the norms their replies state
  (`data.silver_rots`), except turns that are SBIC dev posts (the dataset opens dialogues with SBIC posts);
- ``dialogstudio``: DialogStudio's converted ProsocialDialog examples with their annotated RoTs, where present;
- ``danger``: the danger corpus's ``train`` rows (emergencies and dangerous acts) with their category's safety rule
  (`data.danger`), each with a benign look-alike of the same category as a hard negative situation. Its ``dev``
  and ``heldout`` rows are never read.

The loss is a symmetric InfoNCE over the batch (situation → rule and rule → situation, cosines × `scale`): every
other rule and situation of the batch is a negative (in-batch negatives), and so are hard negatives: per pair one
rule mined near the situation by the starting encoder that is not the situation's (rules on the same topic that do
not apply teach the act), and the danger look-alikes. Pairs that share a situation or a rule are never one
another's negatives (twelve danger rules recur in every batch).

A hashed `dev_share` of the situations is held out: rule retrieval among the distinct dev rules (recall@1, MRR)
is measured before and after training, the starting encoder being the baseline. The matcher's default threshold
is fitted on casual chat turns (default: the packaged BYU Chit-Chat train turns): the lowest at which a rule
matches at most `max_false_match` of them, on average over the dev rules; a pack's own thresholds come from
`prosocial norms calibrate`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary.danger_train import CORPUS
from prosocial.errors import DataError

log = logging.getLogger(__name__)

SOURCES = ("sbic", "prosocial", "dialogstudio", "danger")
PROSOCIAL_TRAIN = "prosocial_dialog_partial/train.json"
DIALOGSTUDIO = "prosocial_dialog_examples/dialogstudio_converted_examples.json"
#: rules kept per situation (SBIC posts carry one per annotator, many near-identical)
PER_SITUATION = 2


@dataclass(frozen=True)
class Pair:
    """A situation and a rule that applies to it, with optional hard negatives."""

    situation: str
    rule: str
    source: str
    #: a situation that looks alike but the rule does not cover (the danger corpus's benign look-alikes)
    negative_situation: str | None = None
    #: a rule near the situation that does not apply to it (`mine_hard_negatives`)
    negative_rule: str | None = None


@dataclass
class MatcherTrainSettings:
    epochs: float = 1.0
    #: optimiser updates; wins over `epochs`
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 2e-5
    weight_decay: float = 0.01
    #: share of the updates spent warming the learning rate up
    warmup_share: float = 0.1
    #: cosine → logit (sentence-transformers' MultipleNegativesRankingLoss uses 20)
    scale: float = 20.0
    max_length: int = 96
    hard_negatives: bool = True
    #: a mined negative rule is drawn from the situation's this many nearest rules that are not its own
    hard_negative_pool: int = 10
    #: a rule at least this similar (starting encoder) to one of the situation's rules is a rewording of it, never
    #: its negative (SBIC: "It's wrong to think women are weak" / "... women are weaker")
    duplicate_similarity: float = 0.9
    #: share of situations held out to measure retrieval (hashed, so the same ones every run)
    dev_share: float = 0.05
    #: the default threshold lets a rule match at most this share of casual turns
    max_false_match: float = 0.01
    seed: int = 0
    threads: int = 2
    #: "auto" (CUDA when available), "cuda" or "cpu"
    device: str = "auto"


def _distinct(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(t.split()) for t in texts if t and t.strip()))


def matcher_pairs(root: Path | None = None, corpus: Path = CORPUS, seed: int = 0) -> dict[str, list[Pair]]:
    """The training pairs of each source (see the module docstring); a missing ProsocialDialog or DialogStudio
    file is skipped with a warning, no pairs at all is an error."""
    from prosocial.data.adapters import default_root, load_benchmark
    from prosocial.data.danger import BY_NAME, read_corpus
    from prosocial.data.formats import read_dialogues
    from prosocial.data.silver_rots import norm_sentences

    root = Path(root) if root is not None else default_root()
    pairs: dict[str, list[Pair]] = {name: [] for name in SOURCES}
    unseen = {e.context[-1] for e in load_benchmark("sbic", "dev", root=root)}
    for example in load_benchmark("sbic", "train", root=root):
        if example.context[-1] not in unseen:
            pairs["sbic"] += [Pair(example.context[-1], r, "sbic") for r in _distinct(example.rots)[:PER_SITUATION]]
    for name, file in (("prosocial", PROSOCIAL_TRAIN), ("dialogstudio", DIALOGSTUDIO)):
        if not (root / file).exists():
            log.warning("no %s in %s: the matcher trains without %s pairs", file, root, name)
            continue
        for dialogue in read_dialogues(root / file):
            given: set[str] = set()  # annotated RoTs repeat down a dialogue: each belongs to the turn it starts at
            for turn in dialogue.turns:
                rules = [r for r in _distinct(turn.rots or norm_sentences(turn.response)) if r not in given]
                given.update(rules)
                if turn.context not in unseen:
                    pairs[name] += [Pair(" ".join(turn.context.split()), r, name) for r in rules[:PER_SITUATION]]
    cases = read_corpus(corpus, ("train",))
    lookalikes: dict[str, list[str]] = {}
    for case in cases:
        if case.kind == "benign":
            lookalikes.setdefault(case.category, []).append(case.text)
    rng = random.Random(seed)
    for case in cases:
        if case.kind != "benign":
            alike = lookalikes.get(case.category)
            pairs["danger"].append(Pair(case.text, BY_NAME[case.category].rot, "danger",
                                        rng.choice(alike) if alike else None))
    if not any(pairs.values()):
        raise DataError.at(root, "no (situation, rule) pairs found: is this the shared data folder?")
    return pairs


def _bucket(text: str) -> float:
    """A stable number in [0, 1) per situation, salted so it does not repeat the adapters' train/dev split."""
    return int(hashlib.sha1(f"norm-matcher:{text}".encode()).hexdigest()[:8], 16) / 0x100000000


def split_pairs(pairs: Sequence[Pair], dev_share: float) -> tuple[list[Pair], list[Pair]]:
    """(train, dev) by situation: a situation's pairs all go to one side."""
    train = [p for p in pairs if _bucket(p.situation) >= dev_share]
    return train, [p for p in pairs if _bucket(p.situation) < dev_share]


class Encoder:
    """The encoder being trained, with its tokenizer: mean-pooled, L2-normalised vectors, with or without
    gradients (the same pooling as `rotbank.Embedder`, which reads the saved matcher)."""

    def __init__(self, tokenizer, model, max_length: int, device: str):
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length
        self.device = device

    def __call__(self, texts: Sequence[str]):
        import torch

        from prosocial.canary.mini import masked_mean

        batch = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True,
                               return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return torch.nn.functional.normalize(masked_mean(hidden, batch["attention_mask"]), dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, desc: str = "embed"):
        """Unit vectors as numpy, without gradients, in batches of similar length."""
        import torch
        from tqdm.auto import tqdm

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress):
                rows = order[start : start + batch_size]
                out[rows] = self([texts[i] for i in rows]).float().cpu().numpy()
        self.model.train(was_training)
        return out


def mine_hard_negatives(pairs: Sequence[Pair], encode: Callable[[list[str]], np.ndarray],
                        settings: MatcherTrainSettings, rng: random.Random) -> list[Pair]:
    """Each pair with a rule near its situation (by `encode`, the starting encoder) that is neither one of the
    situation's rules nor a rewording of one (cosine ≥ `duplicate_similarity`), drawn from the
    `hard_negative_pool` nearest such: in-batch negatives are mostly off-topic and easy, and only rules on the
    same topic that do not apply teach the act a rule is about."""
    situations = sorted({p.situation for p in pairs})
    rules = sorted({p.rule for p in pairs})
    if len(rules) < 2:
        return list(pairs)
    position = {r: i for i, r in enumerate(rules)}
    own: dict[str, set[int]] = {}
    for p in pairs:
        own.setdefault(p.situation, set()).add(position[p.rule])
    situation_vectors, rule_vectors = encode(situations), encode(rules)
    depth = min(len(rules), settings.hard_negative_pool * 4 + max(len(o) for o in own.values()))
    candidates: dict[str, np.ndarray] = {}
    for start in range(0, len(situations), 1024):
        similarity = situation_vectors[start : start + 1024] @ rule_vectors.T
        top = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
        for row, situation in enumerate(situations[start : start + 1024]):
            candidates[situation] = top[row][np.argsort(-similarity[row, top[row]])]
    mined = []
    for p in pairs:
        mine = sorted(own[p.situation])
        pool = [int(c) for c in candidates[p.situation] if int(c) not in own[p.situation]
                and (rule_vectors[mine] @ rule_vectors[c]).max() < settings.duplicate_similarity]
        pool = pool[: settings.hard_negative_pool]
        mined.append(Pair(p.situation, p.rule, p.source, p.negative_situation,
                          rules[rng.choice(pool)] if pool else None))
    return mined


def contrastive_loss(encoder: Encoder, batch: Sequence[Pair], scale: float, positives: dict[str, set[str]]):
    """Symmetric InfoNCE over one batch (see the module docstring). `positives[situation]`: every rule of the
    situation in the training set, so that a batch-mate's rule (or hard negative) that also applies to it is no
    negative."""
    import torch

    situations = [p.situation for p in batch]
    rules = [p.rule for p in batch]
    negative_rules = [p.negative_rule for p in batch if p.negative_rule]
    negative_situations = [p.negative_situation for p in batch if p.negative_situation]
    rule_side = encoder(rules + negative_rules)
    situation_side = encoder(situations + negative_situations)
    n = len(batch)
    diagonal = torch.arange(n, device=rule_side.device)
    # situation i against every rule column: a column is masked where it also applies to situation i
    columns = rules + negative_rules
    applies = torch.tensor([[c in positives.get(s, ()) for c in columns] for s in situations],
                           device=rule_side.device)
    applies[diagonal, diagonal] = False
    to_rules = (situation_side[:n] @ rule_side.T * scale).masked_fill(applies, float("-inf"))
    # rule i against every situation column (look-alikes are never positives)
    rows = situations + negative_situations
    applies = torch.tensor([[r in positives.get(s, ()) for s in rows] for r in rules], device=rule_side.device)
    applies[diagonal, diagonal] = False
    to_situations = (rule_side[:n] @ situation_side.T * scale).masked_fill(applies, float("-inf"))
    cross_entropy = torch.nn.functional.cross_entropy
    return (cross_entropy(to_rules, diagonal) + cross_entropy(to_situations, diagonal)) / 2


def retrieval(pairs: Sequence[Pair], encode: Callable[[list[str]], np.ndarray]) -> dict[str, float]:
    """Rule retrieval on `pairs`: each situation ranks every distinct rule of `pairs`; recall@1 (its top rule is
    one of its own) and the mean reciprocal rank of its best-ranked own rule."""
    if not pairs:
        return {"situations": 0, "rules": 0, "recall_at_1": float("nan"), "mrr": float("nan")}
    situations = sorted({p.situation for p in pairs})
    rules = sorted({p.rule for p in pairs})
    position = {r: i for i, r in enumerate(rules)}
    similarity = encode(situations) @ encode(rules).T
    own: dict[str, list[int]] = {}
    for p in pairs:
        own.setdefault(p.situation, []).append(position[p.rule])
    ranks = []
    for row, situation in enumerate(situations):
        best = similarity[row, own[situation]].max()
        ranks.append(1 + int((similarity[row] > best).sum()))
    ranks = np.array(ranks)
    return {"situations": len(situations), "rules": len(rules), "recall_at_1": float((ranks == 1).mean()),
            "mrr": float((1 / ranks).mean())}


def fit_default_threshold(dev: Sequence[Pair], casual: Sequence[str], encode: Callable[[list[str]], np.ndarray],
                          max_false_match: float) -> dict[str, float]:
    """The matcher's default threshold: the lowest (in steps of 0.001) at which a dev rule matches at most
    `max_false_match` of the casual turns, on average over the rules; with the share of dev situations whose own
    rule reaches it (a rule alone, without the examples a norm adds to its prototype)."""
    from prosocial.canary.norms import fit_thresholds

    rules = sorted({p.rule for p in dev})
    rule_vectors = encode(rules)
    scores = np.sort((encode(list(casual)) @ rule_vectors.T).ravel())[::-1]
    keep = math.floor(max_false_match * len(scores) + 1e-9) + 1
    (threshold,), _ = fit_thresholds(scores[None, :keep], len(scores), max_false_match, -1.0, 1.0)
    position = {r: i for i, r in enumerate(rules)}
    own = (encode([p.situation for p in dev]) * rule_vectors[[position[p.rule] for p in dev]]).sum(1)
    return {"min_similarity": float(threshold), "dev_pairs_at_threshold": float((own >= threshold).mean()),
            "casual_turns": len(casual), "dev_rules": len(rules)}


def train_matcher(train: Sequence[Pair], settings: MatcherTrainSettings, encoder_dir: Path | None = None,
                  progress: bool = True) -> tuple[Encoder, list[float]]:
    """Fine-tune the encoder (default: the packaged all-MiniLM-L6-v2) on `train` with `contrastive_loss`;
    returns the encoder and the loss per update."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    from prosocial.canary.encoders import packaged_minilm
    from prosocial.canary.mini_train import update

    if not train:
        raise ValueError("no training pairs")
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
    directory = encoder_dir or packaged_minilm()
    encoder = Encoder(AutoTokenizer.from_pretrained(directory),
                      AutoModel.from_pretrained(directory, dtype=torch.float32).to(device), settings.max_length, device)
    if settings.hard_negatives:
        train = mine_hard_negatives(train, lambda texts: encoder.encode(texts, progress=progress, desc="mine"),
                                    settings, rng)
    positives: dict[str, set[str]] = {}
    for p in train:
        positives.setdefault(p.situation, set()).add(p.rule)
    total = settings.max_steps or max(1, math.ceil(len(train) / settings.batch_size * settings.epochs))
    warmup = max(1, int(total * settings.warmup_share))
    optimizer = torch.optim.AdamW(encoder.model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    encoder.model.train()
    order: list[int] = []
    losses: list[float] = []
    bar = tqdm(total=total, desc="train norm matcher", unit="step", disable=not progress)
    for _ in range(total):
        if len(order) < settings.batch_size:  # a new pass over the pairs, in a new random order
            fresh = list(range(len(train)))
            rng.shuffle(fresh)
            order += fresh
        batch = [train[i] for i in order[: settings.batch_size]]
        del order[: settings.batch_size]
        loss = contrastive_loss(encoder, batch, settings.scale, positives)
        update(loss, list(encoder.model.parameters()), optimizer, scheduler, losses, bar)
    bar.close()
    encoder.model.eval()
    return encoder, losses


def train_norm_matcher(out: str | Path, root: Path | None = None, corpus: Path = CORPUS,
                       settings: MatcherTrainSettings | None = None, encoder_dir: Path | None = None,
                       pairs: dict[str, list[Pair]] | None = None, casual: Sequence[str] | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Build the pairs (or take `pairs`, per source), train, measure retrieval on the dev situations before and
    after, fit the default threshold on `casual` turns (default: the packaged ones) and save the matcher folder
    `out`; returns the report, also kept in the folder's matcher.json."""
    import os

    import torch

    from prosocial.canary.norm_matcher import save_matcher
    from prosocial.canary.norms import read_casual

    settings = settings or MatcherTrainSettings()
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    pairs = pairs if pairs is not None else matcher_pairs(root, corpus, settings.seed)
    train, dev = split_pairs([p for source in pairs.values() for p in source], settings.dev_share)
    log.info("norm matcher: %d train and %d dev pairs", len(train), len(dev))
    casual = list(casual) if casual is not None else read_casual()
    encoder, losses = train_matcher(train, settings, encoder_dir, progress)
    before = _starting_encoder(encoder_dir, settings, encoder.device)
    trained = {"before": retrieval(dev, before.encode), "after": retrieval(dev, encoder.encode)}
    threshold = fit_default_threshold(dev or train, casual, encoder.encode, settings.max_false_match)
    window = max(1, min(20, len(losses) // 4))  # the mean loss of the first and of the last updates
    report = {
        "pairs": {name: len(p) for name, p in pairs.items()},
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "dev_retrieval": trained,
        "threshold": threshold,
        "steps": len(losses),
        "first_loss": float(np.mean(losses[:window])),
        "last_loss": float(np.mean(losses[-window:])),
        "settings": asdict(settings),
        "train_seconds": round(time.perf_counter() - started),
        "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, device {encoder.device}",
    }
    save_matcher(out, encoder.tokenizer, encoder.model, threshold["min_similarity"], settings.max_length, report)
    return report


def _starting_encoder(encoder_dir: Path | None, settings: MatcherTrainSettings, device: str) -> Encoder:
    """The encoder before training: the baseline the retrieval figures compare with."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from prosocial.canary.encoders import packaged_minilm

    directory = encoder_dir or packaged_minilm()
    model = AutoModel.from_pretrained(directory, dtype=torch.float32).to(device).eval()
    return Encoder(AutoTokenizer.from_pretrained(directory), model, settings.max_length, device)
