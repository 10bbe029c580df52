"""File helpers: atomic writes (nothing half-written) and JSON Lines with line-numbered errors."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from prosocial.errors import DataError


@contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(
    path: str | Path, skip_invalid: bool = False, errors: list[str] | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield `(line_number, value)` for each non-blank line; a malformed line is an error naming it.

    With `skip_invalid`, malformed lines are skipped and their messages appended to `errors`.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                error = DataError.at(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=number)
                if not skip_invalid:
                    raise error from None
                if errors is not None:
                    errors.append(str(error))


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write rows atomically as JSON Lines; returns the count written."""
    count = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(path: str | Path, value: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(value, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
