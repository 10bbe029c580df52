"""While a command owns the terminal (a progress bar, a chat): the package's log warnings held and shown after, and
transformers' "Loading weights" bars, drawn for each model as it loads lazily, kept off it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


class _Hold(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def held_warnings(console: Console) -> Iterator[None]:
    """Hold `prosocial` log warnings until the block ends, then print each kind once with how often it came.

    Printed as they happen they would land inside a conversation or under a progress bar, and a batch job
    would repeat the same truncation warning once per batch.
    """
    from transformers.utils import logging as transformers_logging

    logger = logging.getLogger("prosocial")
    hold, propagate = _Hold(), logger.propagate
    logger.addHandler(hold)
    logger.propagate = False
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.removeHandler(hold)
        logger.propagate = propagate
        if bars:
            transformers_logging.enable_progress_bar()
        kinds: dict[tuple[str, str], list[logging.LogRecord]] = {}
        for record in hold.records:
            kinds.setdefault((record.name, str(record.msg)), []).append(record)
        for first, *more in kinds.values():
            again = f" (and {len(more):,} more like it)" if more else ""
            console.print(f"[yellow]warning:[/yellow] {escape(first.getMessage())}{again}", highlight=False,
                          soft_wrap=True)
