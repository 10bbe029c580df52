"""File helpers: atomic writes (nothing half-written, the mode `open` would give) and strict, UTF-8 reading whose
every error is a `DataError` naming the file and line."""

from __future__ import annotations

import json
import os
import re
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


def _decode(path: str | Path, data: bytes, first_line: int = 1, column: int = 0) -> str:
    """UTF-8 text of `data` (the file's text from `first_line` on, `column` bytes into it); a byte that is not UTF-8
    is an error naming its line and its place in that line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        place = exc.start - line_start + 1 + (column if line_start == 0 else 0)
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x} at byte {place})"
        raise DataError.at(path, message, line=first_line + data.count(b"\n", 0, exc.start)) from None


def read_text(path: str | Path) -> str:
    """A whole UTF-8 file; bytes that are not UTF-8 are an error naming the line they are on."""
    with _open_binary(path) as handle:
        return _decode(path, handle.read())


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON value (use null or a string)")


def _no_lone_surrogate(value: Any) -> Any:
    """`value`, or a UnicodeEncodeError if a string in it holds a lone surrogate (only a \\u escape makes one: check
    only JSON text that has one)."""
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


def _invalid_json(path: str | Path, exc: Exception, line: int | None, what: str = "") -> DataError:
    """The `DataError` for a value `parse_json` refuses (`what`: where in the file, e.g. "element 3")."""
    prefix = f"invalid JSON{' in ' + what if what else ''}"
    if isinstance(exc, UnicodeEncodeError):
        return DataError.at(path, f"{prefix}: lone surrogate {exc.object[exc.start]!r}", line=line)
    if isinstance(exc, RecursionError):
        return DataError.at(path, f"{prefix}: nested too deeply", line=line)
    return DataError.at(path, f"{prefix}: {exc}", line=line)  # a NaN, or an integer too long to convert


def parse_json(path: str | Path, text: str, line: int | None = None) -> Any:
    """Strict JSON (no NaN or Infinity, which Python reads but no other JSON reader does; no lone surrogate, which
    no UTF-8 file can hold), or a `DataError` naming the file and line (`line` for one line of JSON Lines; else the
    line of the whole text the error is on)."""
    try:
        value = json.loads(text, parse_constant=_not_json)
        return _no_lone_surrogate(value) if "\\u" in text else value
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise DataError.at(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=where) from None
    except (ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError too
        raise _invalid_json(path, exc, line) from None


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


#: bytes `read_json_array` reads at a time (and keeps at least this much text ahead of the element it parses)
JSON_CHUNK_BYTES = 1 << 20
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
#: a parse that stops this close to the end of the text read so far may have been cut short there: read on, retry
_CUT_MARGIN = 32


def _utf8_cut(data: bytes) -> int:
    """Where `data` ends on a whole UTF-8 character: its length, or the start of the character it cuts short."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte, of a character of 2, 3 or 4 bytes
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)  # no lead byte: not UTF-8, which `_decode` names


class _TextReader:
    """A UTF-8 file's text, read on demand in pieces cut between characters; a byte that is not UTF-8 is an error
    naming its line and its place in it (as `read_text`). `line` and `column` say where the next piece starts."""

    def __init__(self, path: str | Path, handle: IO[bytes]):
        self.path, self.handle = path, handle
        self.carry, self.line, self.column, self.eof = b"", 1, 0, False

    def read(self, size: int) -> str:
        data = self.handle.read(size)
        self.eof = not data
        data = self.carry + data
        cut = len(data) if self.eof else _utf8_cut(data)  # at the end a cut character is an error `_decode` names
        data, self.carry = data[:cut], data[cut:]
        text = _decode(self.path, data, self.line, self.column)
        newline = data.rfind(b"\n")
        self.column = self.column + len(data) if newline < 0 else len(data) - newline - 1
        self.line += data.count(b"\n")
        return text


