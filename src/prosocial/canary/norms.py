"""Your own norms at run time: rules-of-thumb a deployment adds, which change what any detector flags (and so
what Prost, the agent and the guard proxy say) with no model retrained or touched.

The paper keeps Canary apart from Prost so the safety side can change alone, because norms differ across
cultures, communities and time (§2.1, §4). A norm is a rule-of-thumb with the situations it covers:

    - id: no-spoilers
      rot: It's rude to spoil a story for people who haven't seen it.
      level: caution            # caution | intervention | allowed
      examples: ["Bruce Willis was dead the whole time in The Sixth Sense", "the butler did it, by the way"]
      counter_examples: ["I loved The Sixth Sense, no spoilers but watch it"]    # optional
      min_similarity: 0.6       # optional: this norm's own match threshold
      calibrated_similarity: {prototype: 0.52}    # optional, written by `prosocial norms calibrate`

Files are YAML (a list of norms, or `norms:` holding one) or JSON Lines (one norm per line); errors name the
file, line and field.

**Matching.** A *matcher* turns texts into unit vectors: the prototype matcher (the default, and the measured
baseline) embeds with the packaged MiniLM; a learned matcher (`prosocial.canary.norm_matcher`, trained by
`prosocial train norm-matcher`) is a MiniLM fine-tuned on (situation, rule) pairs. Either way each norm is a
prototype, the normalised mean of its RoT's and its examples' vectors, and a context's last utterance matches a
norm when its cosine to the prototype reaches the norm's threshold, unless the utterance is closer to one of the
norm's counter-examples than to the prototype and to each of the norm's examples (a near neighbour the norm says it
does not cover). Comparing a counter-example with the nearest *example* rather than with the prototype alone
matters: the prototype is an average, less similar to anything than its nearest member, so a true case of the
norm that also shares the counter-example's topic was vetoed.

**Thresholds.** A norm's own `min_similarity` wins; else its threshold calibrated for the matcher in use
(`calibrated_similarity`, keyed by the matcher's id); else the matcher's default (`DEFAULT_MIN_SIMILARITY` for
the prototype matcher, fitted by `benchmarks/bench_norms.py`). `calibrate` sets each norm's threshold from
casual chat turns (the packaged BYU Chit-Chat sample, or a platform's own): the lowest at which the norm matches
at most a target share of them, within a floor and a ceiling. It only reads the scores a matcher gives, so it
serves any matcher.

What a match does (`NormedDetector`): *intervention* makes the verdict needs intervention; *caution* makes a
casual verdict needs caution; both put the norm's RoT first. *allowed* lowers a needs-caution verdict to casual
(a situation this deployment does not want flagged). A needs-intervention verdict of the base detector is never
lowered. When several norms match, the most similar decides (nearest prototype; on the example packs'
leave-one-out it routes slightly better than letting intervention beat caution beat allowed, 48 vs 49 misses of
76). The verdict names the norm that decided it; its scores stay the base detector's.

`run_norm_tests` and `norm_report` test a norms file like unit tests for a policy: every example and case must be
decided by its norm, with precision and recall per norm and the near misses that show what to fix.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.context import check_context
from prosocial.data.labels import SafetyLabel
from prosocial.errors import DataError, Problem
from prosocial.io import atomic_write, read_jsonl, read_text
from prosocial.resources import RESOURCES

log = logging.getLogger(__name__)

LEVELS = ("intervention", "caution", "allowed")
FIELDS = {"id", "rot", "level", "examples", "counter_examples", "min_similarity", "calibrated_similarity"}
#: the prototype matcher's cosine above which a last utterance matches a norm (see the module docstring)
DEFAULT_MIN_SIMILARITY = 0.46
#: calibrated thresholds stay within [default - FLOOR_BELOW, default + CEILING_ABOVE] of the matcher's default
#: unless told otherwise (0.40-0.70 for the prototype matcher, the range bench_norms.py's grid searched): below the
#: floor, a norm that no casual turn comes near would match anything vaguely on its topic; above the ceiling, a
#: norm whose topic casual chat is full of would match little but its own examples
FLOOR_BELOW, CEILING_ABOVE = 0.06, 0.24
#: casual chat turns shipped for calibration (BYU Chit-Chat train turns, MIT; README.md beside them)
CASUAL_TURNS = RESOURCES / "norms" / "casual_turns.jsonl"
#: banks with at least this many texts keep their embeddings in the cache folder
CACHE_FROM = 1000
#: banks with at least this many norms are searched through an HNSW index (faiss) instead of a matrix product:
#: exact search takes 7.5 ms at 100,000 norms here, while building the index takes 42 s (bench_norms.py)
ANN_FROM = 200_000
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


@dataclass(frozen=True)
class Norm:
    id: str
    rot: str
    level: str
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...] = ()
    min_similarity: float | None = None
    #: "file:line", for messages
    origin: str = ""
    #: (matcher id, threshold) pairs written by `prosocial norms calibrate`
    calibrated: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class NormMatch:
    norm: Norm
    similarity: float


# --- reading -------------------------------------------------------------------------------------------------


#: a norms file is a list of flat objects (depth 4 with a top-level `norms:` key); deeper is a mistake or an attack
MAX_YAML_DEPTH = 16


def _check_yaml_events(path: Path, text: str) -> None:
    """Refuse anchors, aliases and deep nesting from the event stream, before anything is built.

    An alias repeats a node without repeating its text, so nine lines of nested aliases ("billion laughs") expand to
    gigabytes when constructed or printed; norms never need one (write the text out). PyYAML's composer recurses
    once per level, so a file nested thousands deep ends in a RecursionError; the parser does not recurse, so
    reading the events first stops both in milliseconds.
    """
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise DataError.at(path, f"YAML aliases (*{event.anchor[:40]}) are not allowed in a norms file; "
                               "write the text out", line=line)
        if getattr(event, "anchor", None) is not None:
            raise DataError.at(path, f"YAML anchors (&{event.anchor[:40]}) are not allowed in a norms file; "
                               "write the text out", line=line)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise DataError.at(path, f"nested more than {MAX_YAML_DEPTH} levels deep; a norm is a flat object "
                                   "(id, rot, level, examples)", line=line)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _yaml_items(path: Path, text: str) -> Iterator[tuple[int, Any, dict[str, int]]]:
    """(line, value, line of each field) for each norm of a YAML file."""
    import yaml

    try:
        _check_yaml_events(path, text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError.at(path, f"invalid YAML: {getattr(exc, 'problem', exc)}",
                           line=mark.line + 1 if mark else None) from None
    if root is None:
        return
    if isinstance(root, yaml.MappingNode):
        inner = [v for k, v in root.value if k.value == "norms"]
        if not inner:
            raise DataError.at(path, "expected a list of norms, or a mapping with a 'norms' list", line=1)
        root = inner[0]
    if not isinstance(root, yaml.SequenceNode):
        raise DataError.at(path, "expected a list of norms", line=root.start_mark.line + 1)
    loader = yaml.SafeLoader("")
    for node in root.value:
        lines = {}
        if isinstance(node, yaml.MappingNode):
            lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        try:
            value = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise DataError.at(path, f"invalid YAML: {exc}", line=node.start_mark.line + 1) from None
        yield node.start_mark.line + 1, value, lines


def _shown(value: Any) -> str:
    """A value for an error message, cut short: a message must stay one readable line whatever the file holds."""
    import reprlib

    shown = reprlib.Repr()  # keyword arguments only from Python 3.12
    shown.maxstring = shown.maxother = 60
    shown.maxlist = shown.maxdict = 4
    shown.maxlevel = 2
    return shown.repr(value)


def _texts(value: Any, name: str, required: bool) -> tuple[str, ...] | str:
    """The texts of an examples field, or why not."""
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        return f"'{name}' must be a list of strings"
    texts = tuple(" ".join(t.split()) for t in value)
    if any(not t for t in texts):
        return f"'{name}' has an empty text"
    if required and not texts:
        return f"'{name}' needs at least one situation"
    return texts


def _norm(value: Any, origin: str) -> Norm | tuple[str, str | None]:
    """A norm, or (what is wrong, the field at fault)."""
    if not isinstance(value, dict):
        return "expected a norm (an object with id, rot, level, examples)", None
    unknown = sorted(set(value) - FIELDS)
    if unknown:
        return f"unknown field (known: {', '.join(sorted(FIELDS))})", unknown[0]
    for name in ("id", "rot", "level", "examples"):
        if name not in value:
            return "missing field", name
    identifier, rot, level = value["id"], value["rot"], value["level"]
    if not isinstance(identifier, str) or not ID_PATTERN.fullmatch(identifier):
        return "an id is letters, digits and . _ : - (at most 100, starting with a letter or digit)", "id"
    if not isinstance(rot, str) or not rot.strip():
        return "the rule-of-thumb must be a non-empty string", "rot"
    if level not in LEVELS:
        return f"unknown level {_shown(level)} (known: {', '.join(LEVELS)})", "level"
    examples = _texts(value["examples"], "examples", required=True)
    if isinstance(examples, str):
        return examples, "examples"
    counters = _texts(value.get("counter_examples"), "counter_examples", required=False)
    if isinstance(counters, str):
        return counters, "counter_examples"
    if set(counters) & set(examples):
        return "a situation cannot be both an example and a counter-example", "counter_examples"
    threshold = value.get("min_similarity")
    if threshold is not None and not _similarity_value(threshold):
        return "min_similarity must be a number from -1 to 1", "min_similarity"
    calibrated = {} if value.get("calibrated_similarity") is None else value["calibrated_similarity"]
    if not isinstance(calibrated, dict) or not all(
            isinstance(k, str) and k.strip() and _similarity_value(v) for k, v in calibrated.items()):
        return ("calibrated_similarity maps a matcher id to a number from -1 to 1 (written by "
                "`prosocial norms calibrate`)"), "calibrated_similarity"
    return Norm(identifier, " ".join(rot.split()), level, examples, counters,
                None if threshold is None else float(threshold), origin,
                tuple((k, float(v)) for k, v in calibrated.items()))


def _similarity_value(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and -1.0 <= value <= 1.0


def read_norms(path: str | Path) -> list[Norm]:
    """The norms of one file (`.yaml`/`.yml` or `.jsonl`/`.json`), every problem reported with file, line and
    field (all of them at once, so a user fixes a file in one pass)."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, "no such norms file")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".jsonl", ".json"):
        raise DataError.at(path, "a norms file is YAML (.yaml, .yml) or JSON Lines (.jsonl)")
    if suffix in (".yaml", ".yml"):
        items = _yaml_items(path, read_text(path))
    else:
        items = ((number, value, {}) for number, value in read_jsonl(path))
    norms, problems = [], []
    for line, value, lines in items:
        result = _norm(value, f"{path}:{line}")
        if isinstance(result, Norm):
            norms.append(result)
        else:
            message, name = result
            problems.append(Problem(str(path), message, lines.get(name or "", line), name))
    if problems:
        raise DataError(problems)
    if not norms:
        raise DataError.at(path, "no norms in the file")
    return norms


