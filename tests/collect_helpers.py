"""Shared pieces of the collection tests: a scripted LM, databases (SQLite, a throwaway PostgreSQL), answers."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prosocial.collect import pipeline
from prosocial.collect.db import make_engine, migrate, session_factory
from prosocial.lm.base import LanguageModel


class ScriptedLM(LanguageModel):
    """A test double of the LM interface: deterministic drafts that name the prompt's last line (and carry HTML)."""

    def generate(self, prompts, max_new_tokens=64, temperature=0.0, top_p=1.0, stop=None, seed=None):
        out = []
        for prompt in prompts:
            last = prompt.rstrip().splitlines()[-1]
            if last.startswith("Q:"):
                out.append(" Why would you do that? <script>alert(1)</script>")
            elif last.startswith("A:"):
                out.append(" Because I feel like it & nobody can stop me.")
            elif last.startswith("Rule-of-thumb"):
                out.append(" It's wrong to hurt others.")
            else:
                out.append(" I'm going to " + prompt.rstrip().splitlines()[-2].removeprefix("Situation: ") + ".")
        return out

    def chat(self, messages_batch, **settings):
        raise NotImplementedError


FEEDBACK = "I hear you, but it's kind to think of others. Wouldn't you feel better if you treated them well?"


def answer_for(view: pipeline.TaskView, flag: bool = False) -> dict[str, list[str]]:
    """A valid scripted answer for any task kind; `flag` makes a validator report the first feedback as harsh."""
    last = view.utterances[-1]
    if view.kind == "annotate":
        return {"rot": ["0"], "response": [FEEDBACK], "pii": ["on"], "previous_implied": ["on"]}
    if view.kind in ("proofread", "rework"):
        return {f"u{last.position}": [last.text + " Honestly."]}
    if view.kind == "validate":
        return {"flag_harsh": ["3"], "comment": ["too harsh"]} if flag else {"comment": [""]}
    vote = "needs intervention" if view.dialogue_id % 5 == 0 and view.turn == 0 else "needs caution"
    return {"label": [vote if view.turn < 2 else "casual"], "reason": ["The speaker wants to hurt someone."]}


def run_all(factory, users: list[int], drafter, flag_dialogues: frozenset[int] = frozenset()) -> int:
    """Let the users work until no task is left; returns how many tasks were submitted."""
    submitted = 0
    while True:
        pipeline.advance(factory, drafter)
        progressed = False
        for user in users:
            assignment = pipeline.claim_next(factory, user)
            if assignment is None:
                continue
            view = pipeline.task_view(factory, assignment, user)
            flag = view.kind == "validate" and view.round == 1 and view.dialogue_id in flag_dialogues
            assert pipeline.submit(factory, assignment, user, answer_for(view, flag)) == "submitted"
            submitted += 1
            progressed = True
        if not progressed:
            return submitted


def sqlite_factory(path: Path):
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return session_factory(engine)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bindir() -> Path | None:
    """Folder with initdb/pg_ctl: PATH first (CI), then Debian's versioned folders."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    return Path(folders[-1]) if folders and Path(folders[-1], "initdb").exists() else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL on loopback, in a temp dir, yielding its URL; run as `postgres` when we are root."""
    bindir = postgres_bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="collect-pg-"))
    data = root / "data"
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(root, "postgres")
        root.chmod(0o700)

    def run(*args: str) -> None:
        command = [str(bindir / args[0]), *args[1:]]
        if as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    port = _free_port()
    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    run("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=50", "start")
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
