"""File helpers: atomic writes (nothing half-written, the mode `open` would give) and strict, UTF-8 reading whose
every error is a `DataError` naming the file and line."""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn

from prosocial.errors import DataError, Problem

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def check_replaceable(path: str | Path) -> None:
    """Refuse, with a `DataError` naming `path`, to replace anything but a writable regular file (or nothing).

    An atomic write renames a new regular file over the target: over /dev/null (as root), a FIFO another program
    reads, or a file someone made read-only, that silently destroys what was there. A symlink is followed, so one
    that points at a device is refused too. Root may write a 0444 file, but its owner said no: no write bit at all
    is refused whoever runs.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    for test, kind in _KINDS:
        if test(info.st_mode):
            raise DataError.at(path, f"is {kind}, not a regular file; it would be replaced, so write to a file "
                               "(or to '-', stdout, and redirect that)")
    if not info.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise DataError.at(path, "is read-only; make it writable or write to another file")


@contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it over `path` only if the block succeeds (a `path` that is
    not a writable regular file is refused first, see `check_replaceable`).

    The file ends with the mode a plain `open` would give it: the target's own if it exists, else 0o666 less the
    umask (the temporary file is created with 0o666, so the kernel applies the umask; nothing reads it).
    """
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _open_binary(path: str | Path) -> IO[bytes]:
    """Open for reading; a missing or unreadable file is a `DataError` naming it, like any bad input."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError.at(path, (exc.strerror or str(exc)).lower()) from None


def _decode(path: str | Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8 text of `data` (the file's text from `first_line` on); a byte that is not UTF-8 is an error naming its
    line and its place in that line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x} at byte {exc.start - line_start + 1})"
        raise DataError.at(path, message, line=first_line + data.count(b"\n", 0, exc.start)) from None


def read_text(path: str | Path) -> str:
    """A whole UTF-8 file; bytes that are not UTF-8 are an error naming the line they are on."""
    with _open_binary(path) as handle:
        return _decode(path, handle.read())


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON value (use null or a string)")


def parse_json(path: str | Path, text: str, line: int | None = None) -> Any:
    """Strict JSON (no NaN or Infinity, which Python reads but no other JSON reader does; no lone surrogate, which
    no UTF-8 file can hold), or a `DataError` naming the file and line (`line` for one line of JSON Lines; else the
    line of the whole text the error is on)."""
    try:
        value = json.loads(text, parse_constant=_not_json)
        if "\\u" in text:  # only a \u escape can make a lone surrogate
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise DataError.at(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=where) from None
    except UnicodeEncodeError as exc:
        raise DataError.at(path, f"invalid JSON: lone surrogate {exc.object[exc.start]!r}", line=line) from None
    except ValueError as exc:  # a NaN, or an integer too long to convert
        raise DataError.at(path, f"invalid JSON: {exc}", line=line) from None
    except RecursionError:
        raise DataError.at(path, "invalid JSON: nested too deeply", line=line) from None


def read_jsonl(path: str | Path, problems: list[Problem] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(line_number, value)` for each non-blank line of a UTF-8 JSON Lines file; a line that is not UTF-8 or
    not JSON is an error naming it. Given `problems`, such lines are recorded there and skipped instead."""
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = parse_json(path, _decode(path, raw, number), line=number)
            except DataError as error:
                if problems is None:
                    raise
                problems.extend(error.problems)
                continue
            yield number, value


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
