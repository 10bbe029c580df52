"""Readers and writers for the published ProsocialDialog formats, with a lossless round trip between them.

- ``hf``: the Hugging Face row format, one row per turn (JSON rows or columns, JSON Lines, Parquet, CSV, a
  local ``datasets`` directory, or ``allenai/prosocial-dialog`` on the Hub for users who are online);
- ``direct``: the direct-download format, a list of dialogues, each a list of turns with ``text``/``labels``;
- ``dialogstudio``: DialogStudio's converted form (read only);
- ``partial``: context/response-only rows (``prosocial_dialog_partial``), one single-turn dialogue each.

Every reader checks every field and collects all problems before raising, so `validate` can list them all.
"""

from __future__ import annotations

import ast
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prosocial.data.labels import SafetyLabel, parse_vote
from prosocial.data.schema import Dialogue, Turn
from prosocial.errors import DataError, Problem
from prosocial.io import atomic_write, first_json_character, parse_json, read_json_array, read_jsonl, read_text

HF_FIELDS = (
    "context",
    "response",
    "rots",
    "safety_label",
    "safety_annotations",
    "safety_annotation_reasons",
    "source",
    "etc",
    "dialogue_id",
    "response_id",
    "episode_done",
)
_LIST_FIELDS = ("rots", "safety_annotations", "safety_annotation_reasons")
HUB_ID = "allenai/prosocial-dialog"


# --------------------------------------------------------------------------- field checking


