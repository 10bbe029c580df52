"""Fuzzing the service with what clients really send by mistake or on purpose: lone surrogates, NaN and
Infinity, numbers too large for a float, deep nesting and content-part arrays, spliced into otherwise valid
bodies of every route. No input may cause a 5xx, and every error must be OpenAI's JSON error shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prosocial.serve.app import create_app
from prosocial.serve.settings import ServeSettings
from tests.serve_fakes import InterventionDetector, ServerThread, fake_upstream
from tests.test_serve import _wait_ready

VALID: dict[str, dict[str, Any]] = {
    "/v1/safety": {"contexts": [["Hi!", "I hate you, idiot"]], "with_rots": True},
    "/v1/respond": {"context": ["Hi!", "How are you?"]},
    "/v1/chat/completions": {"model": "fake-echo", "messages": [{"role": "user", "content": "hello"}]},
}
#: stand-ins that json.dumps writes as raw JSON text (it cannot write them itself)
RAW = {"__nan__": "NaN", "__inf__": "-Infinity", "__big__": "1e400", "__huge_int__": "9" * 5000}

poison = st.one_of(
    st.sampled_from([*RAW, "\ud800", "ok \udfff", "x" * 20_000, "", " "]),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zs", "Lo"]), max_size=20),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.integers(1, 60).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=30)}),
             max_size=12),
)


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))


def _splice(body: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    body = json.loads(json.dumps(body))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


def _dumps(body: Any) -> bytes:
    text = json.dumps(body)  # ASCII-escaped: lone surrogates become \ud800 escapes, as a client would send them
    for stand_in, raw in RAW.items():
        text = text.replace(f'"{stand_in}"', raw)
    return text.encode()


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    route = draw(st.sampled_from(sorted(VALID)))
    body = VALID[route]
    for _ in range(draw(st.integers(1, 3))):
        body = _splice(body, draw(st.sampled_from(list(_paths(body)))), draw(poison))
    return route, _dumps(body)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    upstream_app, _ = fake_upstream()
    with ServerThread(upstream_app) as upstream:
        app = create_app(
            ServeSettings(upstream_url=f"{upstream.url}/v1", upstream_timeout=5.0, max_turns=8, max_batch=8,
                          generator="steered",
                          generator_settings={"lm": "openai", "model": "fake-echo", "prompt_style": "chat",
                                              "lm_settings": {"base_url": f"{upstream.url}/v1", "max_retries": 0}}),
            detector=InterventionDetector(),
        )
        with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=30) as client:
            _wait_ready(client)
            yield client


@given(request=requests())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error_and_every_error_is_openai_shaped(client, request):
    route, raw = request
    response = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert response.status_code < 500, (raw[:300], response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == response.status_code
        assert len(response.content) < 2000  # never the input echoed back


def test_deeply_nested_json_is_a_clean_4xx(client):
    deep = ("[" * 200_000 + "]" * 200_000).encode()  # deeper than Python's JSON parser recurses
    response = client.post("/v1/safety", content=deep, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and response.json()["error"]
