"""How every command reports an expected failure (bad input, missing model): one red line, no traceback, exit 1."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def fail(console: Console, error: Exception | str) -> NoReturn:
    """Print the error unwrapped (scripts read it whole, whatever the terminal's width) and exit 1; it names user
    input (paths, values), so it is escaped, not read as Rich markup."""
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