class _Checker:
    """Reads typed fields out of a raw record, recording a `Problem` (file, line, field) for each bad one."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems

    def fail(self, line: int | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.path, message, line, field))

    def text(self, record: dict, field: str, line: int | None, default: str | None = None) -> str:
        value = record.get(field, default)
        if value is None:
            if field in record:
                return ""
            self.fail(line, field, "missing field")
            return ""
        if not isinstance(value, str):
            self.fail(line, field, f"expected a string, got {type(value).__name__}")
            return str(value)
        return value

    def strings(self, record: dict, field: str, line: int | None) -> list[str]:
        value = record.get(field, [])
        if value is None:
            return []
        if isinstance(value, str):  # CSV cells hold JSON (ours) or Python reprs (pandas' to_csv)
            value = _decode_list(value)
        if hasattr(value, "tolist"):  # numpy arrays from Parquet
            value = value.tolist()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(line, field, f"expected a list of strings, got {value!r:.80}")
            return []
        return value

    def votes(self, record: dict, field: str, line: int | None) -> list[str]:
        votes = self.strings(record, field, line)
        for vote in votes:
            try:
                parse_vote(vote)
            except ValueError as exc:
                self.fail(line, field, str(exc))
        return votes

    def label(self, record: dict, field: str, line: int | None) -> SafetyLabel | None:
        value = record.get(field)
        if value in (None, ""):
            return None
        try:
            return SafetyLabel.parse(str(value))
        except ValueError as exc:
            self.fail(line, field, str(exc))
            return None

    def integer(self, record: dict, field: str, line: int | None, default: int | None = None) -> int:
        value = record.get(field, default)
        if value is None:
            self.fail(line, field, "missing field")
            return 0
        if isinstance(value, bool):
            self.fail(line, field, "expected an integer, got a boolean")
            return 0
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(line, field, f"expected an integer, got {value!r}")
            return 0
        if isinstance(value, float) and number != value:
            self.fail(line, field, f"expected an integer, got {value!r}")
        return number

    def boolean(self, record: dict, field: str, line: int | None, default: bool | None = None) -> bool:
        value = record.get(field, default)
        if isinstance(value, bool):
            return value
        if hasattr(value, "item"):  # numpy.bool_
            return bool(value.item())
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if value is None:
            self.fail(line, field, "missing field")
        else:
            self.fail(line, field, f"expected true or false, got {value!r}")
        return False


def _decode_list(cell: str) -> Any:
    cell = cell.strip()
    if not cell:
        return []
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(cell)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return cell


# --------------------------------------------------------------------------- Hugging Face rows


def _turn_from_row(row: dict, check: _Checker, line: int | None) -> tuple[Any, dict, Turn]:
    if not isinstance(row, dict):
        check.fail(line, None, f"expected an object, got {type(row).__name__}")
        return None, {}, Turn(context="")
    dialogue_id = row.get("dialogue_id")
    if dialogue_id is None:
        check.fail(line, "dialogue_id", "missing field")
    elif isinstance(dialogue_id, str):
        canonical = dialogue_id.isdecimal() and str(int(dialogue_id)) == dialogue_id
        dialogue_id = int(dialogue_id) if canonical else dialogue_id
    else:
        dialogue_id = check.integer(row, "dialogue_id", line)
    turn = Turn(
        context=check.text(row, "context", line),
        response=check.text(row, "response", line),
        rots=check.strings(row, "rots", line),
        safety_label=check.label(row, "safety_label", line),
        safety_annotations=check.votes(row, "safety_annotations", line),
        safety_annotation_reasons=check.strings(row, "safety_annotation_reasons", line),
        response_id=check.integer(row, "response_id", line),
        episode_done=check.boolean(row, "episode_done", line),
    )
    shared = {"source": check.text(row, "source", line, ""), "etc": check.text(row, "etc", line, "")}
    return dialogue_id, shared, turn


def dialogues_from_rows(
    rows: Iterable[tuple[int | None, dict]], path: str, problems: list[Problem], keep_turns: bool = True
) -> list[Dialogue]:
    """Group rows into dialogues by dialogue_id (first-seen order), turns ordered by response_id.

    Without `keep_turns` every row is still checked, but the dialogues come back without their turns: `data
    validate` only counts them, and a big file's turns would hold several times the file's size in memory.
    """
    check = _Checker(path, problems)
    dialogues: dict[Any, Dialogue] = {}
    seen: dict[tuple[Any, int], int | None] = {}
    for line, row in rows:
        dialogue_id, shared, turn = _turn_from_row(row, check, line)
        if dialogue_id is None:
            continue
        key = (dialogue_id, turn.response_id)
        if key in seen:
            check.fail(
                line,
                "response_id",
                f"duplicate turn {turn.response_id} of dialogue {dialogue_id} (first seen at line {seen[key]})",
            )
            continue
        seen[key] = line
        dialogue = dialogues.setdefault(dialogue_id, Dialogue(dialogue_id, **shared))
        if keep_turns:
            dialogue.turns.append(turn)
    for dialogue in dialogues.values():
        dialogue.turns.sort(key=lambda t: t.response_id)
    return list(dialogues.values())


def _judgement_fields(dialogue: Dialogue, turn: Turn) -> dict[str, Any]:
    """The fields both published formats write alike, in their order: RoTs, safety judgement, provenance."""
    return {
        "rots": list(turn.rots),
        "safety_label": turn.safety_label.value if turn.safety_label else "",
        "safety_annotations": list(turn.safety_annotations),
        "safety_annotation_reasons": list(turn.safety_annotation_reasons),
        "source": dialogue.source,
        "etc": dialogue.etc,
    }


def dialogue_to_rows(dialogue: Dialogue) -> Iterator[dict]:
    for turn in dialogue.turns:
        yield {
            "context": turn.context,
            "response": turn.response,
            **_judgement_fields(dialogue, turn),
            "dialogue_id": dialogue.dialogue_id,
            "response_id": turn.response_id,
            "episode_done": turn.episode_done,
        }


def _numbered(rows: Iterable[dict], start: int = 1) -> Iterator[tuple[int, dict]]:
    return enumerate(rows, start=start)


def _columns_to_rows(columns: dict, path: str, problems: list[Problem]) -> list[dict]:
    lengths = {k: len(v) for k, v in columns.items() if isinstance(v, list)}
    if len(set(lengths.values())) > 1 or len(lengths) != len(columns):
        problems.append(Problem(path, f"columns must be lists of equal length, got {lengths}"))
        return []
    keys = list(columns)
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _read_table_rows(path: Path) -> list[tuple[int, dict]]:
    """Parquet and CSV (UTF-8) via pandas; row numbers count data rows from 1 (CSV: line = row + 1 for the header).
    A file pandas cannot read is a `DataError` naming it; a blank CSV holds no rows."""
    import pandas as pd

    text = None if path.suffix == ".parquet" else read_text(path)
    if text is not None and not text.strip():
        return []
    try:
        if text is None:
            frame, offset = pd.read_parquet(path), 1
        else:
            frame, offset = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), 2
    except (ValueError, OSError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
        raise DataError.at(path, f"unreadable {path.suffix[1:]}: {' '.join(str(exc).split())}") from None
    records = frame.to_dict(orient="records")
    return [(i + offset, record) for i, record in enumerate(records)]


def _read_datasets_dir(path: Path, split: str | None) -> list[tuple[int, dict]]:
    from datasets import DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError.at(path, "neither a file nor a `datasets` folder (save_to_disk)") from None
    if isinstance(dataset, DatasetDict):
        if split is None:
            rows = [row for name in dataset for row in dataset[name]]
        else:
            rows = list(dataset[split])
    else:
        rows = list(dataset)
    return list(_numbered(rows))


def read_hub(split: str = "train", name: str = HUB_ID) -> list[Dialogue]:
    """For users who are online: `datasets.load_dataset("allenai/prosocial-dialog")`."""
    from datasets import load_dataset

    problems: list[Problem] = []
    dialogues = dialogues_from_rows(_numbered(load_dataset(name, split=split)), f"{name}[{split}]", problems)
    _raise_if(problems)
    for dialogue in dialogues:
        dialogue.split = split
    return dialogues


# --------------------------------------------------------------------------- direct download


def _dialogues_from_direct(
    items: Iterable[tuple[int, Any]], path: str, problems: list[Problem], keep_turns: bool = True
) -> list[Dialogue]:
    """Dialogues, each a list of turns, with their positions (from 1, reported as their "row"); the dialogue's index
    is its id unless a turn names one. Without `keep_turns` the turns are checked but not kept
    (`dialogues_from_rows`)."""
    check = _Checker(path, problems)
    dialogues = []
    for where, turns in items:
        index = where - 1
        if not isinstance(turns, list) or not turns:
            check.fail(where, None, "expected a non-empty list of turns")
            continue
        first = turns[0] if isinstance(turns[0], dict) else {}
        dialogue = Dialogue(
            first.get("dialogue_id", index),
            source=check.text(first, "source", where, ""),
            etc=check.text(first, "etc", where, ""),
        )
        for position, raw in enumerate(turns):
            if not isinstance(raw, dict):
                check.fail(where, f"[{position}]", "expected a turn object")
                continue
            labels = check.strings(raw, "labels", where)
            turn = Turn(
                    context=check.text(raw, "text", where),
                    response=labels[0] if labels else "",
                    rots=check.strings(raw, "rots", where),
                    safety_label=check.label(raw, "safety_label", where),
                    safety_annotations=check.votes(raw, "safety_annotations", where),
                    safety_annotation_reasons=check.strings(raw, "safety_annotation_reasons", where),
                    response_id=check.integer(raw, "response_id", where, position),
                    episode_done=check.boolean(raw, "episode_done", where, position == len(turns) - 1),
                )
            if keep_turns:
                dialogue.turns.append(turn)
        dialogues.append(dialogue)
    return dialogues


def dialogue_to_direct(dialogue: Dialogue, position: int) -> list[dict]:
    """Turns in the direct-download form; ids are written only where the position would not restore them."""
    out = []
    for i, turn in enumerate(dialogue.turns):
        record: dict[str, Any] = {
            "text": turn.context,
            "labels": [turn.response],
            **_judgement_fields(dialogue, turn),
            "episode_done": turn.episode_done,
        }
        if dialogue.dialogue_id != position:
            record["dialogue_id"] = dialogue.dialogue_id
        if turn.response_id != i:
            record["response_id"] = turn.response_id
        out.append(record)
    return out


# --------------------------------------------------------------------------- DialogStudio and partial


def _dialogues_from_dialogstudio(data: Any, path: str, problems: list[Problem]) -> list[Dialogue]:
    check = _Checker(path, problems)
    rows = []
    if not isinstance(data, dict):
        check.fail(None, None, "expected an object of dialogues")
        return []
    for position, (key, dialogue) in enumerate(data.items(), start=1):
        log = dialogue.get("log") if isinstance(dialogue, dict) else None
        if not isinstance(log, list) or not all(isinstance(turn, dict) for turn in log):
            check.fail(position, f"{key}.log", "expected a list of turn objects")
            continue
        for turn in log:
            info = turn.get("original user side information") or {}
            if not isinstance(info, dict):
                check.fail(position, f"{key}.log", "expected 'original user side information' to be an object")
                continue
            row = {**info, "context": turn.get("user utterance"), "response": turn.get("system response")}
            rows.append((position, row))
    return dialogues_from_rows(rows, path, problems)


def _dialogues_from_partial(
    rows: Iterable[tuple[int, Any]], path: str, problems: list[Problem], keep_turns: bool = True
) -> list[Dialogue]:
    """Context/response rows with their line or position: one single-turn dialogue each, its id the row's index.
    Without `keep_turns` the turns are checked but not kept (`dialogues_from_rows`)."""
    check = _Checker(path, problems)
    dialogues = []
    for index, (line, row) in enumerate(rows):
        if not isinstance(row, dict):
            check.fail(line, None, "expected an object with context and response")
            continue
        turn = Turn(check.text(row, "context", line), check.text(row, "response", line), episode_done=True)
        dialogues.append(Dialogue(index, [turn] if keep_turns else []))
    return dialogues


# --------------------------------------------------------------------------- format registry


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    suffixes: tuple[str, ...]
    write: Callable[[list[Dialogue], Path], None] | None = None


def _write_hf(dialogues: list[Dialogue], path: Path) -> None:
    rows = [row for d in dialogues for row in dialogue_to_rows(d)]
    if path.suffix == ".jsonl":
        with atomic_write(path) as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif path.suffix == ".json":
        with atomic_write(path) as handle:
            json.dump(rows, handle, ensure_ascii=False, indent=1)
    elif path.suffix in (".parquet", ".csv"):
        import pandas as pd

        frame = pd.DataFrame(rows, columns=list(HF_FIELDS))
        if path.suffix == ".csv":
            for column in _LIST_FIELDS:
                frame[column] = frame[column].map(lambda v: json.dumps(v, ensure_ascii=False))
            with atomic_write(path, newline="") as handle:
                frame.to_csv(handle, index=False)
        else:
            frame["dialogue_id"] = frame["dialogue_id"].astype(str if _mixed_ids(dialogues) else "int64")
            with atomic_write(path, "wb") as handle:
                frame.to_parquet(handle, index=False)
    else:
        raise DataError.at(
            path, f"cannot write Hugging Face rows to {path.suffix!r}; use .json, .jsonl, .parquet or .csv"
        )


def _mixed_ids(dialogues: list[Dialogue]) -> bool:
    return any(not isinstance(d.dialogue_id, int) for d in dialogues)


def _write_direct(dialogues: list[Dialogue], path: Path) -> None:
    data = [dialogue_to_direct(d, i) for i, d in enumerate(dialogues)]
    with atomic_write(path) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=1)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("hf", "Hugging Face rows (one row per turn)", (".json", ".jsonl", ".parquet", ".csv"), _write_hf),
        Format("direct", "direct download (list of dialogues of text/labels turns)", (".json",), _write_direct),
        Format("dialogstudio", "DialogStudio converted dialogues (read only)", (".json",)),
        Format("partial", "context/response rows, one single-turn dialogue each (read only)", (".json", ".jsonl")),
    )
}


def sniff_format(path: Path, data: Any) -> str:
    """Tell the format of parsed JSON content from its shape."""
    if isinstance(data, dict):
        first = next(iter(data.values()), None)
        return "dialogstudio" if isinstance(first, dict) and "log" in first else "hf"
    if isinstance(data, list) and data:
        if isinstance(data[0], list):
            return "direct"
        if isinstance(data[0], dict) and set(data[0]) <= {"context", "response"}:
            return "partial"
    return "hf"


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise DataError(problems)


def check_file(
    path: str | Path, format: str | None = None, split: str | None = None, keep_turns: bool = True
) -> tuple[list[Dialogue], list[Problem]]:
    """Read every dialogue a file holds and every problem in it (the basis of `read_dialogues` and `validate`).

    JSON Lines rows and the elements of a .json array are streamed, not read into a list first; with
    `keep_turns=False` (validation: counts and problems only) the dialogues come back without turns, so memory stays
    near the number of dialogues. A .json object (hf columns, DialogStudio) is read whole.
    """
    path = Path(path)
    problems: list[Problem] = []
    if not path.exists():
        raise DataError.at(path, "no such file or directory")
    if format is not None and format not in FORMATS:
        raise DataError.at(path, f"unknown format {format!r}; known: {sorted(FORMATS)}")
    if path.is_dir():
        return dialogues_from_rows(_read_datasets_dir(path, split), str(path), problems, keep_turns), problems
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        return dialogues_from_rows(_read_table_rows(path), str(path), problems, keep_turns), problems
    if suffix == ".jsonl":
        unreadable: list[Problem] = []  # lines that are not UTF-8 or not JSON: reported first, as before streaming
        lines = read_jsonl(path, unreadable)
        head = next(lines, None)
        rows = itertools.chain([head] if head is not None else [], lines)
        first = head[1] if head is not None else None
        partial = isinstance(first, dict) and set(first) <= {"context", "response"}
        if format == "partial" or (format is None and partial):
            dialogues = _dialogues_from_partial(rows, str(path), problems, keep_turns)
        else:
            dialogues = dialogues_from_rows(rows, str(path), problems, keep_turns)
        problems[:0] = unreadable
        return dialogues, problems
    if suffix != ".json":
        raise DataError.at(
            path, f"unsupported file type {suffix!r}; use .json, .jsonl, .parquet, .csv or a datasets folder"
        )
    return _read_json_file(path, format, problems, keep_turns), problems


#: what each format's reader says of a .json file that holds no list (DialogStudio's format is an object)
_NOT_A_LIST = {"hf": "expected a list of rows or an object of columns", "direct": "expected a list of dialogues",
               "partial": "expected a list of context/response rows"}


def _read_json_file(path: Path, format: str | None, problems: list[Problem], keep_turns: bool) -> list[Dialogue]:
    """A .json file's dialogues. An array (hf rows, direct dialogues, partial rows) is streamed element by element
    (`io.read_json_array`), so with `keep_turns=False` memory stays near the number of dialogues, not the file's
    size; an object (hf columns, DialogStudio's dialogues) is read whole, as its values are all needed together."""
    where = str(path)
    if first_json_character(path) == "[":
        elements = read_json_array(path)
        head = next(elements, None)
        kind = format or sniff_format(path, [] if head is None else [head[1]])
        data: Any = None
        items: Iterator[tuple[int, Any]] | None = itertools.chain([] if head is None else [head], elements)
    else:
        text = read_text(path)
        data = parse_json(path, text) if text.strip() else []  # a blank file holds no dialogues, as a blank .jsonl
        kind = format or sniff_format(path, data)
        items = _numbered(data) if isinstance(data, list) else None
    if kind == "dialogstudio":
        return _dialogues_from_dialogstudio(data, where, problems)  # an array is no object of dialogues: a problem
    if kind == "hf" and isinstance(data, dict):  # `Dataset.to_dict()`: one list per column; "line" is the row number
        items = _numbered(_columns_to_rows(data, where, problems))
    if items is None:
        problems.append(Problem(where, _NOT_A_LIST[kind]))
        return []
    if kind == "direct":
        return _dialogues_from_direct(items, where, problems, keep_turns)
    if kind == "partial":
        return _dialogues_from_partial(items, where, problems, keep_turns)
    return dialogues_from_rows(items, where, problems, keep_turns)


def read_dialogues(path: str | Path, format: str | None = None, split: str | None = None) -> list[Dialogue]:
    """Read dialogues from any supported file or `datasets` folder; raise `DataError` listing every problem."""
    dialogues, problems = check_file(path, format, split)
    _raise_if(problems)
    if split:
        for dialogue in dialogues:
            dialogue.split = split
    return dialogues


def write_dialogues(dialogues: list[Dialogue], path: str | Path, format: str = "hf") -> None:
    """Write atomically in `format` ("hf" by file suffix, or "direct")."""
    path = Path(path)
    spec = FORMATS.get(format)
    if spec is None or spec.write is None:
        writable = [name for name, f in FORMATS.items() if f.write]
        raise DataError.at(path, f"cannot write format {format!r}; writable formats: {writable}")
    spec.write(dialogues, path)
