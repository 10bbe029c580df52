"""Readers for the external benchmarks in the shared data folder: each dataset → `Example`s.

Every adapter yields `Example(context=[…oldest … judged utterance], safety_label, rots, source, id, meta)`,
with the dataset's own labels kept in `meta`, so evaluations can map differently later without re-reading.
The label rules live in `prosocial.data.mapping`; this module only reads, validates and splits.

Splits ("train" / "dev") never cut a dialogue, thread or post in two:

* ToxiChat, DiaSafety, ConvAbuse: their own train and dev/val/valid files. DiaSafety and ConvAbuse share
  material across their files (432 DiaSafety contexts occur in both; 156 ConvAbuse conversations have
  turns in both), so their train split drops those rows; dev stays the published file, comparable to
  published numbers.
* ProsocialDialog partial rows: train.json is train, valid.json is dev (the published split).
* ETHICS (cm_test only), SBIC (dev part only), the casual corpora (valid only) and BYU: `mapping.hash_split`
  of the scenario text, the post text, the whole dialogue, the conversation id.

Bad rows raise `DataError` naming the file, line and field; reading is lazy, so `limit` stops early.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from prosocial.data import mapping
from prosocial.data.labels import SafetyLabel
from prosocial.data.schema import Example
from prosocial.errors import DataError

ENV_VAR = "PROSOCIAL_SHARED_DATA"


def default_root() -> Path:
    """$PROSOCIAL_SHARED_DATA, else `<repo>/../shared/data` for the repo holding this file or the cwd.

    Both starting points are tried because an installed (non-editable) package lives outside the repo; in an
    editable install both usually lead to the same repo, so each candidate is tried (and named) once.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    tried: list[Path] = []
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for parent in (start, *start.parents):
            if (parent / "pyproject.toml").is_file():
                candidate = parent.parent / "shared" / "data"
                if candidate.is_dir():
                    return candidate
                if candidate not in tried:
                    tried.append(candidate)
    where = ", ".join(str(p) for p in tried) if tried else "no repo found above this package or the cwd"
    raise FileNotFoundError(
        f"the shared data folder is missing (looked for {where}); set {ENV_VAR} to the folder that holds "
        "toxichat/, sbic/, … (see the README's Install section)"
    )


class Adapter(ABC):
    """One dataset folder under the shared data root; `name` is the registry key and `Example.source`."""

    name: str
    folder: str

    @abstractmethod
    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        """Lazily yield the split's examples from `folder` (already checked to exist)."""


def load_benchmark(name: str, split: str = "dev", root: Path | None = None, limit: int | None = None) -> list[Example]:
    """The first `limit` (all when None) examples of benchmark `name`'s `split` ("train" or "dev")."""
    adapter = BENCHMARKS.get(name)
    if adapter is None:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    if split not in mapping.SPLITS:
        raise ValueError(f"unknown split {split!r} for {name!r}; expected one of {list(mapping.SPLITS)}")
    folder = Path(root if root is not None else default_root()) / adapter.folder
    if not folder.is_dir():
        raise FileNotFoundError(f"benchmark {name!r}: data folder {folder} does not exist (set {ENV_VAR})")
    return list(islice(adapter.examples(folder, split), limit))


# --- reading helpers ---------------------------------------------------------------------------------------


def _file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {path}")
    return path


def _clean(text: str) -> str:
    """Reddit and Twitter sources escape HTML (`&lt;3`, `&#128557;`); decode once and trim."""
    return html.unescape(text).strip()


def _get(record: Mapping[str, Any], field: str, path: Path, line: int | None, where: str = "") -> Any:
    if not isinstance(record, Mapping):
        raise DataError.at(path, f"expected an object, got {type(record).__name__}", line, where or None)
    value = record.get(field)
    if value is None:
        raise DataError.at(path, "missing field", line, where + field)
    return value


def _text(record: Mapping[str, Any], field: str, path: Path, line: int | None, where: str = "") -> str:
    value = _get(record, field, path, line, where)
    if not isinstance(value, str) or not _clean(value):
        raise DataError.at(path, f"expected non-empty text, got {value!r}", line, where + field)
    return _clean(value)