def load_norms(sources: Iterable[str | Path | Norm]) -> list[Norm]:
    """Norms from files (and ready `Norm`s), ids unique across all of them."""
    norms: list[Norm] = []
    for source in sources:
        norms.extend([source] if isinstance(source, Norm) else read_norms(source))
    seen: dict[str, Norm] = {}
    problems = []
    for norm in norms:
        if norm.id in seen:
            file, _, line = norm.origin.rpartition(":")
            problems.append(Problem(file or "(norms)", f"duplicate id {norm.id!r} (first at {seen[norm.id].origin})",
                                    int(line) if line.isdigit() else None, "id"))
        seen.setdefault(norm.id, norm)
    if problems:
        raise DataError(problems)
    return norms


# --- matchers ------------------------------------------------------------------------------------------------


class PrototypeMatcher:
    """The baseline matcher: texts embedded with the packaged MiniLM (or the `embedder` given), never trained for
    matching; it captures a situation's topic more than the act a rule is about (issue #35).

    Every matcher has an `id` (calibrated thresholds are kept per matcher: a threshold means nothing for another
    one's scores), `encode(texts)` giving unit vectors, `min_similarity` (its default threshold) and `cache_key`
    (embeddings cached on disk are keyed by it)."""

    def __init__(self, embedder=None, min_similarity: float = DEFAULT_MIN_SIMILARITY):
        self.embedder = embedder
        self.min_similarity = min_similarity

    @cached_property
    def _embedder(self):
        from prosocial.canary.rotbank import Embedder

        return self.embedder or Embedder()

    @property
    def id(self) -> str:
        model_dir = getattr(self._embedder, "model_dir", None)
        return "prototype" if model_dir is None else f"prototype:{Path(model_dir).name}"

    @property
    def cache_key(self) -> str:
        return str(getattr(self._embedder, "model_dir", None))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.encode(list(texts))


