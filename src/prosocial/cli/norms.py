"""`prosocial norms test`: a norms file checked like unit tests for a policy (usable in a user's CI)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from prosocial.cli.batch import backend_spec
from prosocial.cli.errors import fail
from prosocial.cli.logs import held_warnings
from prosocial.errors import DataError, ModelError

console = Console(stderr=True)
app = typer.Typer(help="Your own norms (rules-of-thumb) applied at run time; see the README's norms section.",
                  no_args_is_help=True)

NORMS_HELP = "Norms file (YAML or JSON Lines, see the README); repeatable."


@app.command()
def test(
    norms: list[Path] = typer.Argument(..., help="Norms files (YAML or JSON Lines)."),
    cases: list[Path] = typer.Option(
        [], "--cases", help='Test situations, JSON Lines of {"text": …, "norm": id or null}; repeatable.'
    ),
    leave_one_out: bool = typer.Option(
        False, "--leave-one-out", help="Match each example with itself taken out of its norm (does it generalise?)."
    ),
    backend: str = typer.Option("canary-mini", "--backend", "-b", help="Detector the norms apply on top of "
                                "(NAME[:key=value,...], as `check -b`)."),
    show_passed: bool = typer.Option(False, "--show-passed", help="List passing checks too."),
) -> None:
    """Run each norm's examples (and the --cases) through the detector: every example must be decided by its
    norm, every case by the norm it names or by none. Exits 1 when any check fails."""
    from prosocial.canary import load_detector
    from prosocial.canary.norms import read_cases, run_norm_tests

    name, settings = backend_spec(backend, "--backend")
    try:
        with held_warnings(console):  # no "Loading weights" bars between the command and its table
            detector = load_detector(name, norms=norms, **settings)
            results = run_norm_tests(detector, [c for path in cases for c in read_cases(path)], leave_one_out)
    except (DataError, ModelError, OSError) as exc:
        fail(console, exc)
    shown = [r for r in results if show_passed or not r.passed]
    if shown:
        table = Table(show_lines=False)
        for column in ("", "check", "situation", "expected", "got"):
            table.add_column(column, overflow="fold")
        for r in shown:
            table.add_row("[green]ok[/green]" if r.passed else "[red]FAIL[/red]", r.kind, r.case.text,
                          r.case.norm or "no norm", f"{r.got or 'no norm'} ({r.verdict})")
        Console().print(table)
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} of {len(results)} checks passed", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
