"""`prosocial collect …`: the human-AI collaborative data collection tool (paper §3, A.1–A.4)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from prosocial.cli.errors import fail

err = Console(stderr=True)
app = typer.Typer(help="Collect ProsocialDialog-style data: import, draft with an LM, annotate on the web, export.",
                  no_args_is_help=True)
DB_HELP = "Database URL: SQLite by default, e.g. postgresql://user@host/db for teams ($PROSOCIAL_COLLECT_DB)."
DB = typer.Option("sqlite:///collect.db", "--db", envvar="PROSOCIAL_COLLECT_DB", help=DB_HELP)


def _engine(url: str):
    """The database at `url` with its schema brought up to date; one that cannot be opened is a clear error."""
    from sqlalchemy.exc import OperationalError

    from prosocial.collect.db import make_engine, migrate

    engine = make_engine(url)
    try:
        migrate(engine)
    except OperationalError as error:
        fail(err, f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {error.orig}")
    return engine


def _factory(url: str):
    from prosocial.collect.db import session_factory

    return session_factory(_engine(url))


@app.command("migrate")
def migrate_cmd(db: str = DB) -> None:
    """Create or upgrade the database schema (the migrations ship with the package)."""
    from prosocial.collect.db import current_revision

    typer.echo(f"schema at revision {current_revision(_engine(db))}")


app.command("init-db", help="Alias of `migrate`.")(migrate_cmd)


@app.command("import")
def import_cmd(
    source: str = typer.Argument(..., help="file, ethics or sbic"),
    path: Path = typer.Option(None, help="CSV/JSONL of situations (source 'file'), or the data folder."),
    split: str = typer.Option("dev", help="Split of the benchmark adapters."),
    limit: int = typer.Option(None, help="Import at most this many situations."),
    rounds: int = typer.Option(2, help="Annotation rounds per dialogue (2 = six utterances, as in the paper)."),
    db: str = DB,
) -> None:
    """Import problematic situations with their candidate RoTs; each becomes a dialogue awaiting its LM draft."""
    from prosocial.collect.pipeline import import_situations
    from prosocial.collect.sources import load_source

    try:
        items = load_source(source, path, split, limit)
        added = import_situations(_factory(db), items, rounds=rounds)
    except (ValueError, FileNotFoundError) as error:
        fail(err, error)
    typer.echo(f"imported {added} new situations ({len(items) - added} already present)")


@app.command("create-user")
def create_user(
    username: str,
    role: str = typer.Option("annotator", help="annotator or admin"),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 envvar="PROSOCIAL_COLLECT_PASSWORD"),
    db: str = DB,
) -> None:
    """Create an account (the password is stored as a salted scrypt hash)."""
    from prosocial.collect.pipeline import add_user

    try:
        add_user(_factory(db), username, password, role)
    except ValueError as error:
        fail(err, error)
    typer.echo(f"created {role} {username}")


def _drafter(lm: str, model: str | None, seed: int):
    from prosocial.collect.prompts import Drafter
    from prosocial.lm.base import load_lm

    return Drafter(load_lm(lm, **({"model": model} if model else {})), seed=seed)


@app.command()
def draft(
    lm: str = typer.Option("llamacpp", help="LM backend (llamacpp = packaged SmolLM2, transformers, openai)."),
    model: str = typer.Option(None, help="Model for the backend (GGUF path, HF id/folder, or endpoint model)."),
    seed: int = 0,
    db: str = DB,
) -> None:
    """Run the LM steps now (openers and continuations) instead of waiting for the server's worker."""
    from prosocial.collect.pipeline import advance

    typer.echo(f"advanced {advance(_factory(db), _drafter(lm, model, seed))} dialogues")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (put a TLS proxy in front for the internet)."),
    port: int = 8000,
    lm: str = typer.Option("llamacpp", help="LM backend for drafts and continuations; 'none' disables the worker."),
    model: str = typer.Option(None, help="Model for the backend."),
    seed: int = 0,
    secure_cookies: bool = typer.Option(False, help="Mark cookies Secure (serve behind HTTPS)."),
    db: str = DB,
) -> None:
    """Serve the annotation web app (annotators' task pages, the admin page, export)."""
    import uvicorn

    from prosocial.collect.web import create_app

    drafter = None if lm == "none" else _drafter(lm, model, seed)
    uvicorn.run(create_app(_factory(db), drafter, secure_cookies=secure_cookies), host=host, port=port)


@app.command()
def export(
    out: Path = typer.Argument(..., help="Output file (.jsonl/.json/.parquet/.csv for hf; .json for direct)."),
    format: str = typer.Option("hf", help="hf (Hugging Face rows) or direct (direct-download format)."),
    db: str = DB,
) -> None:
    """Write the finished dialogues in a ProsocialDialog format (then: `prosocial data stats OUT`)."""
    from prosocial.collect.pipeline import export_dialogues
    from prosocial.data.formats import write_dialogues
    from prosocial.errors import DataError

    dialogues = export_dialogues(_factory(db))
    try:
        write_dialogues(dialogues, out, format=format)
    except DataError as error:
        fail(err, error)
    typer.echo(f"wrote {len(dialogues)} dialogues to {out}")


@app.command()
def progress(db: str = DB) -> None:
    """Dialogues per pipeline stage, tasks open/done, and Krippendorff's alpha of the safety votes."""
    import json
    from dataclasses import asdict

    from prosocial.collect.pipeline import progress as get_progress

    typer.echo(json.dumps(asdict(get_progress(_factory(db))), indent=2))


@app.command("run-demo")
def run_demo_cmd(
    out: Path = typer.Option(Path("runs/collect-demo"), help="Folder for the database, exports and summary."),
    situations: int = typer.Option(20, help="Situations to import (half ETHICS, half SBIC)."),
    lm: str = typer.Option("llamacpp", help="LM backend (default: the packaged SmolLM2 through llama.cpp)."),
    screenshots: Path = typer.Option(None, help="Folder for screenshots of each task page (needs Chromium)."),
) -> None:
    """The scripted end-to-end run: import → LM drafts → annotators on the web app → exported ProsocialDialog."""
    from prosocial.collect.demo import run_demo, summary_text

    result = run_demo(out, situations=situations, lm=lm, screenshots=screenshots)
    sys.stdout.write(summary_text(result) + "\n")
    typer.echo(f"now try: prosocial data stats {result.files['hf']}")