def load_matcher(matcher=None):
    """A matcher from what a caller names: None or "prototype" (the default), a learned matcher's folder
    (`prosocial train norm-matcher`), or a matcher object."""
    if matcher is None or matcher == "prototype":
        return PrototypeMatcher()
    if isinstance(matcher, str | Path):
        from prosocial.canary.norm_matcher import LearnedMatcher

        return LearnedMatcher.load(matcher)
    return matcher


# --- matching ------------------------------------------------------------------------------------------------


class NormBank:
    """Norms as prototypes: each norm is the normalised mean of its examples' and its RoT's vectors (chosen by
    leave-one-out recall over the example packs' own examples, see the README), matched by cosine: a matrix
    product, or an HNSW index for large banks; embeddings cached on disk by content. `matcher` (default: the
    prototype matcher over `embedder`, the packaged MiniLM when None) gives the vectors."""

    def __init__(self, norms: Sequence[Norm], embedder=None, min_similarity: float | None = None,
                 cache_dir: str | Path | None = None, ann_from: int = ANN_FROM, matcher=None):
        self.norms = list(norms)
        self.matcher = PrototypeMatcher(embedder) if matcher is None else load_matcher(matcher)
        self.min_similarity = self.matcher.min_similarity if min_similarity is None else min_similarity
        self.cache_dir = cache_dir
        self.ann_from = ann_from

    def threshold(self, norm: Norm) -> tuple[float, str]:
        """(threshold, where it comes from): the norm's own `min_similarity` ("file") wins, then its threshold
        calibrated for this bank's matcher ("calibrated"), then the bank's default ("default")."""
        if norm.min_similarity is not None:
            return norm.min_similarity, "file"
        calibrated = dict(norm.calibrated).get(self.matcher.id)
        return (calibrated, "calibrated") if calibrated is not None else (self.min_similarity, "default")

    @cached_property
    def _index(self) -> dict[str, np.ndarray]:
        """Unit prototypes and the length of each unnormalised one (to take an example out again), thresholds,
        the counter-example vectors with the norm each belongs to, and the example vectors of the norms that
        have counter-examples (the counter-example rule compares with them), both in norm order."""
        members = [(i, t) for i, n in enumerate(self.norms) for t in (n.rot, *n.examples)]
        counters = [(i, t) for i, n in enumerate(self.norms) for t in n.counter_examples]
        vectors = self._embed([t for _, t in members + counters])
        sums = np.zeros((len(self.norms), vectors.shape[1]), dtype=np.float32)
        np.add.at(sums, np.array([i for i, _ in members], dtype=np.int64), vectors[: len(members)])
        lengths = np.linalg.norm(sums, axis=1)
        guarded = [row for row, (i, text) in enumerate(members)
                   if self.norms[i].counter_examples and text != self.norms[i].rot]
        uncalibrated = sum(1 for n in self.norms if n.calibrated and n.min_similarity is None
                           and self.matcher.id not in dict(n.calibrated))
        if uncalibrated:
            log.warning("%d norm(s) were calibrated for other matchers than %s; they use its default threshold %.2f",
                        uncalibrated, self.matcher.id, self.min_similarity)
        return {
            "prototypes": sums / np.clip(lengths[:, None], 1e-12, None),
            "lengths": lengths,
            "thresholds": np.array([self.threshold(n)[0] for n in self.norms], dtype=np.float32),
            "counters": vectors[len(members):],
            "counter_owner": np.array([i for i, _ in counters], dtype=np.int64),
            "guard_examples": vectors[guarded],
            "guard_owner": np.array([members[row][0] for row in guarded], dtype=np.int64),
        }

    @cached_property
    def _texts(self) -> dict[str, list[str]]:
        """The counter-examples and the guarded examples of `_index`, as texts, in the same order."""
        return {"counters": [t for n in self.norms for t in n.counter_examples],
                "guard_examples": [t for n in self.norms if n.counter_examples for t in n.examples]}

    @cached_property
    def _owners(self) -> dict[str, list[int]]:
        """Which norms each example text belongs to (for leave-one-out)."""
        owners: dict[str, list[int]] = {}
        for i, norm in enumerate(self.norms):
            for text in norm.examples:
                owners.setdefault(text, []).append(i)
        return owners

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each norm id's position in `norms`."""
        return {n.id: i for i, n in enumerate(self.norms)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of query texts, from this bank's matcher."""
        return self.matcher.encode(list(texts))

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of a bank's texts; a bank of thousands is cached by content (under `cache_dir`, default
        the prosocial cache folder), so a restart does not spend minutes embedding it again."""
        if len(texts) < CACHE_FROM and self.cache_dir is None:
            return self.encode(texts)
        from prosocial.lm.hf import cache_root

        key = hashlib.sha256("\n".join([self.matcher.cache_key, *texts]).encode()).hexdigest()[:32]
        cached = (Path(self.cache_dir) if self.cache_dir else cache_root() / "norms") / f"norms-{key}.npy"
        if cached.is_file():
            return np.load(cached)
        vectors = self.encode(texts)
        with atomic_write(cached, "wb") as handle:
            np.save(handle, vectors)
        return vectors

    @cached_property
    def _ann(self):
        """A faiss HNSW index over the prototypes for banks of `ann_from` norms or more (brute force is exact and
        fast enough below; see the README for the crossover), else None."""
        if len(self.norms) < self.ann_from:
            return None
        import faiss

        prototypes = self._index["prototypes"]
        index = faiss.IndexHNSWFlat(prototypes.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.add(prototypes)
        index.hnsw.efSearch = 128
        return index

    def _candidates(self, queries: np.ndarray, leave_one_out: Sequence[bool], texts: Sequence[str],
                    k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The `k` most similar norms of each query with their similarities (exact, or by the ANN index)."""
        index = self._index
        k = min(k, len(self.norms))
        if self._ann is not None and not any(leave_one_out):
            similarity, top = self._ann.search(queries, k)
            return [(t[t >= 0], s[t >= 0]) for t, s in zip(top, similarity, strict=True)]
        similarity = queries @ index["prototypes"].T
        found = []
        for i, query in enumerate(queries):
            row = similarity[i]
            if leave_one_out[i]:
                row = row.copy()
                for norm in self._owners.get(texts[i], []):
                    row[norm] = self.similarity(query, norm, texts[i])
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            found.append((top, row[top]))
        return found

    def similarity(self, query: np.ndarray, norm: int, held_out: str | None = None) -> float:
        """The cosine of a query vector to norm `norm`'s prototype; with `held_out` (the query's own text, one of
        the norm's examples) to the prototype without it."""
        index = self._index
        if held_out is not None and norm in self._owners.get(held_out, ()):
            return float(unit(index["prototypes"][norm] * index["lengths"][norm] - query) @ query)
        return float(index["prototypes"][norm] @ query)

    def vetoed_by(self, query: np.ndarray, norm: int, score: float, held_out: str | None = None) -> str | None:
        """The counter-example of norm `norm` that the query is closer to than to the norm's prototype (`score`)
        and to each of its examples (but `held_out`), or None: such a situation is a near neighbour the norm
        says it does not cover."""
        index = self._index
        first, last = np.searchsorted(index["counter_owner"], [norm, norm + 1])
        if last == first:
            return None
        similarity = index["counters"][first:last] @ query
        closest = int(similarity.argmax())
        start, stop = np.searchsorted(index["guard_owner"], [norm, norm + 1])
        own = [float(s) for s, text in zip(index["guard_examples"][start:stop] @ query,
                                           self._texts["guard_examples"][start:stop], strict=True) if text != held_out]
        return self._texts["counters"][first + closest] if similarity[closest] > max([score, *own]) else None

    def match(self, texts: Sequence[str], leave_one_out: Sequence[bool] | None = None, candidates: int = 32,
              queries: np.ndarray | None = None) -> list[NormMatch | None]:
        """The deciding norm for each text, or None. Where `leave_one_out[i]`, text i is an example matched
        with itself taken out of the norms that hold it (testing whether a norm generalises from its other
        examples). `queries`: the texts' vectors, when the caller has them already."""
        index = self._index
        leave_one_out = list(leave_one_out) if leave_one_out else [False] * len(texts)
        queries = self.encode(texts) if queries is None else queries
        results: list[NormMatch | None] = []
        found = self._candidates(queries, leave_one_out, texts, candidates)
        for text, held, query, (top, similarity) in zip(texts, leave_one_out, queries, found, strict=True):
            matches = [(float(score), int(norm)) for norm, score in zip(top, similarity, strict=True)
                       if score >= index["thresholds"][norm]
                       and self.vetoed_by(query, int(norm), float(score), text if held else None) is None]
            if matches:
                score, norm = max(matches)
                results.append(NormMatch(self.norms[norm], score))
            else:
                results.append(None)
        return results


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.clip(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12, None)


