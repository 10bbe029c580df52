"""Problematic situations to start dialogues from (paper §3.1, A.1): files, ETHICS and Social Bias Frames."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prosocial.data.adapters import load_benchmark
from prosocial.errors import DataError
from prosocial.io import read_jsonl

SOURCES = ("file", "ethics", "sbic")


@dataclass
class SituationIn:
    """A situation and its candidate RoTs; `as_is` marks text already fit to be said (SBIC posts, A.2)."""

    text: str
    source: str
    rots: list[str] = field(default_factory=list)
    as_is: bool = False
    etc: str = ""


def _rots(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        return _rots(json.loads(text))
    return [r.strip() for r in text.split(";") if r.strip()]


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def _from_record(record: dict, path: Path, line: int, default_source: str) -> SituationIn:
    """Social-Chemistry-style rows: `situation` (or `text`), `rots`/`rot` (list or `;`-separated), `source`."""
    text = str(record.get("situation") or record.get("text") or "").strip()
    if not text:
        raise DataError.at(path, "missing 'situation' (or 'text')", line, "situation")
    rots = _rots(record.get("rots")) + _rots(record.get("rot"))
    return SituationIn(
        text=text,
        source=str(record.get("source") or default_source),
        rots=list(dict.fromkeys(rots)),
        as_is=_truthy(record.get("as_is", "")),
        etc=str(record.get("etc") or ""),
    )


def read_situations(path: str | Path, source: str | None = None) -> list[SituationIn]:
    """Situations from a CSV (header row) or JSON Lines file."""
    path = Path(path)
    default = source or "socialchemistry"
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return [_from_record(row, path, i, default) for i, row in enumerate(csv.DictReader(handle), start=2)]
    if path.suffix in (".jsonl", ".json"):
        return [_from_record(row, path, i, default) for i, row in read_jsonl(path)]
    raise DataError.at(path, f"cannot read situations from {path.suffix!r}; use .csv or .jsonl")


def ethics_situations(split: str = "dev", limit: int | None = None, root: Path | None = None) -> list[SituationIn]:
    """ETHICS commonsense scenarios labelled 1 (clearly wrong), as in A.1; they come without RoTs."""
    found = [
        SituationIn(text=ex.context[0], source="ethics", etc=ex.id)
        for ex in load_benchmark("ethics_commonsense", split, root=root)
        if ex.meta.get("label") == 1
    ]
    return found[:limit]


def sbic_situations(split: str = "dev", limit: int | None = None, root: Path | None = None) -> list[SituationIn]:
    """SBIC posts with an implied statement and target group and 10–40 words (A.1), RoTs from the implications."""
    found = [
        SituationIn(text=ex.context[0], source="sbic", rots=ex.rots, as_is=True, etc=ex.id)
        for ex in load_benchmark("sbic", split, root=root)
        if ex.rots and 10 <= len(ex.context[0].split()) <= 40
    ]
    return found[:limit]


def load_source(name: str, path: Path | None = None, split: str = "dev", limit: int | None = None) -> list[SituationIn]:
    if name == "file":
        if path is None:
            raise ValueError("source 'file' needs a path")
        return read_situations(path)[:limit]
    if name == "ethics":
        return ethics_situations(split, limit, path)
    if name == "sbic":
        return sbic_situations(split, limit, path)
    raise ValueError(f"unknown situation source {name!r}; expected one of {SOURCES}")


def interleave(*groups: Iterable[SituationIn]) -> Iterator[SituationIn]:
    """Round-robin over sources, so a small import still covers every source."""
    iterators = [iter(g) for g in groups]
    while iterators:
        for it in list(iterators):
            try:
                yield next(it)
            except StopIteration:
                iterators.remove(it)
