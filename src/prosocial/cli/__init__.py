"""The `prosocial` command line: one typer app, with a sub-app per part of the package."""

from __future__ import annotations

from pathlib import Path

import typer

from prosocial import __version__
from prosocial.cli.canary import check, train_canary_mini
from prosocial.cli.collect import app as collect_app
from prosocial.cli.data import app as data_app
from prosocial.cli.eval import app as eval_app
from prosocial.cli.respond import chat, respond
from prosocial.cli.serve import serve
from prosocial.cli.train import app as train_app

app = typer.Typer(
    name="prosocial",
    help="A prosocial backbone for conversational agents (ProsocialDialog, Kim et al., EMNLP 2022).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(collect_app, name="collect")
app.command()(check)
app.command()(respond)
app.command()(chat)
app.command()(serve)
train_app.command("canary-mini")(train_canary_mini)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prosocial {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Safety detection with rules-of-thumb (Canary), prosocial replies (Prost), steering, evaluation."""


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's outputs (plots)."),
) -> None:
    """The main job on the offline defaults: statistics of the shipped example dialogues."""
    from prosocial.cli.data import stats
    from prosocial.resources import PAPER_TABLES

    stats([PAPER_TABLES], format=None, as_json=False, plot_dir=out)
    typer.echo(f"label dynamics plot written to {out}/")


def main() -> None:
    app()
