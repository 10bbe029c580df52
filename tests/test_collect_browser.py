"""A real headless Chromium: an annotator completes every task type and the export contains the result."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from prosocial.collect import pipeline
from prosocial.collect.demo import CHROMIUM, CHROMIUM_ARGS, _free_port
from prosocial.collect.prompts import Drafter
from prosocial.collect.sources import SituationIn
from tests.collect_helpers import ScriptedLM, answer_for, sqlite_factory

PASSWORD = "correct horse"
TYPED = "I know it's tempting, but honesty builds trust. Wouldn't you rather your boss could rely on you?"


@pytest.fixture
def server(tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")
    import uvicorn

    from prosocial.collect.web import create_app

    factory = sqlite_factory(tmp_path / "browser.db")
    pipeline.import_situations(factory, [SituationIn("lying to my boss", "socialchemistry",
                                                     ["It's wrong to lie.", "You should be honest at work."])],
                               rounds=1)
    users = {n: pipeline.add_user(factory, n, PASSWORD, r) for n, r in
             (("ann", "annotator"), ("v2", "annotator"), ("v3", "annotator"), ("boss", "admin"))}
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(factory, Drafter(ScriptedLM()), poll=0.1), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", factory, users
    srv.should_exit = True
    thread.join(timeout=10)


def _others(factory, users: dict[str, int], names: tuple[str, ...], flag: bool = False) -> None:
    for name in names:
        a = pipeline.claim_next(factory, users[name])
        pipeline.submit(factory, a, users[name], answer_for(pipeline.task_view(factory, a, users[name]), flag=flag))


def test_an_annotator_does_every_task_type_in_chromium(server, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    base, factory, users = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(base + "/login")
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")

        def next_task(kind_text: str) -> None:
            for _ in range(100):  # the LM worker may still be drafting
                page.goto(base + "/tasks")
                page.click("#next-task")
                if "/tasks/" in page.url and "message" not in page.url:
                    break
                time.sleep(0.1)
            page.wait_for_selector(f"h1:has-text('{kind_text}')")

        next_task("Gently guide")  # Figure 7
        page.check("input[name=rot][value='0']")
        page.check("input[name=rot][value='1']")
        page.fill("textarea[name=response]", TYPED)
        assert page.inner_text("#response-counter") == f"2 sentences ({len(TYPED)} characters) detected"
        page.click("button:has-text('Submit')")
        assert "Certify" in page.inner_text(".errors")  # the PII box is required
        page.check("input[name=pii]")
        page.click("button:has-text('Submit')")
        page.wait_for_url("**/tasks?message=submitted")

        next_task("Make the dialogue more coherent")  # Figure 8
        page.fill("textarea[name=u1]", "Are you serious? Why would you lie to your boss?")
        page.click("button:has-text('Submit')")
        page.wait_for_url("**/tasks?message=submitted")

        next_task("Validate")  # §3.2 validation; a second validator reports the feedback as harsh
        page.click("button:has-text('Submit')")
        page.wait_for_url("**/tasks?message=submitted")
        _others(factory, users, ("v2",), flag=True)
        _others(factory, users, ("v3",))

        next_task("Make the dialogue more coherent")  # re-annotation of the flagged dialogue
        assert "flagged: harsh" in page.inner_text(".dialogue")
        page.fill("textarea[name=u3]", TYPED + " I believe in you.")
        page.click("button:has-text('Submit')")
        page.wait_for_url("**/tasks?message=submitted")
        _others(factory, users, ("v2", "v3", "boss"))  # second validation round passes

        next_task("Make a judgment")  # Figures 9-10
        page.check("input[name=label][value='needs caution']")
        page.fill("input[name=reason]", "Lying to the boss breaks trust at work.")
        page.click("button:has-text('Submit')")
        page.wait_for_url("**/tasks?message=submitted")
        _others(factory, users, ("v2", "v3"))  # turn 0 done
        for name in ("ann", "v2", "v3"):
            _others(factory, users, (name,))  # turn 1
        assert pipeline.progress(factory).dialogues["done"] == 1

        page.click("button:has-text('Log out')")
        page.fill("input[name=username]", "boss")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#label-alpha")
        with page.expect_download() as download:
            page.click("#export-hf")
        rows = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
        browser.close()
    assert rows[1]["response"] == TYPED + " I believe in you."
    assert rows[0]["context"] and rows[0]["response"] == "Are you serious? Why would you lie to your boss?"
    assert rows[0]["rots"] == ["It's wrong to lie.", "You should be honest at work."]
    assert "Lying to the boss breaks trust at work." in rows[0]["safety_annotation_reasons"]
    assert rows[1]["episode_done"] and len(rows) == 2
