"""ToxiChat threads (Baheti et al. 2021) as threads: comments, chatbot replies and every human stance label.

The thread JSONL holds every human label of the flattened `OC_S_*.csv` files (the adapter in `data/adapters.py`
explains), plus the labelled DialoGPT and GPT-3 replies, so it is the only file read. The `ToxiChat` adapter reads
the same file for another use: one `Example` per comment with its safety label, for detectors; this reader keeps
the thread whole, with the stance labels and chatbot replies that Table 5 and its evaluators need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prosocial.errors import DataError
from prosocial.io import read_jsonl

STANCES: tuple[str, ...] = ("agree", "disagree", "neutral")
OFFENSE: tuple[str, ...] = ("safe", "offensive")
REPLY_KEYS = {"final_dgpt_response": "DialoGPT", "final_gpt3_response": "GPT-3"}


@dataclass
class ThreadTurn:
    """A Reddit comment or a chatbot reply with its human labels (not a ProsocialDialog `schema.Turn`)."""

    text: str
    offensive: bool
    #: human stance toward earlier turns, by 1-based turn id
    stance: dict[int, str] = field(default_factory=dict)


@dataclass
class Thread:
    """A Reddit thread, oldest comment first, with the labelled chatbot replies to its last comment."""

    comments: list[ThreadTurn]
    #: the labelled chatbot replies to the last comment, by system ("DialoGPT", "GPT-3")
    replies: dict[str, ThreadTurn] = field(default_factory=dict)
    #: "toxichat/<file stem>/<line>": stable across samples, so two systems' saved replies pair up
    id: str = ""

    @property
    def context(self) -> list[str]:
        return [t.text for t in self.comments]


def _turn(raw: Mapping[str, Any], path: Path, line: int) -> ThreadTurn:
    try:
        text, offense = raw["text"], raw["offense_label"]
    except (KeyError, TypeError):
        raise DataError.at(path, "a turn needs 'text' and 'offense_label'", line) from None
    if offense not in ("Safe", "Offensive"):
        raise DataError.at(path, f"offense_label must be Safe or Offensive, got {offense!r}", line)
    stance = {
        int(k.rsplit("_", 1)[1]): v.lower() for k, v in raw.items() if k.startswith("stance_label_towards_turn_")
    }
    if bad := {v for v in stance.values() if v not in STANCES}:
        raise DataError.at(path, f"unknown stance labels {sorted(bad)}", line)
    return ThreadTurn(" ".join(str(text).split()), offense == "Offensive", stance)


def read_threads(path: str | Path) -> list[Thread]:
    """ToxiChat's thread JSONL (`train.jsonl`, `dev.jsonl`)."""
    path = Path(path)
    threads = []
    for line, record in read_jsonl(path):
        if not isinstance(record, dict):
            raise DataError.at(path, "expected a JSON object", line)
        comments = [_turn(c, path, line) for c in record.get("reddit_thread") or []]
        if not comments:
            raise DataError.at(path, "expected a non-empty 'reddit_thread'", line)
        replies = {name: _turn(record[key], path, line) for key, name in REPLY_KEYS.items() if key in record}
        threads.append(Thread(comments, replies, f"toxichat/{path.stem}/{line}"))
    return threads


def offense_data(threads: Sequence[Thread]) -> tuple[list[str], list[int]]:
    """Every comment and chatbot reply with its human offense label (index into `OFFENSE`)."""
    turns = [t for th in threads for t in (*th.comments, *th.replies.values())]
    return [t.text for t in turns], [int(t.offensive) for t in turns]


def stance_data(threads: Sequence[Thread], last_only: bool = False) -> tuple[list[str], list[str], list[int]]:
    """(earlier turn, later turn, stance) for every human stance label; `last_only` keeps only stances
    toward the turn right before (for chatbot replies: the thread's last comment), the protocol's case."""
    targets, replies, labels = [], [], []
    for thread in threads:
        turns = [*enumerate(thread.comments, 1), *((len(thread.comments) + 1, r) for r in thread.replies.values())]
        for turn_id, turn in turns:
            for toward, stance in turn.stance.items():
                if (last_only and toward != turn_id - 1) or not 1 <= toward <= len(thread.comments):
                    continue
                targets.append(thread.comments[toward - 1].text)
                replies.append(turn.text)
                labels.append(STANCES.index(stance))
    return targets, replies, labels
