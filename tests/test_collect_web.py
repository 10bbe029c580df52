"""The web app through HTTP: login, CSRF, escaping, access control, a task end to end, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prosocial.collect import pipeline
from prosocial.collect.prompts import Drafter
from prosocial.collect.sources import SituationIn
from prosocial.collect.web import create_app
from tests.collect_helpers import FEEDBACK, ScriptedLM, run_all, sqlite_factory

PASSWORD = "correct horse"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _login(client: TestClient, username: str) -> None:
    page = client.get("/login").text
    response = client.post("/login", data={"csrf": _csrf(page), "username": username, "password": PASSWORD},
                           follow_redirects=False)
    assert response.status_code == 303


@pytest.fixture
def setup(tmp_path: Path):
    factory = sqlite_factory(tmp_path / "web.db")
    pipeline.import_situations(factory, [SituationIn("telling <b>lies</b> to my boss", "socialchemistry",
                                                     ["It's wrong to lie to <i>people</i>."])])
    ids = {name: pipeline.add_user(factory, name, PASSWORD, role)
           for name, role in (("alice", "annotator"), ("bob", "annotator"), ("root", "admin"))}
    pipeline.advance(factory, Drafter(ScriptedLM()))
    return factory, ids


def test_pages_need_login_csrf_and_the_right_user(setup):
    factory, ids = setup
    client, other, admin = (TestClient(create_app(factory)) for _ in range(3))
    assert client.get("/tasks", follow_redirects=False).headers["location"] == "/login"
    page = client.get("/login")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    bad = client.post("/login", data={"csrf": "forged", "username": "alice", "password": PASSWORD})
    assert bad.status_code == 403
    wrong = client.post("/login", data={"csrf": _csrf(page.text), "username": "alice", "password": "nope"})
    assert wrong.status_code == 401
    _login(client, "alice")
    session = client.cookies.get("prosocial_session")
    assert session and "alice" not in session
    assert client.get("/admin").status_code == 403
    assert client.get("/admin/export").status_code == 403
    nocsrf = client.post("/tasks/next", data={}, follow_redirects=False)
    assert nocsrf.status_code == 403
    moved = client.post("/tasks/next", data={"csrf": _csrf(client.get("/tasks").text)}, follow_redirects=False)
    task_url = moved.headers["location"]
    page = client.get(task_url).text
    # LM and imported text is escaped, never markup
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;i&gt;people&lt;/i&gt;" in page and "0 sentences (0 characters) detected" in page
    assert "I certify that my response contains no personally identifiable information" in page
    _login(other, "bob")
    assert other.get(task_url).status_code == 404  # annotators see only their own tasks
    bob_next = other.post("/tasks/next", data={"csrf": _csrf(other.get("/tasks").text)}, follow_redirects=False)
    assert bob_next.headers["location"] == "/tasks?message=empty"  # the single-annotator task is alice's
    _login(admin, "root")
    assert "Krippendorff" in admin.get("/admin").text


def test_annotator_completes_a_task_over_http_and_admin_exports(setup):
    factory, ids = setup
    client = TestClient(create_app(factory))
    _login(client, "alice")
    location = client.post("/tasks/next", data={"csrf": _csrf(client.get("/tasks").text)},
                           follow_redirects=False).headers["location"]
    page = client.get(location).text
    short = client.post(location, data={"csrf": _csrf(page), "response": "Too short.", "rot": "0"})
    assert short.status_code == 422 and "Write at least 30 characters" in short.text
    assert 'value="0" data-max-group="rot" checked' in short.text  # the form keeps what was typed
    form = {"csrf": _csrf(page), "rot": "0", "response": FEEDBACK, "pii": "on"}
    first = client.post(location, data=form, follow_redirects=False)
    again = client.post(location, data=form, follow_redirects=False)
    assert first.headers["location"] == "/tasks?message=submitted"
    assert again.headers["location"] == "/tasks?message=duplicate"
    run_all(factory, list(ids.values()), Drafter(ScriptedLM()))
    admin = TestClient(create_app(factory))
    _login(admin, "root")
    rows = [json.loads(line) for line in admin.get("/admin/export", params={"format": "hf"}).text.splitlines()]
    assert len(rows) == 3 and rows[1]["response"] == FEEDBACK
    assert rows[0]["rots"] == ["It's wrong to lie to <i>people</i>."]
    direct = admin.get("/admin/export", params={"format": "direct"}).json()
    assert len(direct) == 1 and direct[0][1]["labels"] == [FEEDBACK]
    created = admin.post("/admin/users", data={"csrf": _csrf(admin.get("/admin").text), "username": "carol",
                                               "password": "long enough", "role": "annotator"})
    assert "created carol" in created.text
    assert pipeline.authenticate(factory, "carol", "long enough") is not None
