"""Errors that tell the user exactly where their input is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Problem:
    """One thing wrong with an input: the file, the line or row (1-based), the field, and what is wrong."""

    path: str
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f", line {self.line}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"


class DataError(ValueError):
    """Bad input data; carries every `Problem` found, so a validator can list them all."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        shown = "\n".join(str(p) for p in self.problems[:20])
        more = len(self.problems) - 20
        super().__init__(shown + (f"\n… and {more} more" if more > 0 else ""))

    def __reduce__(self) -> tuple[type[DataError], tuple[list[Problem]]]:
        """Pickle the problems, not the message, so the error crosses process boundaries (Ray workers) intact."""
        return type(self), (self.problems,)

    @classmethod
    def at(cls, path: str | Path, message: str, line: int | None = None, field: str | None = None) -> DataError:
        return cls(Problem(str(path), message, line, field))


class ModelError(RuntimeError):
    """A model directory or backend cannot be used (missing files, unknown backend, bad config)."""
