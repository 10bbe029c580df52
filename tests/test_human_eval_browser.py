"""End to end in a real browser: a rater works through tasks with the keyboard and Table 4 moves accordingly.

Playwright drives Debian's Chromium (installed by `.ci/run`); without it the test is skipped, saying why.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from prosocial.eval.human_eval.aggregate import aggregate
from prosocial.eval.human_eval.store import Store
from prosocial.eval.human_eval.tasks import DIMENSIONS, build_tasks, read_outputs

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (`.ci/run` installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    from prosocial.eval.human_eval.app import create_app

    for name, word in (("a", "kind"), ("b", "rude")):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": str(i), "context": [f"Speaker one says <{i}>"], "response": f"{word} reply {i}"}) + "\n"
            for i in range(3)))
    store = Store(tmp_path / "study.sqlite")
    tasks = build_tasks(read_outputs(tmp_path / "a.jsonl"), read_outputs(tmp_path / "b.jsonl"), seed=2)
    store.create(tasks, "Kind", "Rude", raters_per_item=1)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(store.path), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        if time.monotonic() > deadline:
            pytest.fail("the rater app did not start within 15 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    uv.should_exit = True
    thread.join(timeout=10)


def test_a_rater_completes_tasks_with_the_keyboard(server):
    from playwright.sync_api import sync_playwright

    url, store = server
    assert aggregate(store.judgments(), bootstrap=0)["overall"] == {"judgments": 0, "items": 0}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.fill("input[name=rater]", "ada")
            page.keyboard.press("Enter")
            for _ in range(3):
                page.wait_for_selector("#left")
                assert "<" in page.inner_text(".turn")  # the context's "<i>" arrives as text, not markup
                kind_on_left = "kind" in page.inner_text("#left")
                key = "1" if kind_on_left else "3"  # always prefer the kind reply, by keyboard only
                for _ in DIMENSIONS:
                    page.keyboard.press(key)
                with page.expect_navigation():
                    page.keyboard.press("Enter")
            page.wait_for_selector("#done")
        finally:
            browser.close()
    result = aggregate(store.judgments(), bootstrap=0)
    assert all(result[d]["share"] == {"a": 100.0, "tie": 0.0, "b": 0.0} for d in DIMENSIONS)
    assert {j.rater for j in store.judgments()} == {"ada"} and result["overall"]["items"] == 3
