"""How every command reports an expected failure (bad input, missing model): one red line, no traceback, exit 1."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

#: the status of a process that SIGPIPE ended (128 + 13), as `yes | head` leaves for `yes`
BROKEN_PIPE_STATUS = 141


def stdout_closed() -> NoReturn:
    """The reader of stdout went away (`prosocial check -i … -o - | head`): stop silently, as Unix tools do, rather
    than print "error: [Errno 32] Broken pipe". Stdout is pointed at /dev/null first, so the interpreter's own
    flush at exit does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a replaced stdout (tests) has no file descriptor
        pass
    raise typer.Exit(BROKEN_PIPE_STATUS)


def fail(console: Console, error: Exception | str) -> NoReturn:
    """Print the error unwrapped (scripts read it whole, whatever the terminal's width) and exit 1; it names user
    input (paths, values), so it is escaped, not read as Rich markup. A broken stdout pipe is no error to report."""
    if isinstance(error, BrokenPipeError):
        stdout_closed()
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def shared_data_root(console: Console, data: Path | None, needs: Sequence[str] = ()) -> Path:
    """`data` or the default shared data folder, checked before any model is loaded: a missing folder (or a missing
    benchmark of `needs`) is one red line naming what is missing and $PROSOCIAL_SHARED_DATA, not a traceback after
    minutes of loading."""
    from prosocial.data.adapters import BENCHMARKS, ENV_VAR, default_root

    try:
        root = Path(data) if data is not None else default_root()
    except FileNotFoundError as error:
        fail(console, error)
    if not root.is_dir():
        fail(console, f"the shared data folder {root} does not exist; pass --data or set {ENV_VAR}")
    missing = [BENCHMARKS[name].folder for name in needs if not (root / BENCHMARKS[name].folder).is_dir()]
    if missing:
        fail(console, f"the shared data folder {root} lacks {', '.join(missing)}; pass --data or set {ENV_VAR}")
    return root


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """SIGTERM (`kill`, a scheduler's stop, `docker stop`) ends a command the way Ctrl-C does: Python unwinds, so an
    atomic write removes its hidden temporary file (`.out.jsonl.<hex>.tmp`); by default the process dies on the spot
    and leaves it behind. Exit status 143 (128 + 15), as a shell reports for a killed process. Main thread only (the
    only place Python runs handlers); `serve` replaces it with uvicorn's own graceful shutdown."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