def _optional_text(record: Mapping[str, Any], field: str, path: Path, line: int | None) -> str | None:
    """A present but possibly empty text (DiaSafety has blank responses): None when blank."""
    value = _get(record, field, path, line)
    if not isinstance(value, str):
        raise DataError.at(path, f"expected text, got {value!r}", line, field)
    return _clean(value) or None


def _lookup(table: Mapping[Any, SafetyLabel], value: Any, path: Path, line: int | None, field: str) -> SafetyLabel:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise DataError.at(path, f"unknown value {value!r}; expected one of {list(table)}", line, field) from None


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, row); checks the header and each row's width."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError.at(path, f"header lacks column(s) {missing}", 1, missing[0])
        start = reader.line_num + 1
        for row in reader:
            if None in row or None in row.values():
                raise DataError.at(path, f"row width differs from the header's {len(header)} columns", start)
            yield start, row
            start = reader.line_num + 1


_WHITESPACE = re.compile(r"\s*")


def _json_entries(path: Path) -> Iterator[tuple[int, Any, Any]]:
    """(line, key, value) per entry of a top-level JSON array (key = index) or object, decoded one by one.

    Incremental decoding gives each entry's line for error messages and lets `limit` stop early on the
    40 MB BYU file without building every conversation.
    """
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    newlines, counted = 0, 0

    def line_at(pos: int) -> int:
        nonlocal newlines, counted
        newlines += text.count("\n", counted, pos)
        counted = pos
        return newlines + 1

    def skip(pos: int) -> int:
        return _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]

    pos = skip(0)
    if text[pos : pos + 1] not in ("[", "{"):
        raise DataError.at(path, "expected a JSON array or object", line_at(pos))
    close = "}" if text[pos] == "{" else "]"
    pos = skip(pos + 1)
    index = 0
    while text[pos : pos + 1] != close:
        try:
            key: Any = index
            if close == "}":
                key, pos = decoder.raw_decode(text, pos)
                pos = skip(pos)
                if not isinstance(key, str) or text[pos : pos + 1] != ":":
                    raise DataError.at(path, "expected a string key and ':'", line_at(pos))
                pos = skip(pos + 1)
            line = line_at(pos)
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise DataError.at(path, f"invalid JSON: {err.msg}", err.lineno) from None
        yield line, key, value
        index += 1
        pos = skip(pos)
        if text[pos : pos + 1] == ",":
            pos = skip(pos + 1)
        elif text[pos : pos + 1] != close:
            raise DataError.at(path, f"expected ',' or {close!r}", line_at(pos))


# --- adapters ----------------------------------------------------------------------------------------------


class ToxiChat(Adapter):
    """One example per Reddit comment, judged with the comments before it; chatbot replies stay in meta.

    `OC_S_*.csv` is not read: it is the same threads flattened for the authors' classifiers (3,211 / 708
    comments with the same 929 / 204 offensive ones), so reading it too would duplicate every comment.
    """

    name = "toxichat"
    folder = "toxichat"
    files = {mapping.TRAIN: "train.jsonl", mapping.DEV: "dev.jsonl"}

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.files[split])
        with path.open(encoding="utf-8") as f:
            for line, raw in enumerate(f, 1):
                if raw.strip():
                    yield from self._thread(path, line, raw, split)

    def _thread(self, path: Path, line: int, raw: str, split: str) -> Iterator[Example]:
        try:
            thread = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataError.at(path, f"invalid JSON: {err.msg}", line) from None
        comments = _get(thread, "reddit_thread", path, line)
        if not isinstance(comments, list) or not comments:
            raise DataError.at(path, "expected a non-empty list of comments", line, "reddit_thread")
        extras = {k: v for k, v in thread.items() if k != "reddit_thread"}
        history: list[str] = []
        for i, comment in enumerate(comments):
            where = f"reddit_thread[{i}]."
            history.append(_text(comment, "text", path, line, where))
            offense = _get(comment, "offense_label", path, line, where)
            meta = {k: v for k, v in comment.items() if k != "text"} | {"thread_line": line}
            if i == len(comments) - 1:
                meta |= extras
            yield Example(
                context=list(history),
                safety_label=_lookup(mapping.TOXICHAT_LABELS, offense, path, line, where + "offense_label"),
                source=self.name,
                id=f"{self.name}/{split}/{line}/{comment.get('turn_id', i + 1)}",
                meta=meta,
            )