def apply_norm(verdict: Verdict, match: NormMatch | None, with_rots: bool = True) -> Verdict:
    """The verdict after the norm (see the module docstring); the base verdict when nothing matched."""
    if match is None:
        return verdict
    norm = match.norm
    label = verdict.safety_label
    if norm.level == "allowed":
        if label is SafetyLabel.NEEDS_INTERVENTION:
            return verdict  # never lowered by a norm
        return Verdict(SafetyLabel.CASUAL, dict(verdict.scores), [], norm=norm.id)
    if norm.level == "intervention":
        label = SafetyLabel.NEEDS_INTERVENTION
    elif label.is_casual:
        label = SafetyLabel.NEEDS_CAUTION
    rots = [norm.rot, *(r for r in verdict.rots if r != norm.rot)] if with_rots else []
    return Verdict(label, dict(verdict.scores), rots, norm=norm.id, danger=verdict.danger)


class NormedDetector(SafetyDetector):
    """Any detector, with user norms applied on top (`load_detector(name, norms=[...])` builds one).

    `norms` are file paths and/or `Norm`s; they are read, checked and embedded on first use (a bad file is a
    `DataError` naming file, line and field), or up front with `load()`. `matcher`: None (the prototype matcher),
    a learned matcher's folder, or a matcher object (see `load_matcher`).
    """

    name = "normed"

    def __init__(self, base: SafetyDetector, norms: Sequence[str | Path | Norm], min_similarity: float | None = None,
                 cache_dir: str | Path | None = None, matcher=None):
        self.base = base
        self.norms = norms
        self.min_similarity = min_similarity
        self.cache_dir = cache_dir
        self.matcher = matcher

    @cached_property
    def bank(self) -> NormBank:
        return NormBank(load_norms(self.norms), min_similarity=self.min_similarity, cache_dir=self.cache_dir,
                        matcher=load_matcher(self.matcher))

    def load(self) -> NormedDetector:
        """Read, check and embed the norms now (a service does this before it says it is ready)."""
        self.bank._index  # noqa: B018 (builds the cached index)
        return self

    def warm_up(self) -> None:
        self.base.warm_up()
        self.load()

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        if not contexts:
            return []
        last = [check_context(c, f"contexts[{i}]")[-1] for i, c in enumerate(contexts)]
        verdicts = self.base.predict(contexts, with_rots)
        matches = self.bank.match(last)
        return [apply_norm(v, m, with_rots) for v, m in zip(verdicts, matches, strict=True)]


