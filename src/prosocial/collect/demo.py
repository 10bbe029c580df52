"""The scripted end-to-end run: situations → LM drafts → scripted annotators over HTTP → ProsocialDialog files.

Everything goes through the real server (login, CSRF, task queue, forms); the annotators are scripted, and a
headless Chromium takes a screenshot of the first page of each task type for the docs.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from prosocial.collect import pipeline
from prosocial.collect.db import make_engine, migrate, session_factory
from prosocial.collect.prompts import Drafter
from prosocial.collect.sources import ethics_situations, interleave, sbic_situations
from prosocial.data.formats import read_dialogues
from prosocial.data.stats import dialogue_stats
from prosocial.io import write_json

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pick(*parts: object) -> int:
    """A stable pseudo-random number from the parts, so the scripted annotators behave the same every run."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def _clause(rot: str) -> str:
    rot = rot.strip().rstrip(".")
    return rot[:1].lower() + rot[1:]


def scripted_answer(view: pipeline.TaskView, user: str) -> dict[str, list[str]]:
    """What a diligent annotator would enter on each page, written from the same view the page shows."""
    texts = {u.position: u.text for u in view.utterances}
    if view.kind == "annotate":
        if view.round > 1 and view.previous_rots:
            rot = view.previous_rots[0]
            reply = f"I still believe {_clause(rot)}. Wouldn't the people around you be happier if you tried?"
            return {"previous_implied": ["on"], "response": [reply], "pii": ["on"]}
        if view.candidates:
            reply = f"I can see why you feel that way, but {_clause(view.candidates[0])}. How about trying to see it " \
                    "from the other person's side?"
            return {"rot": ["0"], "response": [reply], "pii": ["on"]}
        reply = "I can see why you feel that way, but it's wrong to hurt others. Could you try to be kinder?"
        return {"new_rot_on": ["on"], "new_rot": ["It's wrong to hurt others."], "response": [reply], "pii": ["on"]}
    if view.kind == "proofread":
        if view.round == 1:
            question = texts[1] or "Why would you do that?"
            return {"u1": [question if question.startswith("Are you serious") else f"Are you serious? {question}"]}
        last = texts[4] or "I don't see why I should change."
        return {"u4": [last if last.startswith("Honestly") else f"Honestly, {last[:1].lower()}{last[1:]}"]}
    if view.kind == "rework":
        flagged = [u for u in view.utterances if u.flags] or view.utterances[-1:]
        soften = "I know this is hard to hear, but "
        return {f"u{u.position}": [soften + u.text[:1].lower() + u.text[1:]] for u in flagged}
    if view.kind == "validate":
        if view.round == 1 and view.dialogue_id % 4 == 0 and user == "annotator1":
            return {"flag_harsh": ["3"], "comment": ["The feedback sounds a bit accusatory."]}
        return {"comment": [""]}
    roll = _pick(view.dialogue_id, view.turn, user) % 10
    if view.turn == 0 and roll == 0:
        return {"label": ["needs intervention"], "reason": ["This could put someone in real danger."]}
    if roll < 2 + 3 * view.turn:
        return {"label": ["casual"], "reason": ["The speaker is being reasonable here."]}
    return {"label": ["needs caution"], "reason": ["The speaker shows disregard for other people."]}


class Annotator:
    """One logged-in browser-less annotator session against the server."""

    def __init__(self, base: str, username: str, password: str):
        self.username = username
        self.client = httpx.Client(base_url=base, follow_redirects=False, timeout=120)
        page = self.client.get("/login").text
        response = self.client.post("/login", data={"csrf": _csrf(page), "username": username, "password": password})
        if response.status_code != 303:
            raise RuntimeError(f"login failed for {username}: {response.status_code}")

    def csrf(self) -> str:
        return _csrf(self.client.get("/tasks").text)

    def next_task(self) -> int | None:
        response = self.client.post("/tasks/next", data={"csrf": self.csrf()})
        match = re.search(r"/tasks/(\d+)$", response.headers.get("location", ""))
        return int(match.group(1)) if match else None

    def submit(self, assignment: int, answer: dict[str, list[str]]) -> str:
        page = self.client.get(f"/tasks/{assignment}").text
        response = self.client.post(f"/tasks/{assignment}", data={"csrf": _csrf(page), **answer})
        if response.status_code != 303:
            raise RuntimeError(f"submission rejected ({response.status_code}): {response.text[:500]}")
        return response.headers["location"]


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    if match is None:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


