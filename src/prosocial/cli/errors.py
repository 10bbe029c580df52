"""How every command reports an expected failure (bad input, missing model): one red line, no traceback, exit 1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def fail(console: Console, error: Exception | str) -> NoReturn:
    """Print the error unwrapped (scripts read it whole, whatever the terminal's width) and exit 1; it names user
    input (paths, values), so it is escaped, not read as Rich markup."""
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