# --- calibrating thresholds on casual chat -------------------------------------------------------------------


def read_casual(path: str | Path | None = None) -> list[str]:
    """Casual chat turns to calibrate on: the packaged sample (`CASUAL_TURNS`) when `path` is None, else a JSON
    Lines file of {"text": …} or a text file of one turn per line; errors name the file, line and field."""
    path = Path(path) if path is not None else CASUAL_TURNS
    if not path.is_file():
        raise DataError.at(path, "no such casual turns file")
    turns, problems = [], []
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, value in read_jsonl(path):
            if isinstance(value, dict) and isinstance(value.get("text"), str) and value["text"].strip():
                turns.append(" ".join(value["text"].split()))
            else:
                problems.append(Problem(str(path), 'expected {"text": a non-empty string}', number, "text"))
    else:
        turns = [" ".join(line.split()) for line in read_text(path).splitlines() if line.strip()]
    if problems:
        raise DataError(problems)
    if not turns:
        raise DataError.at(path, "no casual turns in the file")
    return turns


@dataclass(frozen=True)
class CalibrationSettings:
    #: the share of casual turns each norm may match. Each norm on its own: a pack of N norms may match up to N
    #: times as many (`Calibration.any_norm_false_match` says how many it does)
    max_false_match: float = 0.01
    #: the lowest and highest threshold calibration may set (None: FLOOR_BELOW under and CEILING_ABOVE over the
    #: matcher's default)
    floor: float | None = None
    ceiling: float | None = None