class DiaSafety(Adapter):
    """Single-turn contexts judged by their `category`; the response and its Safe/Unsafe `label` are kept.

    Train drops rows whose context also occurs in val (432 contexts), so training never sees a dev context.
    """

    name = "diasafety"
    folder = "diasafety"
    files = {mapping.TRAIN: "train.json", mapping.DEV: "val.json"}

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.files[split])
        held_out = set() if split == mapping.DEV else self._contexts(_file(folder, self.files[mapping.DEV]))
        stem = path.stem
        for line, index, row in _json_entries(path):
            context = _text(row, "context", path, line)
            if context in held_out:
                continue
            category = _get(row, "category", path, line)
            _lookup(mapping.DIASAFETY_LABELS, category, path, line, "category")  # an unknown category is an error
            yield Example(
                context=[context],
                response=_optional_text(row, "response", path, line),
                safety_label=mapping.diasafety_label(category, context),
                source=self.name,
                id=f"{self.name}/{stem}/{index}",
                meta={"category": category, "response_label": _get(row, "label", path, line)},
            )

    @staticmethod
    def _contexts(path: Path) -> set[str]:
        return {_text(row, "context", path, line) for line, _, row in _json_entries(path)}


_ANNOTATOR_COLUMN = re.compile(r"^(Annotator\d+)_(.+)$")
_SEVERITY_FIELD = "is_abuse."


class ConvAbuse(Adapter):
    """User turns to conversational agents; context = prev_agent, prev_user, agent, user (empties dropped).

    An annotator's cell may hold several ratings ("0, 1": they rated a duplicate of the turn twice); each
    annotator counts once, with their most severe rating. Train drops the 156 conversations that also have
    turns in valid.
    """

    name = "convabuse"
    folder = "convabuse"
    files = {mapping.TRAIN: "ConvAbuseEMNLPtrain.csv", mapping.DEV: "ConvAbuseEMNLPvalid.csv"}
    turns = ("prev_agent", "prev_user", "agent", "user")
    required = ("example_id", "conv_id", *turns)

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.files[split])
        held_out: set[str] = set()
        if split == mapping.TRAIN:
            dev = _file(folder, self.files[mapping.DEV])
            held_out = {row["conv_id"] for _, row in _csv_rows(dev, self.required)}
        for line, row in _csv_rows(path, self.required):
            if row["conv_id"] in held_out:
                continue
            user = _text(row, "user", path, line)
            context = [_clean(row[t]) for t in self.turns[:-1] if _clean(row[t])] + [user]
            annotators = self._annotators(row)
            severities = {a: self._severity(fields, path, line, a) for a, fields in annotators.items()}
            if not severities:
                raise DataError.at(path, "no annotator rated this turn", line, "AnnotatorN_is_abuse.K")
            example_id = row["example_id"].removesuffix(".0")
            yield Example(
                context=context,
                safety_label=mapping.convabuse_label(severities.values()),
                source=self.name,
                id=f"{self.name}/{split}/{example_id}",
                meta={
                    "example_id": example_id,
                    "conv_id": row["conv_id"].removesuffix(".0"),
                    "bot": row.get("bot", ""),
                    "severity": severities,
                    "annotators": annotators,
                },
            )

    @staticmethod
    def _annotators(row: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """The non-empty annotator columns, grouped: {"Annotator2": {"is_abuse.-1": "1", "sexist": "1"}}."""
        out: dict[str, dict[str, str]] = {}
        for column, value in row.items():
            match = _ANNOTATOR_COLUMN.match(column)
            if match and value.strip():
                out.setdefault(match[1], {})[match[2]] = value.strip()
        return {a: fields for a, fields in out.items() if any(k.startswith(_SEVERITY_FIELD) for k in fields)}

    @staticmethod
    def _severity(fields: Mapping[str, str], path: Path, line: int, annotator: str) -> int:
        """The most severe K among the annotator's ratings; each rating must tick exactly one K."""
        columns = {k: f"{_SEVERITY_FIELD}{k}" for k in mapping.CONVABUSE_SEVERITIES}
        try:
            ticks = {k: [int(v) for v in fields.get(c, "").split(",")] for k, c in columns.items()}
        except ValueError:
            raise DataError.at(path, "expected 0/1 ticks", line, f"{annotator}_{_SEVERITY_FIELD}K") from None
        ratings = {len(v) for v in ticks.values()}
        if len(ratings) != 1:
            raise DataError.at(path, "severity columns hold different numbers of ratings", line, annotator)
        chosen = []
        for i in range(ratings.pop()):
            picked = [k for k, v in ticks.items() if v[i] == 1]
            if len(picked) != 1 or any(v[i] not in (0, 1) for v in ticks.values()):
                raise DataError.at(path, f"rating {i + 1} must tick exactly one severity", line, annotator)
            chosen.append(picked[0])
        return min(chosen)


class EthicsCommonsense(Adapter):
    """First-person scenarios from `cm_test.csv`, split by scenario text.

    `cm_ambig.csv` is skipped: it has no header (its first line is a scenario) and no label column; its
    scenarios are ambiguous by construction, so there is no safety label to map.
    """

    name = "ethics_commonsense"
    folder = "ethics_commonsense"
    file = "cm_test.csv"

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.file)
        for index, (line, row) in enumerate(_csv_rows(path, ("label", "input"))):
            scenario = _text(row, "input", path, line)
            if mapping.hash_split(scenario) != split:
                continue
            try:
                label = int(row["label"])
            except ValueError:
                raise DataError.at(path, f"expected 0 or 1, got {row['label']!r}", line, "label") from None
            yield Example(
                context=[scenario],
                safety_label=_lookup(mapping.ETHICS_LABELS, label, path, line, "label"),
                source=self.name,
                id=f"{self.name}/{path.stem}/{index}",
                meta={"label": label} | {k: v for k, v in row.items() if k not in ("label", "input")},
            )


