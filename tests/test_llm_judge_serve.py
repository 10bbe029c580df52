"""`serve --judge`: the proxied LLM (or another server) as Canary-mini's second judge; a judge that is slow or down
leaves Canary-mini's verdict, counted in /metrics, never a 5xx, never a leaked address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import prosocial.canary.judged  # noqa: F401 (torch loads here, not while the test server starts)
from prosocial.errors import ModelError
from prosocial.serve.app import create_app
from prosocial.serve.settings import ServeSettings
from tests import judge_fakes
from tests.serve_fakes import ServerThread, fake_upstream
from tests.test_serve import _wait_ready

PRANK = "I want to pull the fire alarm at school as a prank."
JUDGE_ROT = "It's wrong to scare a whole school for a laugh."
SAYS = "fake-say:" + json.dumps({"label": "probably_needs_caution", "danger": "none", "rots": [JUDGE_ROT],
                                 "rationale": "A prank that endangers people."})


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ServerThread, dict[str, list[Any]]]]:
    app, seen = fake_upstream()
    with ServerThread(app) as server:
        yield server, seen


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    yield from judge_fakes.serve(judge_fakes.judge_app())


def _service(**settings: Any) -> Iterator[httpx.Client]:
    app = create_app(ServeSettings(moderate_output=False, upstream_timeout=5.0, **settings))
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=30) as client:
        _wait_ready(client)
        yield client


def _judge_count(client: httpx.Client, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'prosocial_judge_contexts_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def upstream_judged(upstream) -> Iterator[httpx.Client]:
    server, _ = upstream
    yield from _service(upstream_url=f"{server.url}/v1", judge="upstream", judge_model=SAYS)


def test_the_upstream_judges_what_canary_mini_flags(upstream_judged, upstream):
    result = upstream_judged.post("/v1/safety", json={"contexts": [[PRANK], ["What a lovely sunny day!"]]}).json()
    flagged, casual = result["results"]
    assert flagged["safety_label"] == "__probably_needs_caution__" and flagged["rots"] == [JUDGE_ROT]
    assert flagged["rationale"] == "A prank that endangers people."
    assert casual["safety_label"] == "__casual__"  # Canary-mini was sure: never sent
    judged = [r["body"] for r in upstream[1]["requests"] if r["body"].get("model") == SAYS]
    assert len(judged) == 1 and judged[0]["response_format"]["type"] == "json_schema"
    assert _judge_count(upstream_judged, "judged") == 1.0


def test_a_guided_request_carries_the_judges_rots(upstream_judged):
    response = upstream_judged.post("/v1/chat/completions", json={
        "model": "fake-echo", "messages": [{"role": "user", "content": PRANK}]})
    assert response.status_code == 200
    assert response.headers["x-prosocial-action"] == "guided"
    assert json.loads(response.headers["x-prosocial-rots"]) == [JUDGE_ROT]


@pytest.mark.parametrize("scenario", ["slow", "down"])
def test_a_slow_or_broken_judge_leaves_canary_minis_verdict(judge_url, scenario):
    for client in _service(judge=f"{judge_url}/{scenario}/v1/judge-model", judge_timeout=0.3):
        response = client.post("/v1/safety", json={"contexts": [[PRANK]]})
        assert response.status_code == 200
        (verdict,) = response.json()["results"]
        assert verdict["coarse"] != "casual" and verdict["rots"]  # flagged by Canary-mini, and it stays flagged
        assert "rationale" not in verdict and "10.0.0.7" not in response.text
        assert _judge_count(client, "fallback") == 1.0 and _judge_count(client, "judged") == 0.0


def test_judge_settings_are_checked():
    with pytest.raises(ModelError, match="judge must be 'upstream' or an http"):
        ServeSettings.load(None, env={}, judge="ftp://x")
    with pytest.raises(ModelError, match="needs upstream_url"):
        ServeSettings(judge="upstream").judge_endpoint()
    with pytest.raises(ModelError, match="judge_model"):
        ServeSettings(judge="http://localhost:8001/v1").judge_endpoint()
    assert ServeSettings(judge="http://h:8001/v1/meta-llama/Llama-Guard-3-8B", judge_api_key="k").judge_endpoint() \
        == ("http://h:8001/v1", "meta-llama/Llama-Guard-3-8B", "k")
    assert ServeSettings(judge="upstream", upstream_url="http://u/v1/", upstream_api_key="up",
                         models=["m1"]).judge_endpoint() == ("http://u/v1", "m1", "up")
    assert ServeSettings.load(None, env={"PROSOCIAL_JUDGE": "upstream", "PROSOCIAL_JUDGE_SETTINGS": '{"band": 0.1}'}
                              ).judge_settings == {"band": 0.1}
