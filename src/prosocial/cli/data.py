"""`prosocial data …`: statistics, conversion and validation of ProsocialDialog files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prosocial.cli.errors import fail
from prosocial.data import (
    FORMATS,
    Stats,
    check_file,
    dialogue_stats,
    example_stats,
    plot_label_dynamics,
    read_dialogues,
    write_dialogues,
)
from prosocial.errors import DataError

app = typer.Typer(
    help="ProsocialDialog data: statistics, conversion, validation. Files are UTF-8; an empty file holds 0 dialogues "
    "(no error).",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)



def _stats_table(all_stats: list[Stats]) -> Table:
    table = Table(title="Dataset statistics (paper Table 1, A.5)")
    for column in (
        "data",
        "#dialog",
        "#utt.",
        "avg #turns",
        "avg utt. len",
        "labelled",
        "casual",
        "caution",
        "intervention",
        "RoTs/dialog",
        "unique RoTs",
        "unique 3-grams",
    ):
        table.add_column(column, justify="left" if column == "data" else "right")
    for s in all_stats:
        table.add_row(
            s.name,
            f"{s.dialogues:,}",
            f"{s.utterances:,}",
            f"{s.avg_turns:.1f}",
            f"{s.avg_utterance_length:.1f}",
            f"{s.labelled_contexts:,}",
            f"{s.coarse_distribution.get('casual', 0):,}",
            f"{s.coarse_distribution.get('needs caution', 0):,}",
            f"{s.coarse_distribution.get('needs intervention', 0):,}",
            f"{s.rots_per_dialogue:.1f}",
            f"{s.rots.unique_ratio:.0%}" if s.rots.total else "-",
            f"{s.rots.unique_3gram_ratio:.0%}" if s.rots.total else "-",
        )
    return table


@app.command()
def stats(
    files: list[Path] = typer.Argument(None, help="ProsocialDialog files (any format) or datasets folders."),
    benchmark: list[str] = typer.Option(
        [], "--benchmark", "-b", help="A benchmark adapter as NAME or NAME:SPLIT (e.g. toxichat:dev); repeatable."
    ),
    format: str | None = typer.Option(
        None, "--format", "-f", help=f"Input format; sniffed when omitted. One of {sorted(FORMATS)}."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot_dir: Path | None = typer.Option(
        None, "--plot-dir", help="Write the label-dynamics PNG (Figure 4) of each input here."
    ),
) -> None:
    """Table 1 columns, label distribution, label dynamics by turn, RoT diversity.

    Benchmarks (`--benchmark`) are counted per judged context: one example = one "dialogue".
    """
    from prosocial.data.adapters import load_benchmark

    if not files and not benchmark:
        raise typer.BadParameter("give FILES and/or --benchmark NAME")
    try:
        results = [dialogue_stats(read_dialogues(path, format), name=path.name) for path in files or []]
        for spec in benchmark:
            name, _, split = spec.partition(":")
            results.append(example_stats(load_benchmark(name, split or "train"), name=f"{name}:{split or 'train'}"))
    except (DataError, ValueError, OSError) as exc:
        fail(err, exc)
    if plot_dir is not None:
        for result in results:
            if result.labelled_contexts:
                stem = Path(result.name).stem.replace(":", "_")
                plot_label_dynamics(result, plot_dir / f"{stem}.label_dynamics.png")
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        console.print(_stats_table(results))


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Input file or datasets folder."),
    target: Path = typer.Argument(..., help="Output file; for --to hf the suffix picks JSON, JSONL, Parquet or CSV."),
    to: str = typer.Option("hf", "--to", help="Output format: hf (Hugging Face rows) or direct (direct download)."),
    format: str | None = typer.Option(None, "--from", help="Input format; sniffed when omitted."),
) -> None:
    """Convert between the published formats (lossless); the output is written atomically."""
    try:
        dialogues = read_dialogues(source, format)
        write_dialogues(dialogues, target, to)
    except (DataError, OSError) as exc:
        fail(err, exc)
    turns = sum(len(d.turns) for d in dialogues)
    console.print(escape(f"wrote {len(dialogues):,} dialogues ({turns:,} turns) to {target} ({to})"), soft_wrap=True)


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Files to check."),
    format: str | None = typer.Option(None, "--format", "-f", help="Input format; sniffed when omitted."),
) -> None:
    """Check files and list every problem (file, line, field); exit code 1 if any."""
    total = 0
    for path in files:
        try:
            dialogues, problems = check_file(path, format, keep_turns=False)  # counts only: no turns held
        except DataError as exc:
            dialogues, problems = [], exc.problems
        for problem in problems:
            err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        total += len(problems)
        status = "[green]ok[/green]" if not problems else f"[red]{len(problems)} problem(s)[/red]"
        console.print(f"{escape(str(path))}: {len(dialogues):,} dialogues, {status}", soft_wrap=True)
    if total:
        raise typer.Exit(1)