def first_json_character(path: str | Path) -> str:
    """The first character of a JSON file that is not JSON whitespace ("" for none): "[" for an array."""
    with _open_binary(path) as handle:
        reader = _TextReader(path, handle)
        while not reader.eof:
            text = reader.read(4096)
            if (start := _JSON_SPACE.match(text).end()) < len(text):
                return text[start]
    return ""


def read_json_array(path: str | Path, chunk_bytes: int = JSON_CHUNK_BYTES) -> Iterator[tuple[int, Any]]:
    """Yield `(position, value)` (positions from 1) for each element of the JSON array a UTF-8 file holds, reading
    `chunk_bytes` at a time: memory stays near one element and a chunk, where `json.load` of a 200 MB file held
    844 MB. As strict as `parse_json`; an error names the file, the line it is on and the element.

    `json.JSONDecoder.raw_decode` parses each element from the text read so far. A parse that stops (with a value
    or an error) near the end of that text may have been cut short there, so it is retried with more text, as is an
    unterminated string; a real error further in is reported at once, without reading the rest of the file."""
    decoder = json.JSONDecoder(parse_constant=_not_json)
    with _open_binary(path) as handle:
        reader = _TextReader(path, handle)
        text, pos, line, column = "", 0, 1, 0  # text read and not yet dropped; the line and column text[0] is at
        number, expect = 0, "["  # elements so far; what comes next: "[", a "value" (or "]" first), ",", or "end"

        def fill(size: int) -> None:
            nonlocal text, pos, line, column
            newline = text.rfind("\n", 0, pos)
            column = column + pos if newline < 0 else pos - newline - 1
            line += text.count("\n", 0, pos)
            text, pos = text[pos:] + reader.read(size), 0

        def fail(message: str, at: int) -> DataError:
            newline = text.rfind("\n", 0, at)
            where = f"{message} (column {at - newline if newline >= 0 else column + at + 1})"
            return DataError.at(path, where, line=line + text.count("\n", 0, at))

        while True:
            if not reader.eof and len(text) - pos < chunk_bytes:
                fill(chunk_bytes)
            pos = _JSON_SPACE.match(text, pos).end()
            if pos == len(text):
                if reader.eof and expect == "end":
                    return
                if reader.eof:
                    raise fail(f"invalid JSON: the array ends after element {number} without ']'", pos)
                continue
            char = text[pos]
            if expect == "[" or expect == "end":
                if char != "[" or expect == "end":
                    raise fail(f"invalid JSON: {'extra data after the array' if expect == 'end' else 'not an array'}",
                               pos)
                pos, expect = pos + 1, "first"
            elif char == "]" and expect in ("first", ","):
                pos, expect = pos + 1, "end"
            elif expect == ",":
                if char != ",":
                    raise fail(f"invalid JSON after element {number}: expecting ',' or ']'", pos)
                pos, expect = pos + 1, "value"
            else:
                try:
                    value, end = decoder.raw_decode(text, pos)
                    cut = end + _CUT_MARGIN >= len(text)
                except json.JSONDecodeError as exc:
                    cut = exc.pos + _CUT_MARGIN >= len(text) or exc.msg.startswith("Unterminated string")
                    if reader.eof or not cut:
                        raise fail(f"invalid JSON in element {number + 1}: {exc.msg}", exc.pos) from None
                except (ValueError, RecursionError) as exc:
                    raise _invalid_json(path, exc, line + text.count("\n", 0, pos), f"element {number + 1}") from None
                if cut and not reader.eof:  # perhaps cut short: again with twice the text ahead
                    fill(max(chunk_bytes, 2 * (len(text) - pos)))
                    continue
                try:
                    if text.find("\\u", pos, end) >= 0:
                        _no_lone_surrogate(value)
                except UnicodeEncodeError as exc:
                    raise _invalid_json(path, exc, line + text.count("\n", 0, pos), f"element {number + 1}") from None
                number, pos, expect = number + 1, end, ","
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
