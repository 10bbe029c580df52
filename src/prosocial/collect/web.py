"""The annotation web app: server-rendered pages that mirror the paper's task forms (Figures 7–10).

Security: scrypt password hashes, HMAC-signed session cookies (HttpOnly, SameSite=Lax), a CSRF token on
every form, Jinja2 autoescaping for all LM and user text plus a strict Content-Security-Policy, per-user
task access and an admin role for the admin pages.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from prosocial.collect import pipeline
from prosocial.collect.db import transaction
from prosocial.collect.models import Assignment, Setting, Task, User
from prosocial.collect.prompts import Drafter
from prosocial.collect.security import SessionData, Signer, new_session
from prosocial.data.formats import dialogue_to_direct, dialogue_to_rows
from prosocial.data.labels import Coarse

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "prosocial_session"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
STATIC = {"collect.js": "text/javascript", "collect.css": "text/css"}
KIND_TITLES = {
    "annotate": "Write RoT-grounded feedback",
    "proofread": "Proofread the dialogue",
    "rework": "Re-annotate a flagged dialogue",
    "validate": "Validate the dialogue",
    "label": "Judge the dialogue's safety",
}
LABEL_CHOICES = (
    (Coarse.NEEDS_CAUTION.value, "Rude / Unethical / Biased / Dangerous / Offensive / Harmful / Hurtful / Lewd / "
     "(Potentially) leading to unnecessary conflicts (but not an emergency)"),
    (Coarse.NEEDS_INTERVENTION.value, "Requiring immediate action to remedy harm or avert danger to life, health "
     "or property (i.e., emergency)"),
    (Coarse.CASUAL.value, "Nothing socially unacceptable / Casual conversation / Polite disagreements"),
)


def secret_key(factory: sessionmaker[Session]) -> str:
    """The cookie-signing key, created once and kept in the database so restarts keep everyone logged in."""
    with factory() as s:
        found = s.get(Setting, "secret_key")
        if found is not None:
            return found.value
    try:
        with transaction(factory) as s:
            s.add(Setting(key="secret_key", value=secrets.token_urlsafe(32)))
    except IntegrityError:  # another process created it first
        pass
    with factory() as s:
        return s.get(Setting, "secret_key").value


class LMWorker:
    """Runs the LM steps (drafts, continuations) in the background so submitting a form never waits on the LM."""

    def __init__(self, factory: sessionmaker[Session], drafter: Drafter, poll: float = 2.0):
        self.factory, self.drafter, self.poll = factory, drafter, poll
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="collect-lm", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                pipeline.advance(self.factory, self.drafter)
            except Exception:  # keep serving pages; the step is retried on the next poll
                log.exception("LM step failed")
            self.stop.wait(self.poll)


def create_app(
    factory: sessionmaker[Session], drafter: Drafter | None = None, poll: float = 2.0, secure_cookies: bool = False
) -> FastAPI:
    """The app over an already migrated database; with a `drafter`, a background thread runs the LM steps."""
    signer = Signer(secret_key(factory))
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    worker = LMWorker(factory, drafter, poll) if drafter is not None else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if worker is not None:
            worker.thread.start()
        yield
        if worker is not None:
            worker.stop.set()
            worker.thread.join(timeout=30)

    app = FastAPI(title="prosocial collect", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    def session_of(request: Request) -> tuple[SessionData, bool]:
        found = signer.load(request.cookies.get(COOKIE))
        return (found, False) if found is not None else (new_session(), True)

    def set_cookie(response: Response, session: SessionData) -> None:
        response.set_cookie(COOKIE, signer.dump(session), httponly=True, samesite="lax", secure=secure_cookies,
                            max_age=int(signer.max_age))

    def user_of(session: SessionData) -> User | None:
        if session.user_id is None:
            return None
        with factory() as s:
            return s.get(User, session.user_id)

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        session, fresh = session_of(request)
        context.setdefault("user", user_of(session))
        html = env.get_template(name).render(csrf=signer.csrf_token(session), **context)
        response = HTMLResponse(html, status_code=status)
        if fresh:
            set_cookie(response, session)
        return response

    async def read_form(request: Request) -> tuple[SessionData, dict[str, list[str]]] | Response:
        """The posted form, or a 403 when the CSRF token does not match the session."""
        session, _ = session_of(request)
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        if not signer.check_csrf(session, (form.get("csrf") or [""])[0]):
            return PlainTextResponse("Invalid or missing CSRF token; reload the page and try again.", 403)
        return session, form

    def redirect(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def need_user(request: Request, admin: bool = False) -> User | Response:
        user = user_of(session_of(request)[0])
        if user is None:
            return redirect("/login")
        if admin and user.role != "admin":
            return PlainTextResponse("This page needs the admin role.", 403)
        return user

    async def user_form(request: Request, admin: bool = False) -> tuple[User, dict[str, list[str]]] | Response:
        """The signed-in user and their posted form (CSRF-checked), or the response that refuses them."""
        parsed = await read_form(request)
        if isinstance(parsed, Response):
            return parsed
        user = need_user(request, admin)
        if isinstance(user, Response):
            return user
        return user, parsed[1]

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return PlainTextResponse("not found", 404)
        return Response((HERE / "static" / name).read_text(encoding="utf-8"), media_type=STATIC[name])

    @app.get("/")
    def index(request: Request) -> Response:
        user = user_of(session_of(request)[0])
        if user is None:
            return redirect("/login")
        return redirect("/admin" if user.role == "admin" else "/tasks")

    @app.get("/login")
    def login_page(request: Request) -> Response:
        return render(request, "login.html", user=None, error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        parsed = await read_form(request)
        if isinstance(parsed, Response):
            return parsed
        _, form = parsed
        username, password = (form.get("username") or [""])[0], (form.get("password") or [""])[0]
        user = await run_in_threadpool(pipeline.authenticate, factory, username, password)
        if user is None:
            return render(request, "login.html", status=401, user=None, error="Unknown username or wrong password.")
        response = redirect("/")
        set_cookie(response, new_session(user.id))
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        parsed = await read_form(request)
        if isinstance(parsed, Response):
            return parsed
        response = redirect("/login")
        set_cookie(response, new_session())
        return response

    @app.get("/tasks")
    def tasks(request: Request, message: str = "") -> Response:
        user = need_user(request)
        if isinstance(user, Response):
            return user
        with factory() as s:
            mine = s.execute(
                select(Assignment.id, Assignment.state, Task.kind, Task.dialogue_id)
                .join(Task)
                .where(Assignment.user_id == user.id)
                .order_by(Assignment.id.desc())
                .limit(50)
            ).all()
        messages = {"submitted": "Thank you — your work is saved.", "duplicate": "That task was already submitted.",
                    "empty": "No task is waiting for you right now; please check back later.",
                    "gone": "That task is no longer assigned to you."}
        return render(request, "tasks.html", mine=mine, titles=KIND_TITLES, message=messages.get(message, ""))

    @app.post("/tasks/next")
    async def next_task(request: Request) -> Response:
        got = await user_form(request)
        if isinstance(got, Response):
            return got
        user, _ = got
        assignment_id = await run_in_threadpool(pipeline.claim_next, factory, user.id)
        return redirect(f"/tasks/{assignment_id}" if assignment_id else "/tasks?message=empty")

    def task_page(request: Request, view: pipeline.TaskView, errors: list[str], form: dict, status: int = 200):
        template = "proofread.html" if view.kind == "rework" else f"{view.kind}.html"
        return render(request, template, status=status, view=view, errors=errors, form=form,
                      title=KIND_TITLES[view.kind], labels=LABEL_CHOICES, min_chars=pipeline.MIN_RESPONSE_CHARS)

    @app.get("/tasks/{assignment_id}")
    def show_task(request: Request, assignment_id: int) -> Response:
        user = need_user(request)
        if isinstance(user, Response):
            return user
        try:
            view = pipeline.task_view(factory, assignment_id, user.id)
        except pipeline.TaskGone:
            return PlainTextResponse("No such task among yours.", 404)
        return task_page(request, view, [], {})

    @app.post("/tasks/{assignment_id}")
    async def submit_task(request: Request, assignment_id: int) -> Response:
        got = await user_form(request)
        if isinstance(got, Response):
            return got
        user, form = got
        try:
            outcome = await run_in_threadpool(pipeline.submit, factory, assignment_id, user.id, form)
        except pipeline.TaskGone:
            return redirect("/tasks?message=gone")
        except pipeline.FormError as error:
            view = await run_in_threadpool(pipeline.task_view, factory, assignment_id, user.id)
            return task_page(request, view, error.errors, form, status=422)
        return redirect(f"/tasks?message={outcome}")

    @app.get("/admin")
    def admin(request: Request, message: str = "") -> Response:
        user = need_user(request, admin=True)
        if isinstance(user, Response):
            return user
        with factory() as s:
            users = s.scalars(select(User).order_by(User.id)).all()
        return render(request, "admin.html", progress=pipeline.progress(factory), users=users, message=message,
                      titles=KIND_TITLES)

    @app.post("/admin/users")
    async def create_user(request: Request) -> Response:
        got = await user_form(request, admin=True)
        if isinstance(got, Response):
            return got
        _, form = got
        fields = {k: (form.get(k) or [""])[0] for k in ("username", "password", "role")}
        try:
            await run_in_threadpool(pipeline.add_user, factory, fields["username"], fields["password"],
                                    fields["role"] or "annotator")
        except ValueError as error:
            return redirect(f"/admin?message={error}")
        return redirect(f"/admin?message=created {fields['username']}")

    @app.get("/admin/export")
    def export(request: Request, format: str = "hf") -> Response:
        """The finished dialogues, as Hugging Face rows (JSON Lines) or the direct-download JSON."""
        user = need_user(request, admin=True)
        if isinstance(user, Response):
            return user
        dialogues = pipeline.export_dialogues(factory)
        if format == "direct":
            body = json.dumps([dialogue_to_direct(d, i) for i, d in enumerate(dialogues)], ensure_ascii=False)
            name, media = "prosocial_collected.direct.json", "application/json"
        else:
            rows = [row for d in dialogues for row in dialogue_to_rows(d)]
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            name, media = "prosocial_collected.jsonl", "application/x-ndjson"
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return app
