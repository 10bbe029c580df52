"""Judgments in SQLite: one file holds the study (systems, tasks) and every rater's answers.

SQLite because a study is small, single-writer at human speed, and the file is the whole artefact to archive.
Every connection is short-lived, so the web app can run several worker threads safely.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prosocial.errors import DataError
from prosocial.eval.human_eval.tasks import CHOICES, DIMENSIONS, Task

SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    position INTEGER PRIMARY KEY, item_id TEXT UNIQUE NOT NULL, context TEXT NOT NULL,
    reply_a TEXT NOT NULL, reply_b TEXT NOT NULL, left_system TEXT NOT NULL CHECK (left_system IN ('a', 'b')));
CREATE TABLE IF NOT EXISTS judgments (
    item_id TEXT NOT NULL REFERENCES tasks(item_id), rater TEXT NOT NULL, dimension TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'tie', 'right')),
    winner TEXT NOT NULL CHECK (winner IN ('a', 'tie', 'b')), created TEXT NOT NULL,
    PRIMARY KEY (item_id, rater, dimension));
"""


@dataclass
class Judgment:
    item_id: str
    rater: str
    dimension: str
    choice: str
    winner: str
    created: str


class Store:
    """A study file: `create` it once from tasks, then `next_task` / `record` per rater, `judgments` to analyse."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            connection.execute("PRAGMA foreign_keys = ON")
            with connection:
                yield connection
        finally:
            connection.close()

    def create(self, tasks: Sequence[Task], system_a: str, system_b: str, raters_per_item: int = 3,
               seed: int = 0) -> None:
        """Write a new study; an existing file is refused so judgments are never mixed across studies."""
        if self.path.exists():
            raise DataError.at(self.path, "already exists; choose a new file for a new study")
        if raters_per_item < 1:
            raise ValueError("raters_per_item must be at least 1")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            meta = {"system_a": system_a, "system_b": system_b, "raters_per_item": str(raters_per_item),
                    "seed": str(seed), "created": datetime.now(UTC).isoformat(),
                    "dimensions": json.dumps(list(DIMENSIONS))}
            db.executemany("INSERT INTO study VALUES (?, ?)", meta.items())
            db.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                           [(i, t.item_id, json.dumps(t.context), t.reply_a, t.reply_b, t.left)
                            for i, t in enumerate(tasks)])

    def study(self) -> dict[str, str]:
        if not self.path.is_file():
            raise DataError.at(self.path, "no study here (create one with `prosocial eval human build`)")
        with self._connect() as db:
            return dict(db.execute("SELECT key, value FROM study"))

    @staticmethod
    def _task(row: tuple) -> Task:
        item_id, context, reply_a, reply_b, left = row
        return Task(item_id, json.loads(context), reply_a, reply_b, left)

    def tasks(self) -> list[Task]:
        with self._connect() as db:
            rows = db.execute("SELECT item_id, context, reply_a, reply_b, left_system FROM tasks ORDER BY position")
            return [self._task(r) for r in rows]

    def task(self, item_id: str) -> Task | None:
        with self._connect() as db:
            row = db.execute("SELECT item_id, context, reply_a, reply_b, left_system FROM tasks WHERE item_id = ?",
                             (item_id,)).fetchone()
        return None if row is None else self._task(row)

    def next_task(self, rater: str) -> Task | None:
        """The first task (in the study's order) this rater has not judged and that still needs raters.

        Items fill up to `raters_per_item` one after another, so a partly rated study has complete items.
        """
        needed = int(self.study()["raters_per_item"])
        with self._connect() as db:
            row = db.execute(
                """SELECT t.item_id, t.context, t.reply_a, t.reply_b, t.left_system FROM tasks t
                   WHERE NOT EXISTS (SELECT 1 FROM judgments j WHERE j.item_id = t.item_id AND j.rater = ?)
                     AND (SELECT COUNT(DISTINCT rater) FROM judgments j WHERE j.item_id = t.item_id) < ?
                   ORDER BY t.position LIMIT 1""", (rater, needed)).fetchone()
        return None if row is None else self._task(row)

    def record(self, item_id: str, rater: str, choices: dict[str, str]) -> None:
        """One rater's answers to all five questions for one task, stored together (or not at all)."""
        rater = rater.strip()
        if not rater:
            raise ValueError("a rater name is required")
        if set(choices) != set(DIMENSIONS):
            raise ValueError(f"answers are needed for exactly {list(DIMENSIONS)}, got {sorted(choices)}")
        if bad := {c for c in choices.values() if c not in CHOICES}:
            raise ValueError(f"choices must be in {CHOICES}, got {sorted(bad)}")
        task = self.task(item_id)
        if task is None:
            raise ValueError(f"unknown task {item_id!r}")
        now = datetime.now(UTC).isoformat()
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?)",
                           [(item_id, rater, d, c, task.unblind(c), now) for d, c in choices.items()])

    def judgments(self) -> list[Judgment]:
        with self._connect() as db:
            rows = db.execute("SELECT item_id, rater, dimension, choice, winner, created FROM judgments "
                              "ORDER BY created, item_id, rater, dimension")
            return [Judgment(*r) for r in rows]

    def progress(self) -> tuple[int, int]:
        """(judged task-rater pairs, pairs the study asks for)."""
        needed = int(self.study()["raters_per_item"])
        with self._connect() as db:
            done = db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT item_id, rater FROM judgments)").fetchone()[0]
            total = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        return done, total * needed