@dataclass
class NormCalibration:
    id: str
    #: the calibrated threshold (written to the file), and the one the bank uses (a `min_similarity` wins)
    calibrated: float
    threshold: float
    source: str
    #: the share of casual turns the norm matches at `threshold`
    casual_false_match: float
    #: "floor" or "ceiling" where the bound, not the target, set the calibrated threshold
    bound: str | None = None


@dataclass
class Calibration:
    matcher: str
    turns: int
    max_false_match: float
    floor: float
    ceiling: float
    norms: list[NormCalibration] = field(default_factory=list)
    #: the share of casual turns that some norm of the bank matches, at the thresholds it uses
    any_norm_false_match: float = 0.0


def _allowed(max_false_match: float, turns: int) -> int:
    """How many of `turns` casual turns a norm may match (0.29 * 100 is 28.999… in floating point: 29)."""
    return math.floor(max_false_match * turns + 1e-9)


def fit_thresholds(top_scores: np.ndarray, turns: int, max_false_match: float, floor: float,
                   ceiling: float) -> tuple[np.ndarray, list[str | None]]:
    """Each norm's lowest threshold (in steps of 0.001) at which at most `max_false_match` of `turns` casual turns
    score at or above it, within [floor, ceiling], and which bound (if any) decided it.

    `top_scores[n]` holds norm n's highest casual scores, descending, at least int(max_false_match * turns) + 1 of
    them (-inf where fewer turns scored): it is all calibration needs, whatever matcher gave the scores."""
    allowed = _allowed(max_false_match, turns)
    first_out = top_scores[:, allowed].astype(np.float64)  # the highest score that must stay below the threshold
    fitted = (np.floor(first_out * 1000) + 1) / 1000
    fitted = np.where(fitted <= first_out, fitted + 0.001, fitted)  # float rounding
    thresholds = np.round(np.clip(fitted, floor, ceiling), 3)
    bounds = ["floor" if f < floor else "ceiling" if f > ceiling else None for f in fitted]
    return thresholds, bounds


def _casual_scores(bank: NormBank, vectors: np.ndarray, lowest: float, chunk: int = 512) -> Iterator[np.ndarray]:
    """Cosines of the casual turns' vectors to every prototype, a chunk of turns at a time, -inf where a
    counter-example vetoes the match (only scores of at least `lowest` are checked: lower ones never match)."""
    index = bank._index
    guarded = np.unique(index["counter_owner"])
    for start in range(0, len(vectors), chunk):
        queries = vectors[start : start + chunk]
        scores = queries @ index["prototypes"].T
        for norm in guarded:
            for row in np.flatnonzero(scores[:, norm] >= lowest):
                if bank.vetoed_by(queries[row], int(norm), float(scores[row, norm])) is not None:
                    scores[row, norm] = -np.inf
        yield scores


def calibrate(bank: NormBank, turns: Sequence[str] | None = None,
              settings: CalibrationSettings | None = None) -> Calibration:
    """Per-norm thresholds from casual chat turns (default: the packaged sample; `read_casual`): each norm gets
    the lowest threshold at which it matches at most `settings.max_false_match` of them, within the floor and
    ceiling. Reports what each norm then matches (at its own `min_similarity` where the file sets one, which wins)
    and what share of turns the whole bank matches. Reads only the matcher's scores, so it serves any matcher."""
    settings = settings or CalibrationSettings()
    if not 0.0 <= settings.max_false_match < 1.0:
        raise ValueError(f"max_false_match must be in [0, 1), got {settings.max_false_match}")
    default = bank.matcher.min_similarity
    floor = round(default - FLOOR_BELOW, 3) if settings.floor is None else settings.floor
    ceiling = round(default + CEILING_ABOVE, 3) if settings.ceiling is None else settings.ceiling
    if floor > ceiling:
        raise ValueError(f"the floor ({floor}) is above the ceiling ({ceiling})")
    turns = list(read_casual() if turns is None else turns)
    vectors = bank._embed(turns)
    explicit = [n.min_similarity for n in bank.norms if n.min_similarity is not None]
    lowest = min([floor, *explicit])
    keep = _allowed(settings.max_false_match, len(turns)) + 1
    top = np.full((len(bank.norms), keep), -np.inf, dtype=np.float32)
    for scores in _casual_scores(bank, vectors, lowest):
        both = np.concatenate([top, scores.T], axis=1)
        top = -np.sort(-both, axis=1)[:, :keep]
    calibrated, bounds = fit_thresholds(top, len(turns), settings.max_false_match, floor, ceiling)
    used = np.array([n.min_similarity if n.min_similarity is not None else t
                     for n, t in zip(bank.norms, calibrated, strict=True)], dtype=np.float32)
    matched = np.zeros(len(bank.norms), dtype=np.int64)
    any_norm = 0
    for scores in _casual_scores(bank, vectors, lowest):
        hits = scores >= used
        matched += hits.sum(0)
        any_norm += int(hits.any(1).sum())
    report = Calibration(bank.matcher.id, len(turns), settings.max_false_match, floor, ceiling,
                         any_norm_false_match=any_norm / len(turns))
    for norm, value, threshold, count, bound in zip(bank.norms, calibrated, used, matched, bounds, strict=True):
        report.norms.append(NormCalibration(norm.id, float(value), round(float(threshold), 3),
                                            "file" if norm.min_similarity is not None else "calibrated",
                                            int(count) / len(turns), bound))
    return report


