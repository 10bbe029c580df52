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

Files are YAML (a list of norms, or `norms:` holding one) or JSON Lines (one norm per line); errors name the
file, line and field. A context matches a norm when its last utterance (embedded with the packaged MiniLM, as
the RoT bank does) is at least `min_similarity` similar (cosine) to the norm's prototype (the mean of its RoT's
and its examples' embeddings), and less similar to each of its counter-examples than to the prototype.
`DEFAULT_MIN_SIMILARITY` was fitted by `benchmarks/bench_norms.py` (see the README's norms section).

What a match does (`NormedDetector`): *intervention* makes the verdict needs intervention; *caution* makes a
casual verdict needs caution; both put the norm's RoT first. *allowed* lowers a needs-caution verdict to casual
(a situation this deployment does not want flagged). A needs-intervention verdict of the base detector is never
lowered. When several norms match, the most similar decides (nearest prototype; on the example packs'
leave-one-out it routes slightly better than letting intervention beat caution beat allowed, 48 vs 49 misses of
76). The verdict names the norm that decided it; its scores stay the base detector's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.context import check_context
from prosocial.data.labels import SafetyLabel
from prosocial.errors import DataError, Problem
from prosocial.io import atomic_write, read_jsonl, read_text

LEVELS = ("intervention", "caution", "allowed")
FIELDS = {"id", "rot", "level", "examples", "counter_examples", "min_similarity"}
#: cosine above which a last utterance matches a norm's example (see the module docstring)
DEFAULT_MIN_SIMILARITY = 0.46
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
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or not -1.0 <= threshold <= 1.0):
        return "min_similarity must be a number from -1 to 1", "min_similarity"
    return Norm(identifier, " ".join(rot.split()), level, examples, counters,
                None if threshold is None else float(threshold), origin)


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


# --- matching ------------------------------------------------------------------------------------------------


class NormBank:
    """Norms as prototypes: each norm is the normalised mean of its examples' and its RoT's embeddings (chosen
    by leave-one-out recall over the example packs' own examples, see the README), matched by cosine: a matrix
    product, or an HNSW index for large banks; embeddings cached on disk by content."""

    def __init__(self, norms: Sequence[Norm], embedder=None, min_similarity: float = DEFAULT_MIN_SIMILARITY,
                 cache_dir: str | Path | None = None, ann_from: int = ANN_FROM):
        self.norms = list(norms)
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.cache_dir = cache_dir
        self.ann_from = ann_from

    @cached_property
    def _index(self) -> dict[str, np.ndarray]:
        """Unit prototypes and the length of each unnormalised one (to take an example out again), thresholds,
        and the counter-example embeddings with the norm each belongs to (in norm order)."""
        examples = [(i, t) for i, n in enumerate(self.norms) for t in (n.rot, *n.examples)]
        counters = [(i, t) for i, n in enumerate(self.norms) for t in n.counter_examples]
        vectors = self._embed([t for _, t in examples + counters])
        sums = np.zeros((len(self.norms), vectors.shape[1]), dtype=np.float32)
        np.add.at(sums, np.array([i for i, _ in examples], dtype=np.int64), vectors[: len(examples)])
        lengths = np.linalg.norm(sums, axis=1)
        return {
            "prototypes": sums / np.clip(lengths[:, None], 1e-12, None),
            "lengths": lengths,
            "thresholds": np.array([self.min_similarity if n.min_similarity is None else n.min_similarity
                                    for n in self.norms], dtype=np.float32),
            "counters": vectors[len(examples):],
            "counter_owner": np.array([i for i, _ in counters], dtype=np.int64),
        }

    @cached_property
    def _owners(self) -> dict[str, list[int]]:
        """Which norms each example text belongs to (for leave-one-out)."""
        owners: dict[str, list[int]] = {}
        for i, norm in enumerate(self.norms):
            for text in norm.examples:
                owners.setdefault(text, []).append(i)
        return owners

    @cached_property
    def _embedder(self):
        from prosocial.canary.rotbank import Embedder

        return self.embedder or Embedder()

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of a bank's texts; a bank of thousands is cached by content (under `cache_dir`, default
        the prosocial cache folder), so a restart does not spend minutes embedding it again."""
        if len(texts) < CACHE_FROM and self.cache_dir is None:
            return self._embedder.encode(texts)
        from prosocial.lm.hf import cache_root

        key = hashlib.sha256("\n".join([str(self._embedder.model_dir), *texts]).encode()).hexdigest()[:32]
        cached = (Path(self.cache_dir) if self.cache_dir else cache_root() / "norms") / f"norms-{key}.npy"
        if cached.is_file():
            return np.load(cached)
        vectors = self._embedder.encode(texts)
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
                    row[norm] = unit(index["prototypes"][norm] * index["lengths"][norm] - query) @ query
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            found.append((top, row[top]))
        return found

    def match(self, texts: Sequence[str], leave_one_out: Sequence[bool] | None = None,
              candidates: int = 32) -> list[NormMatch | None]:
        """The deciding norm for each text, or None. Where `leave_one_out[i]`, text i is an example matched
        with itself taken out of the prototypes of the norms that hold it (testing whether a norm generalises
        from its other examples)."""
        index = self._index
        leave_one_out = list(leave_one_out) if leave_one_out else [False] * len(texts)
        queries = self._embedder.encode(list(texts))
        results: list[NormMatch | None] = []
        found = self._candidates(queries, leave_one_out, texts, candidates)
        for query, (top, similarity) in zip(queries, found, strict=True):
            matches = []
            for norm, score in zip(top, similarity, strict=True):
                if score < index["thresholds"][norm]:
                    continue
                # counter-examples are stored in norm order, so a norm's are one slice
                first, last = np.searchsorted(index["counter_owner"], [norm, norm + 1])
                if last > first and (index["counters"][first:last] @ query).max() >= score:
                    continue  # closer to what the norm says it does not cover
                matches.append((float(score), int(norm)))
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
    `DataError` naming file, line and field), or up front with `load()`.
    """

    name = "normed"

    def __init__(self, base: SafetyDetector, norms: Sequence[str | Path | Norm],
                 min_similarity: float = DEFAULT_MIN_SIMILARITY, cache_dir: str | Path | None = None):
        self.base = base
        self.norms = norms
        self.min_similarity = min_similarity
        self.cache_dir = cache_dir

    @cached_property
    def bank(self) -> NormBank:
        return NormBank(load_norms(self.norms), min_similarity=self.min_similarity, cache_dir=self.cache_dir)

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
    got: str | None
    verdict: str

    @property
    def passed(self) -> bool:
        return self.got == self.case.norm


