"""`prosocial respond` and `prosocial chat`: the prosocial agent (Canary + a generator + human hand-over)."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from prosocial.canary import load_detector
from prosocial.cli.batch import (
    ACTORS,
    ADDRESS,
    CORPUS_HELP,
    ENGINE,
    GPUS,
    INPUT_HELP,
    OUTPUT_FORMAT,
    OUTPUT_HELP,
    JobOptions,
    backend_spec,
    check_input_output,
    run_input,
)
from prosocial.cli.errors import fail
from prosocial.cli.logs import held_warnings
from prosocial.cli.norms import NORMS_HELP
from prosocial.data.danger import check_region
from prosocial.errors import DataError, ModelError
from prosocial.jobs.corpus import respond_rows
from prosocial.prost import load_generator
from prosocial.steer import Conversation, ProsocialAgent
from prosocial.steer.agent import AgentTurn
from prosocial.steer.steered import PROMPT_STYLES

console = Console(stderr=True)
LABEL_STYLE = {"casual": "green", "needs caution": "yellow", "needs intervention": "bold red"}

BACKEND = typer.Option("prost-mini", "--backend", "-b", help="Generator backend: prost-mini, prost, steered, …; "
                       "settings as in `eval`: NAME[:key=value,...], e.g. 'prost-mini:candidates=4'.")
MODEL = typer.Option(None, "--model", "-m", help="Generator model (Prost folder; for steered, the LM's model).")
LM = typer.Option(None, "--lm", help="With --backend steered: the LM backend (llamacpp, transformers, openai).")
PROMPT_STYLE = typer.Option("paper", "--prompt-style", help="With steered: 'paper' (P0/Pr text) or 'chat'.")
DETECTOR = typer.Option("canary-mini", "--detector", "-d", help="Detector backend from the registry; settings as "
                        "in `eval`: NAME[:key=value,...].")
DETECTOR_MODEL = typer.Option(None, "--detector-model", help="Detector model directory (default: the packaged one).")
WEBHOOK = typer.Option(None, "--webhook", help="URL to POST a JSON event to when a conversation needs a human.")
NORMS = typer.Option([], "--norms", help=NORMS_HELP)
REGION = typer.Option("international", "--region", help="Whose emergency, poison-control, abuse and crisis numbers "
                      "the hand-over names: international (\"your local emergency number\"), us, uk, eu, au, ca.")


def build_agent(
    backend: str,
    model: str | None,
    lm: str | None,
    prompt_style: str,
    detector: str,
    detector_model: Path | None,
    webhook: str | None,
    norms: list[Path],
    region: str = "international",
    unsupported_language: str = "flag",
) -> ProsocialAgent:
    """The agent from command-line choices; only settings the user gave are passed, so defaults stay the backends'.
    --backend and --detector take settings as `eval` does (NAME[:key=value,...]); the dedicated options win."""
    backend, settings = backend_spec(backend, "--backend")
    detector, detector_settings = backend_spec(detector, "--detector")
    if backend == "steered":
        if prompt_style not in PROMPT_STYLES:
            raise typer.BadParameter(f"--prompt-style must be one of {list(PROMPT_STYLES)}")
        settings |= {"prompt_style": prompt_style, **({"lm": lm} if lm else {})}
    elif lm is not None:
        raise typer.BadParameter("--lm only applies to --backend steered")
    if model is not None:
        settings["model"] = model
    generator = load_generator(backend, **settings)
    detector_settings |= {"model_dir": detector_model} if detector_model else {}
    safety = load_detector(detector, norms=norms, unsupported_language=unsupported_language, **detector_settings)
    try:
        check_region(region)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--region") from None
    return ProsocialAgent(safety, generator, escalation=webhook, region=region)


def respond(
    text: str | None = typer.Argument(None, help="The user's latest utterance."),
    context: list[str] = typer.Option([], "--context", "-c", help="An earlier utterance, oldest first; repeatable."),
    input: str | None = typer.Option(None, "--input", "-i", help=INPUT_HELP + CORPUS_HELP),
    output: str | None = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad input lines and report the count."),
    backend: str = BACKEND,
    model: str | None = MODEL,
    lm: str | None = LM,
    prompt_style: str = PROMPT_STYLE,
    detector: str = DETECTOR,
    detector_model: Path | None = DETECTOR_MODEL,
    webhook: str | None = WEBHOOK,
    region: str = REGION,
    norms: list[Path] = NORMS,
    batch_size: int = typer.Option(16, min=1, help="Contexts per batch."),
    engine: str = ENGINE,
    address: str | None = ADDRESS,
    actors: int | None = ACTORS,
    gpus_per_actor: float = GPUS,
    output_format: str = OUTPUT_FORMAT,
    as_json: bool = typer.Option(False, "--json", help="Print the whole turn (label, RoTs, hand-over) as JSON."),
) -> None:
    """Answer prosocially: judge safety, ground the reply in rules-of-thumb, hand over to a human if needed."""
    check_input_output(text, input, output, "the reply to one TEXT", "respond to")
    build = partial(build_agent, backend, model, lm, prompt_style, detector, detector_model, webhook, norms, region)
    try:
        if input is not None:
            job = JobOptions(engine, address, actors, gpus_per_actor, batch_size, output_format, skip_invalid,
                             "respond", "replies")
            run_input(input, output, partial(respond_rows, build), job, console)
            return
        with held_warnings(console):
            turn = build().respond([*context, text])
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    if as_json:
        sys.stdout.write(json.dumps(turn.to_dict(), ensure_ascii=False) + "\n")
        return
    sys.stdout.write(turn.response + "\n")
    console.print(_side(turn))


def _side(turn: AgentTurn) -> Text:
    """The judgement shown beside a reply: label, RoTs, and whether a human should take over."""
    style = LABEL_STYLE[turn.coarse.value]
    side = Text(turn.safety_label.value, style=style)
    for rot in turn.rots:
        side.append(f"\n• {rot}", style="dim")
    if turn.escalated:
        side.append("\nhanded over to a human", style="bold red")
    return side


def chat(
    backend: str = BACKEND,
    model: str | None = MODEL,
    lm: str | None = LM,
    prompt_style: str = PROMPT_STYLE,
    detector: str = DETECTOR,
    detector_model: Path | None = DETECTOR_MODEL,
    webhook: str | None = WEBHOOK,
    region: str = REGION,
    norms: list[Path] = NORMS,
) -> None:
    """Chat with the prosocial agent in the terminal; each reply shows its safety label and RoTs. /reset, /quit.

    Library warnings (e.g. a long conversation cut to what the models read) are shown once, when the chat ends.
    """
    with held_warnings(console):
        try:
            with console.status("loading the models…"):
                agent = build_agent(backend, model, lm, prompt_style, detector, detector_model, webhook, norms, region)
                agent.warm_up()
        except (ModelError, ValueError, OSError) as exc:
            fail(console, exc)
        _converse(agent, Console())


def _converse(agent: ProsocialAgent, out: Console) -> None:
    """The chat loop: read a line, answer it beside its judgement, until /quit or the end of input."""
    conversation = Conversation()
    out.print("[dim]Type a message; /reset starts over, /quit ends.[/dim]")
    while True:
        try:
            line = out.input("[bold]you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line == "/quit":
            break
        if line == "/reset":
            conversation.reset()
            out.print("[dim]conversation reset[/dim]")
            continue
        try:
            turn = agent.turn(conversation, line)
        except (ModelError, ValueError) as exc:
            out.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            continue
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        grid.add_row(Text("bot> ", style="bold cyan") + Text(turn.response), _side(turn))
        out.print(grid)
    out.print("[dim]bye[/dim]")