def write_calibrated(source: str | Path, out: str | Path, calibration: Calibration) -> int:
    """Write the norms of `source` to `out` (YAML or JSON Lines, by its suffix) with each norm's calibrated
    threshold added to its `calibrated_similarity` under the matcher's id (thresholds for other matchers are
    kept); returns the number of norms written. Comments of a YAML `source` are not carried over."""
    import json

    import yaml

    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml", ".jsonl", ".json"):
        raise DataError.at(out, "a norms file is YAML (.yaml, .yml) or JSON Lines (.jsonl)")
    fitted = {c.id: c.calibrated for c in calibration.norms}
    rows = []
    for norm in read_norms(source):
        if norm.id not in fitted:
            raise DataError.at(source, f"norm {norm.id!r} was not calibrated", field="id")
        row: dict[str, Any] = {"id": norm.id, "rot": norm.rot, "level": norm.level, "examples": list(norm.examples)}
        if norm.counter_examples:
            row["counter_examples"] = list(norm.counter_examples)
        if norm.min_similarity is not None:
            row["min_similarity"] = norm.min_similarity
        row["calibrated_similarity"] = dict(norm.calibrated) | {calibration.matcher: fitted[norm.id]}
        rows.append(row)
    with atomic_write(out) as handle:
        if out.suffix.lower() in (".yaml", ".yml"):
            handle.write(f"# {Path(source).name}, calibrated by `prosocial norms calibrate` for matcher "
                         f"{calibration.matcher}: each norm matches at most {calibration.max_false_match:.1%} of "
                         f"{calibration.turns} casual turns\n# (thresholds within {calibration.floor:.2f}-"
                         f"{calibration.ceiling:.2f}); a norm's own min_similarity wins over calibrated_similarity.\n")
            yaml.safe_dump(rows, handle, sort_keys=False, allow_unicode=True, width=120)
        else:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return len(rows)


# --- testing a norms file, like unit tests for a policy ------------------------------------------------------


@dataclass(frozen=True)
class NormCase:
    """A situation and the norm that should decide it (None: no norm should)."""

    text: str
    norm: str | None
    origin: str = ""


@dataclass
class NormCaseResult:
    case: NormCase
    kind: str  # "example", "held-out example" or "case"
    got: str | None  # the norm that decided the verdict
    verdict: str
    #: the expected norm's similarity and threshold, and the counter-example that vetoed it (None: no norm expected)
    score: float | None = None
    threshold: float | None = None
    vetoed_by: str | None = None
    #: the norm that matched (before the verdict rules) and its similarity and threshold
    matched: str | None = None
    matched_score: float | None = None
    matched_threshold: float | None = None

    @property
    def passed(self) -> bool:
        return self.got == self.case.norm

    @property
    def why(self) -> str:
        """Why a check failed, in words a policy author can act on ("" when it passed)."""
        if self.passed:
            return ""
        if self.case.norm is None or self.score is None or self.threshold is None:
            return f"no norm expected, {self.got} matched ({self.matched_score:.3f} ≥ {self.matched_threshold:.3f})"
        if self.matched == self.case.norm:
            return f"matched, but the base detector's {self.verdict} stands (a norm never lowers needs intervention)"
        if self.score < self.threshold:
            missed = f"{self.score:.3f} < threshold {self.threshold:.3f}"
            return missed + (f"; {self.matched} matched instead ({self.matched_score:.3f})" if self.matched else "")
        if self.vetoed_by is not None:
            return f"closer to its counter-example {self.vetoed_by!r}"
        if self.matched is None:
            return "not among the norms the approximate search returned"
        return f"{self.matched} is closer ({self.matched_score:.3f} vs {self.score:.3f})"


