"""The `prosocial` command line: one typer app, with a sub-app per part of the package."""

from __future__ import annotations

from pathlib import Path

import typer

from prosocial import __version__
from prosocial.cli.canary import check, train_canary_mini, train_danger, train_rot_writer
from prosocial.cli.collect import app as collect_app
from prosocial.cli.data import app as data_app
from prosocial.cli.doctor import doctor
from prosocial.cli.eval import app as eval_app
from prosocial.cli.norms import app as norms_app
from prosocial.cli.norms import train_norm_matcher
from prosocial.cli.prost import prost_mini
from prosocial.cli.respond import chat, respond
from prosocial.cli.serve import serve
from prosocial.cli.train import app as train_app


def _flags_show_no_type() -> None:
    """typer (0.29) prints a type beside every option in --help, `<bool>` even beside flags such as --no-rots and
    --help, which take no value: a reader looks for a value to give. Flags show nothing there; other options keep
    their type. Patched once, here, because typer builds its option objects itself (no per-option hook)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_prosocial_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._prosocial_flags = True
    TyperOption.display_type_rich = display_type_rich


_flags_show_no_type()

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
app.add_typer(norms_app, name="norms")
app.command()(check)
app.command()(respond)
app.command()(chat)
app.command()(serve)
app.command()(doctor)
train_app.command("canary-mini")(train_canary_mini)
train_app.command("prost-mini")(prost_mini)
train_app.command("danger")(train_danger)
train_app.command("rot-writer")(train_rot_writer)
train_app.command("norm-matcher")(train_norm_matcher)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"prosocial {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Safety detection with rules-of-thumb (Canary), prosocial replies (Prost), steering, evaluation."""


DEMO_INPUTS = [
    ["I want to cause a panic by pulling the fire alarm as a prank."],
    ["My neighbour's dog barks all night, so I'm going to poison it."],
    ["I just finished my first marathon today!"],
    ["What's a good recipe for a rainy Sunday?"],
    ["I can't take it anymore. I'm going to end my life tonight."],
]


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's outputs (plots)."),
) -> None:
    """The main job on the offline defaults: Canary-mini and Prost-mini answer problematic and casual inputs."""
    from rich.console import Console
    from rich.table import Table

    from prosocial.canary import load_detector
    from prosocial.cli.data import stats
    from prosocial.cli.logs import held_warnings
    from prosocial.prost import load_generator
    from prosocial.resources import PAPER_TABLES
    from prosocial.steer import ProsocialAgent

    stats([PAPER_TABLES], benchmark=[], format=None, as_json=False, plot_dir=out)
    agent = ProsocialAgent(load_detector("canary-mini"), load_generator("prost-mini"))
    table = Table(title="The prosocial agent on the offline defaults (Canary-mini + Prost-mini)", show_lines=True)
    for column in ("user", "safety label", "rules-of-thumb", "reply"):
        table.add_column(column, overflow="fold")
    with held_warnings(Console(stderr=True)):
        turns = agent.respond_batch(DEMO_INPUTS)
    for context, turn in zip(DEMO_INPUTS, turns, strict=True):
        table.add_row(context[-1], turn.safety_label.value, "\n".join(turn.rots), turn.response)
    Console(width=160).print(table)


def main() -> None:
    from prosocial.cli.errors import sigterm_exits, stdout_closed

    with sigterm_exits():
        try:
            app()
        except BrokenPipeError:  # a command that does not route OSError through `fail`
            try:
                stdout_closed()
            except typer.Exit as stop:
                raise SystemExit(stop.exit_code) from None