@dataclass
class DemoResult:
    dialogues: int
    tasks_submitted: int
    seconds: float
    lm_seconds_per_dialogue: float
    label_alpha: float | None
    files: dict[str, str]
    screenshots: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def run_demo(out: Path, situations: int = 20, lm: str = "llamacpp", screenshots: Path | None = None,
             annotators: int = 4, timeout: float = 1800.0, lm_settings: dict[str, Any] | None = None) -> DemoResult:
    """Import `situations` (half ETHICS, half SBIC), collect them to the end, export both formats to `out`."""
    import uvicorn

    from prosocial.collect.web import create_app
    from prosocial.lm.base import load_lm

    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    db = out / "collect.db"
    for stale in out.glob("collect.db*"):
        stale.unlink()
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    factory = session_factory(engine)
    half = situations // 2
    pipeline.import_situations(
        factory, interleave(ethics_situations(limit=situations - half), sbic_situations(limit=half))
    )
    pipeline.add_user(factory, "admin", "admin-password", "admin")
    users = [(f"annotator{i}", f"password-{i}-demo") for i in range(1, annotators + 1)]
    for name, password in users:
        pipeline.add_user(factory, name, password)
    drafter = Drafter(load_lm(lm, **(lm_settings or {})), seed=0)
    lm_started = time.time()
    pipeline.advance(factory, drafter)  # openers first, so the LM time per dialogue is measured on its own
    lm_seconds = time.time() - lm_started

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(factory, drafter, poll=0.3), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    shots: list[str] = []
    try:
        workers = [Annotator(base, name, password) for name, password in users]
        shooter = _Shooter(base, screenshots) if screenshots else None
        submitted = 0
        while pipeline.progress(factory).dialogues["done"] < situations:
            if time.time() - started > timeout:
                raise TimeoutError(f"demo did not finish within {timeout:.0f} s")
            progressed = False
            for worker in workers:
                assignment = worker.next_task()
                if assignment is None:
                    continue
                user_id = _user_id(factory, worker.username)
                view = pipeline.task_view(factory, assignment, user_id)
                if shooter is not None:
                    shooter.task(worker, view)
                worker.submit(assignment, scripted_answer(view, worker.username))
                submitted += 1
                progressed = True
            if not progressed:
                time.sleep(0.3)  # waiting for the LM worker's continuations
        admin = Annotator(base, "admin", "admin-password")
        files = {}
        for fmt, name in (("hf", "prosocial_collected.jsonl"), ("direct", "prosocial_collected.direct.json")):
            body = admin.client.get("/admin/export", params={"format": fmt}).content
            (out / name).write_bytes(body)
            files[fmt] = str(out / name)
        if shooter is not None:
            shooter.page(admin, "/admin", "admin.png")
            shooter.page(workers[0], "/tasks", "tasks.png")
            shots = shooter.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    dialogues = read_dialogues(files["hf"], format="hf")
    stats = dialogue_stats(dialogues, name="collected").to_dict()
    result = DemoResult(
        dialogues=len(dialogues),
        tasks_submitted=submitted,
        seconds=round(time.time() - started, 1),
        lm_seconds_per_dialogue=round(lm_seconds / max(1, situations), 2),
        label_alpha=pipeline.progress(factory).label_alpha,
        files=files,
        screenshots=shots,
        stats=stats,
    )
    write_json(out / "summary.json", result.__dict__)
    return result


def _user_id(factory, username: str) -> int:
    from sqlalchemy import select

    from prosocial.collect.models import User

    with factory() as s:
        return s.scalar(select(User.id).where(User.username == username))


class _Shooter:
    """Headless Chromium sharing an annotator's session cookie; one full-page screenshot per task type."""

    def __init__(self, base: str, folder: Path):
        from playwright.sync_api import sync_playwright

        self.base, self.folder = base, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.taken: list[str] = []
        self.kinds: set[str] = set()

    def page(self, who: Annotator, path: str, name: str) -> None:
        context = self.browser.new_context(viewport={"width": 1100, "height": 900})
        cookies = [{"name": c.name, "value": c.value, "url": self.base} for c in who.client.cookies.jar]
        context.add_cookies(cookies)
        page = context.new_page()
        page.goto(self.base + path)
        page.screenshot(path=str(self.folder / name), full_page=True)
        context.close()
        self.taken.append(str(self.folder / name))

    def task(self, who: Annotator, view: pipeline.TaskView) -> None:
        kind = f"{view.kind}-round{view.round}" if view.kind == "annotate" else view.kind
        if kind in self.kinds or (view.kind == "annotate" and view.round == 1 and not view.candidates):
            return
        self.kinds.add(kind)
        self.page(who, f"/tasks/{view.assignment_id}", f"{kind}.png")

    def close(self) -> list[str]:
        self.browser.close()
        self.playwright.stop()
        return self.taken


def summary_text(result: DemoResult) -> str:
    return json.dumps({k: v for k, v in result.__dict__.items() if k != "stats"}, indent=2)