def read_cases(path: str | Path) -> list[NormCase]:
    """Test situations, JSON Lines of {"text": …, "norm": id or null}; every problem named with file, line and
    field (all of them at once)."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, "no such cases file")
    cases, problems = [], []
    for number, value in read_jsonl(path):
        if not isinstance(value, dict):
            problems.append(Problem(str(path), 'expected an object {"text": …, "norm": an id or null}', number))
        elif unknown := sorted(set(value) - {"text", "norm"}):
            problems.append(Problem(str(path), "unknown field (known: norm, text)", number, unknown[0]))
        elif not isinstance(value.get("text"), str) or not value["text"].strip():
            problems.append(Problem(str(path), "the situation must be a non-empty string", number, "text"))
        elif value.get("norm") is not None and not isinstance(value["norm"], str):
            problems.append(Problem(str(path), "a norm id or null", number, "norm"))
        else:
            cases.append(NormCase(" ".join(value["text"].split()), value.get("norm"), f"{path}:{number}"))
    if problems:
        raise DataError(problems)
    if not cases:
        raise DataError.at(path, "no cases in the file")
    return cases


def _where(origin: str) -> tuple[str, int | None]:
    file, _, line = origin.rpartition(":")
    return (file, int(line)) if file and line.isdigit() else (origin or "(cases)", None)


def run_norm_tests(
    detector: NormedDetector, cases: Sequence[NormCase] = (), leave_one_out: bool = False
) -> list[NormCaseResult]:
    """Each norm's examples must be decided by their norm, and each case by the norm it names (or by none); each
    result says how close the expected norm came (score, threshold, vetoing counter-example) and what matched.

    With `leave_one_out`, each example is matched with itself taken out of its norm: does the norm generalise
    from its other examples? (Counter-examples veto themselves, so they are checked through cases.) Unknown norm
    ids in cases are errors naming file, line and field.
    """
    bank = detector.bank
    unknown = [c for c in cases if c.norm is not None and c.norm not in bank.positions]
    if unknown:
        raise DataError([Problem(_where(c.origin)[0], f"no norm {c.norm!r} in the norms given", _where(c.origin)[1],
                                 "norm") for c in unknown])
    kind = "held-out example" if leave_one_out else "example"
    all_cases = [NormCase(t, n.id, n.origin) for n in bank.norms for t in n.examples] + list(cases)
    kinds = [kind] * (len(all_cases) - len(cases)) + ["case"] * len(cases)
    texts = [c.text for c in all_cases]
    held_out = [k == "held-out example" for k in kinds]
    verdicts = detector.base.predict([[t] for t in texts], with_rots=False)
    queries = bank.encode(texts)
    matches = bank.match(texts, leave_one_out=held_out, queries=queries)
    results = []
    for case, k, held, query, verdict, match in zip(all_cases, kinds, held_out, queries, verdicts, matches,
                                                    strict=True):
        final = apply_norm(verdict, match, with_rots=False)
        result = NormCaseResult(case, k, final.norm, final.coarse.value)
        if case.norm is not None:
            position = bank.positions[case.norm]
            result.score = bank.similarity(query, position, case.text if held else None)
            result.threshold = bank.threshold(bank.norms[position])[0]
            if result.score >= result.threshold:
                result.vetoed_by = bank.vetoed_by(query, position, result.score, case.text if held else None)
        if match is not None:
            result.matched, result.matched_score = match.norm.id, match.similarity
            result.matched_threshold = bank.threshold(match.norm)[0]
        results.append(result)
    return results


@dataclass
class NearMiss:
    """A check that went wrong for a norm (or a casual turn it matched), with how close it was."""

    text: str
    origin: str
    score: float
    threshold: float
    why: str


@dataclass
class NormStats:
    """How one norm did on the checks: precision and recall over the checks it decided or should have, and the
    near misses, closest first: its own checks it did not decide, and others' it decided (false matches)."""

    id: str
    level: str
    threshold: float
    threshold_from: str  # "file", "calibrated" or "default"
    expected: int  # checks naming this norm
    decided: int  # checks this norm decided
    correct: int
    missed: list[NearMiss] = field(default_factory=list)
    false_matches: list[NearMiss] = field(default_factory=list)
    #: with casual turns: how many it matched, of how many, and the closest
    casual_matched: int | None = None
    casual_turns: int | None = None
    casual_examples: list[NearMiss] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.correct / self.decided if self.decided else None

    @property
    def recall(self) -> float | None:
        return self.correct / self.expected if self.expected else None

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self) | {"precision": self.precision, "recall": self.recall}
        for name in ("missed", "false_matches", "casual_examples"):
            out[f"{name}_total"] = len(out[name])
            out[name] = out[name][:top]
        return out


def norm_report(bank: NormBank, results: Sequence[NormCaseResult],
                casual: Sequence[str] | None = None) -> list[NormStats]:
    """Per-norm precision, recall and near misses from `run_norm_tests`' results; with `casual` turns, also how
    many of them each norm matches (a norm that fires on everyday chat needs a counter-example or a higher
    threshold; `calibrate` sets one)."""
    stats = {}
    for norm in bank.norms:
        threshold, source = bank.threshold(norm)
        stats[norm.id] = NormStats(norm.id, norm.level, threshold, source, 0, 0, 0)
    for r in results:
        if r.case.norm is not None:
            own = stats[r.case.norm]
            own.expected += 1
            own.correct += r.passed
            if not r.passed:
                own.missed.append(NearMiss(r.case.text, r.case.origin, r.score, r.threshold, r.why))
        if r.got is not None:
            decided = stats[r.got]
            decided.decided += 1
            if not r.passed:
                expected = f"expected {r.case.norm}" if r.case.norm else "expected no norm"
                decided.false_matches.append(NearMiss(r.case.text, r.case.origin, r.matched_score,
                                                      r.matched_threshold, expected))
    if casual is not None:
        for s in stats.values():
            s.casual_matched, s.casual_turns = 0, len(casual)
        casual = list(casual)  # embedded through the bank's cache: the packaged turns are the same every run
        for text, match in zip(casual, bank.match(casual, queries=bank._embed(casual)), strict=True):
            if match is not None:
                s = stats[match.norm.id]
                s.casual_matched += 1
                s.casual_examples.append(NearMiss(text, "casual turn", match.similarity, s.threshold,
                                                  "a casual chat turn"))
    for s in stats.values():
        for misses in (s.missed, s.false_matches, s.casual_examples):
            misses.sort(key=lambda m: -m.score)
    return list(stats.values())
