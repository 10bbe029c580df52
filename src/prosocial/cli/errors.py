"""How every command reports an expected failure (bad input, missing model): one red line, no traceback, exit 1."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console


def fail(console: Console, error: Exception | str) -> NoReturn:
    console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