def read_cases(path: str | Path) -> list[NormCase]:
    """Test situations, JSON Lines of {"text": …, "norm": id or null}, errors naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, "no such cases file")
    cases, problems = [], []
    for number, value in read_jsonl(path):
        if not isinstance(value, dict) or not isinstance(value.get("text"), str) or not value["text"].strip():
            problems.append(Problem(str(path), "expected {\"text\": a non-empty string, \"norm\": an id or null}",
                                    number, "text"))
        elif value.get("norm") is not None and not isinstance(value["norm"], str):
            problems.append(Problem(str(path), "a norm id or null", number, "norm"))
        else:
            cases.append(NormCase(" ".join(value["text"].split()), value.get("norm"), f"{path}:{number}"))
    if problems:
        raise DataError(problems)
    return cases


def run_norm_tests(
    detector: NormedDetector, cases: Sequence[NormCase] = (), leave_one_out: bool = False
) -> list[NormCaseResult]:
    """Each norm's examples must be decided by their norm, and each case by the norm it names (or by none).

    With `leave_one_out`, each example is matched with itself taken out of its norm: does the norm generalise
    from its other examples? (Counter-examples veto themselves, so they are checked through cases.) An unknown
    norm id in a case is an error.
    """
    bank = detector.bank
    known = {n.id for n in bank.norms}
    unknown = [c for c in cases if c.norm is not None and c.norm not in known]
    if unknown:
        file, _, line = unknown[0].origin.rpartition(":")
        raise DataError.at(file or "(cases)", f"no norm {unknown[0].norm!r} in the norms given",
                           line=int(line) if line.isdigit() else None, field="norm")
    kind = "held-out example" if leave_one_out else "example"
    all_cases = [NormCase(t, n.id, n.origin) for n in bank.norms for t in n.examples] + list(cases)
    kinds = [kind] * (len(all_cases) - len(cases)) + ["case"] * len(cases)
    texts = [c.text for c in all_cases]
    verdicts = detector.base.predict([[t] for t in texts], with_rots=False)
    matches = bank.match(texts, leave_one_out=[k == "held-out example" for k in kinds])
    results = []
    for case, k, verdict, match in zip(all_cases, kinds, verdicts, matches, strict=True):
        final = apply_norm(verdict, match, with_rots=False)
        results.append(NormCaseResult(case, k, final.norm, final.coarse.value))
    return results