class Sbic(Adapter):
    """Posts (one row per annotator in the file) grouped by text, split by post, with derived RoTs.

    A blank `offensiveYN` (187 rows) is an unanswered question, not a vote; a post nobody answered for
    would get no label (None) rather than a guessed one.
    """

    name = "sbic"
    folder = "sbic"
    file = "SBFv2.dev.part.csv"
    required = ("post", "offensiveYN", "targetMinority", "targetStereotype")

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.file)
        posts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, row in _csv_rows(path, self.required):
            posts.setdefault(_text(row, "post", path, line), []).append((line, row))
        for index, (post, rows) in enumerate(posts.items()):
            if mapping.hash_split(post) != split:
                continue
            votes = [v for v in (self._vote(row, path, line) for line, row in rows) if v is not None]
            yield Example(
                context=[post],
                rots=mapping.dedupe(
                    mapping.stereotype_to_rot(row["targetStereotype"], row["targetMinority"]) for _, row in rows
                ),
                safety_label=mapping.sbic_label(votes) if votes else None,
                source=self.name,
                id=f"{self.name}/{index}",
                meta={
                    "offensive_votes": votes,
                    "annotations": [{k: v for k, v in row.items() if k != "post"} for _, row in rows],
                },
            )

    @staticmethod
    def _vote(row: Mapping[str, str], path: Path, line: int) -> float | None:
        raw = row["offensiveYN"].strip()
        if not raw:
            return None
        try:
            vote = float(raw)
        except ValueError:
            vote = -1.0
        if vote not in mapping.SBIC_OFFENSIVE_VALUES:
            raise DataError.at(path, f"expected 0, 0.5 or 1, got {raw!r}", line, "offensiveYN")
        return vote


class ProsocialDialogPartial(Adapter):
    """The partial ProsocialDialog rows: one example per (context, crowdworker reply), labelled from the reply.

    train.json is the train split and valid.json the dev split (the published split). Labels are silver, read off
    the reply by `mapping.prosocial_reply_label` (None where the reply does not tell). A label judges the dialogue
    so far, and later turns ("It's harmless, I just wanted to entertain my coworkers.") are problematic only with
    their history, so the previous row (its context and reply) comes first in the context. Rows are consecutive
    turns with unmarked boundaries: for the rows that open a dialogue (about one in three), that history is the
    end of the previous dialogue.
    """

    name = "prosocial_dialog"
    folder = "prosocial_dialog_partial"
    files = {mapping.TRAIN: "train.json", mapping.DEV: "valid.json"}

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.files[split])
        previous: list[str] = []
        for line, index, record in _json_entries(path):
            context = _text(record, "context", path, line)
            response = _text(record, "response", path, line)
            yield Example(
                context=[*previous, context],
                response=response,
                safety_label=mapping.prosocial_reply_label(response),
                source=self.name,
                id=f"{self.name}/{path.stem}/{index}",
                meta={"row": index},
            )
            previous = [context, response]


def _dialogue_examples(name: str, utterances: list[str], dialogue_id: str, meta: dict[str, Any]) -> Iterator[Example]:
    """Every prefix ending in an opener's utterance (positions 0, 2, …), with the reply as the response.

    The opener plays the user, as Speaker 1 does in ProsocialDialog.
    """
    for i in range(0, len(utterances), 2):
        yield Example(
            context=utterances[: i + 1],
            response=utterances[i + 1] if i + 1 < len(utterances) else None,
            safety_label=SafetyLabel.CASUAL,
            source=name,
            id=f"{name}/{dialogue_id}/{i}",
            meta=meta | {"turn": i},
        )


class CasualDialogues(Adapter):
    """A `valid.json` list of {"dialogue": [utterances], …}; split by the whole dialogue's text."""

    file = "valid.json"

    def __init__(self, name: str):
        self.name = name
        self.folder = f"casual/{name}"

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.file)
        for line, index, record in _json_entries(path):
            dialogue = _get(record, "dialogue", path, line)
            if not isinstance(dialogue, list) or not dialogue:
                raise DataError.at(path, "expected a non-empty list of utterances", line, "dialogue")
            utterances = [_text({"u": u}, "u", path, line, f"dialogue[{i}]") for i, u in enumerate(dialogue)]
            if mapping.hash_split("\n".join(utterances)) != split:
                continue
            extras = {k: v for k, v in record.items() if k != "dialogue"}
            yield from _dialogue_examples(self.name, utterances, f"valid/{index}", {"dialogue": index} | extras)


class ByuChitChat(Adapter):
    """BYU Chit-Chat: {conversation id: {"messages": [[messages of one sender's turn], …], …}}.

    A turn's messages are joined into one utterance; the split is by conversation id. A conversation ends
    before its first all-blank turn (12 of 7,168 have one): dropping just that turn would put two turns of
    the same speaker side by side.
    """

    name = "byu_chitchat"
    folder = "casual/byu_chitchat"
    file = "dataset.json"

    def examples(self, folder: Path, split: str) -> Iterator[Example]:
        path = _file(folder, self.file)
        for line, conversation, record in _json_entries(path):
            if mapping.hash_split(conversation) != split:
                continue
            turns = _get(record, "messages", path, line)
            if not isinstance(turns, list):
                raise DataError.at(path, "expected a list of turns", line, f"{conversation}.messages")
            utterances = [self._turn(turn, path, line, f"{conversation}.messages[{i}]") for i, turn in enumerate(turns)]
            if "" in utterances:
                utterances = utterances[: utterances.index("")]
            extras = {k: v for k, v in record.items() if k != "messages"}
            yield from _dialogue_examples(self.name, utterances, conversation, {"conversation": conversation} | extras)

    @staticmethod
    def _turn(turn: Any, path: Path, line: int, where: str) -> str:
        """The turn's non-blank messages joined; "" when all are blank."""
        if not isinstance(turn, list) or not turn:
            raise DataError.at(path, "expected a non-empty list of messages", line, where)
        texts = [_get(m, "text", path, line, f"{where}[{j}].") for j, m in enumerate(turn)]
        if not all(isinstance(t, str) for t in texts):
            raise DataError.at(path, f"expected message texts, got {texts!r}", line, where)
        return " ".join(_clean(t) for t in texts if _clean(t))


CASUAL_CORPORA: tuple[str, ...] = ("blended_skill_talk", "dailydialog", "empathetic", "persona_chat", "topical_chat")

BENCHMARKS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        ToxiChat(),
        DiaSafety(),
        ConvAbuse(),
        EthicsCommonsense(),
        Sbic(),
        ProsocialDialogPartial(),
        *(CasualDialogues(name) for name in CASUAL_CORPORA),
        ByuChitChat(),
    )
}
