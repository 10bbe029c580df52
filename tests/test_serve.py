"""The HTTP service and guard proxy, run under real uvicorn against a real fake upstream on loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from prosocial.canary.baselines import KeywordDetector
from prosocial.errors import ModelError
from prosocial.prost.guard import fallback_reply
from prosocial.serve.app import create_app
from prosocial.serve.proxy import CLIENT_CREDENTIALS_REFUSED, GENERIC_ROT, UPSTREAM_REJECTIONS, strict_json_loads
from prosocial.serve.settings import ServeSettings
from prosocial.steer.agent import HANDOVER_REPLY
from tests.serve_fakes import SWEAR_ROT, InterventionDetector, ServerThread, fake_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ServerThread, dict[str, list[Any]]]]:
    app, seen = fake_upstream()
    with ServerThread(app) as server:
        yield server, seen


def _wait_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + 60  # the agent warms its reply judge before the service says it is ready
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def service(upstream) -> Iterator[tuple[httpx.Client, list[dict[str, Any]]]]:
    server, _ = upstream
    callback_events: list[dict[str, Any]] = []
    settings = ServeSettings(
        upstream_url=f"{server.url}/v1",
        upstream_timeout=1.0,
        escalation_webhook=f"{server.url}/hooks/escalation",
        generator="steered",
        generator_settings={"lm": "openai", "model": "fake-echo", "prompt_style": "chat",
                            "lm_settings": {"base_url": f"{server.url}/v1", "max_retries": 0}},
        max_turns=8,
        max_batch=4,
        max_body_bytes=20_000,
        max_upstream_bytes=100_000,
        max_upstream_event_bytes=20_000,
    )
    app = create_app(settings, detector=InterventionDetector(), on_escalation=callback_events.append)
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        _wait_ready(client)
        yield client, callback_events


def _chat(client: httpx.Client, text: str, model: str = "fake-echo", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]}
    return client.post("/v1/chat/completions", json=body | extra)


def _sse_data(text: str) -> list[Any]:
    lines = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def test_safety_judges_each_context_in_order(service):
    client, _ = service
    contexts = [["Hi!", "Hello, how are you?"], ["You are a fucking idiot"], ["I want to kill myself"]]
    response = client.post("/v1/safety", json={"contexts": contexts})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["coarse"] for r in results] == ["casual", "needs caution", "needs intervention"]
    assert results[1]["rots"] == [SWEAR_ROT]
    assert set(results[0]) == {"safety_label", "coarse", "scores", "rots", "norm", "danger", "language", "decoded",
                               "language_policy"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"contexts": []}, 422),
        ({"contexts": [["hi"]] * 5}, 422),  # over max_batch
        ({"contexts": [["hi"] * 9]}, 422),  # over max_turns
        ({"contexts": [["hi", "   "]]}, 400),  # nothing to judge
        ({"contexts": "hello"}, 422),
    ],
)
def test_safety_limits_are_clear_4xx(service, body, status):
    client, _ = service
    response = client.post("/v1/safety", json=body)
    assert response.status_code == status
    assert response.json()


def test_body_size_limit_is_413_even_when_chunked(service):
    client, _ = service
    big = {"contexts": [["x" * 30_000]]}
    assert client.post("/v1/safety", json=big).status_code == 413
    chunks = iter([json.dumps(big).encode()[i : i + 4096] for i in range(0, 31_000, 4096)])
    response = client.post("/v1/safety", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]


def test_proxy_forwards_casual_requests_unchanged(service, upstream):
    client, _ = service
    _, seen = upstream
    body = {"model": "fake-echo", "messages": [{"role": "user", "content": "What a lovely day!"}],
            "temperature": 0.3, "custom_field": {"kept": True}}
    response = client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer user-key"})
    assert response.status_code == 200
    assert seen["requests"][-1] == {"body": body, "auth": "Bearer user-key"}
    data = response.json()
    assert data["choices"][0]["message"]["content"] == "echo: What a lovely day!"
    assert data["prosocial"]["action"] == "forwarded" and data["prosocial"]["coarse"] == "casual"
    assert response.headers["x-prosocial-safety-label"] == "__casual__"


def test_proxy_injects_rots_as_system_guidance_when_caution_is_needed(service, upstream):
    client, _ = service
    _, seen = upstream
    response = _chat(client, "You are a fucking idiot")
    assert response.status_code == 200
    assert response.headers["x-prosocial-action"] == "guided"
    messages = seen["requests"][-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert messages[0]["content"] == "Be brief."  # the application's own prompt stays first
    assert "gently explain It's wrong to swear at people." in messages[1]["content"]
    assert response.json()["prosocial"]["rots"] == [SWEAR_ROT]
    assert response.json()["prosocial"]["guidance"] == [SWEAR_ROT]
    assert json.loads(response.headers["x-prosocial-rots"]) == [SWEAR_ROT]


def test_a_flagged_request_without_rots_is_still_guided(service, upstream):
    """Every needs-caution request is guided: a detector that gave no RoT gets the generic rule, and says so."""
    client, _ = service
    _, seen = upstream
    response = _chat(client, "Tell me how to get back at her (no rule)", stream=True)
    assert response.status_code == 200 and response.headers["x-prosocial-action"] == "guided"
    assert json.loads(response.headers["x-prosocial-rots"]) == [GENERIC_ROT]
    system = [m["content"] for m in seen["requests"][-1]["body"]["messages"] if m["role"] == "system"]
    assert any(GENERIC_ROT.rstrip(".") in text for text in system)


def test_plain_keyword_detector_has_no_rots_so_the_request_is_forwarded():
    """Detectors without RoTs (the keyword list) still label; there is just nothing to inject."""
    verdict = KeywordDetector().check(["shit happens"])
    assert verdict.coarse.value == "needs caution" and verdict.rots == []


def test_proxy_escalates_without_calling_the_upstream(service, upstream):
    client, callback_events = service
    _, seen = upstream
    before = len(seen["requests"])
    response = _chat(client, "I am going to kill myself tonight")
    assert response.status_code == 200
    assert len(seen["requests"]) == before
    data = response.json()
    assert data["choices"][0]["message"]["content"] == HANDOVER_REPLY
    assert data["prosocial"]["action"] == "escalated"
    assert response.headers["x-prosocial-coarse"] == "needs intervention"
    deadline = time.monotonic() + 5
    while not seen["events"] and time.monotonic() < deadline:
        time.sleep(0.02)
    event = seen["events"][-1]
    assert event["context"] == ["I am going to kill myself tonight"] and event["route"] == "/v1/chat/completions"
    assert callback_events[-1]["conversation_id"] == event["conversation_id"]


@pytest.mark.parametrize("model", ["fake-echo", "fake-keepalive"])
def test_streaming_passes_through(service, model):
    client, _ = service
    response = _chat(client, "Tell me about cats", model=model, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-prosocial-safety-label"] == "__casual__"
    events = _sse_data(response.text)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "echo: Tell me about cats"


def test_streamed_escalation_is_a_valid_event_stream(service):
    client, _ = service
    events = _sse_data(_chat(client, "i want to kill myself", stream=True).text)
    assert events[0]["choices"][0]["delta"]["content"] == HANDOVER_REPLY
    assert events[0]["prosocial"]["action"] == "escalated" and events[-1] == "[DONE]"


def _assert_no_internals(response: httpx.Response, upstream_url: str) -> None:
    """Nothing of the upstream's address or its error body reaches the client; the request id does."""
    assert upstream_url.split("//")[1] not in response.text and "Traceback" not in response.text
    assert "secret" not in response.text and "/srv/llm" not in response.text
    assert "10.1.2.3" not in response.text + str(response.headers) and "sk-live" not in response.text
    assert response.headers["x-request-id"] in response.text


@pytest.mark.parametrize("status", [400, 404, 413, 422, 429])
def test_a_rejected_request_keeps_its_status_with_a_fixed_message(service, upstream, status, caplog):
    """The upstream's own message can hold a traceback, an internal URL or a token: only the log sees it."""
    client, _ = service
    caplog.set_level(logging.INFO, logger="prosocial.serve.proxy")
    response = _chat(client, "hello there", model=f"fake-leaky:{status}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"].startswith(UPSTREAM_REJECTIONS[status]) and error["code"] == status
    _assert_no_internals(response, upstream[0].url)
    assert response.headers.get("retry-after") == ("7" if status == 429 else None)
    assert "sk-live-abc123secret" in caplog.text  # the operator can still read what the upstream said


@pytest.mark.parametrize("status", [401, 403])
def test_an_upstream_refusing_the_proxy_s_credentials_is_a_502(service, upstream, status):
    """The client is not at fault when the proxy's own upstream key (or the upstream's set-up) is wrong; when the
    client's own Authorization was passed on (no upstream_api_key), it is, and is told so, without details."""
    client, _ = service
    response = _chat(client, "hello there", model=f"fake-leaky:{status}")
    assert response.status_code == 502 and "the upstream LLM failed" in response.json()["error"]["message"]
    _assert_no_internals(response, upstream[0].url)
    body = {"model": f"fake-leaky:{status}", "messages": [{"role": "user", "content": "hello"}]}
    response = client.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer user-key"})
    assert response.status_code == status
    assert response.json()["error"]["message"].startswith(CLIENT_CREDENTIALS_REFUSED)
    _assert_no_internals(response, upstream[0].url)


def test_json_nested_past_the_stack_is_invalid_json_not_a_crash():
    with pytest.raises(ValueError, match="nested too deeply"):
        strict_json_loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_drips_is_cut_at_the_deadline(service, stream):
    """A byte every 0.2 s never trips the 1 s read timeout; the deadline (default: upstream_timeout) does."""
    client, _ = service
    started = time.monotonic()
    response = _chat(client, "hello", model="fake-drip", stream=stream)
    assert time.monotonic() - started < 5
    error = _stream_error(response) if stream else response.json()["error"]
    assert error["code"] == 504 and "did not answer in time" in error["message"]


def test_keep_alive_comments_are_no_progress(service):
    client, _ = service
    started = time.monotonic()
    response = _chat(client, "hello", model="fake-keepalive-forever", stream=True)
    assert time.monotonic() - started < 5
    assert _stream_error(response)["code"] == 504 and ": keep-alive" in response.text  # the comments were passed on


@pytest.mark.parametrize("stream", [False, True])
def test_an_endless_upstream_answer_is_cut_at_the_byte_cap(service, upstream, stream):
    """An endless body (or one endless event) is given up at max_upstream_bytes (max_upstream_event_bytes): had
    the proxy read it whole, it would still be reading."""
    client, _ = service
    response = _chat(client, "hello", model="fake-endless", stream=stream)
    error = _stream_error(response) if stream else response.json()["error"]
    assert error["code"] == 502 and "the upstream LLM failed" in error["message"]
    assert len(response.content) < 10_000  # nothing of the endless answer passed on
    _assert_no_internals(response, upstream[0].url)


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [("fake-fail", 502, "the upstream LLM failed"), ("fake-garbage", 502, "the upstream LLM failed"),
     ("fake-slow:3", 504, "did not answer in time"), ("fake-reject", 404, UPSTREAM_REJECTIONS[404]),
     ("fake-deep:5000", 502, "the upstream LLM failed")],  # deeper than Python's stack: a RecursionError once
)
def test_upstream_faults_become_json_errors(service, upstream, model, status, words):
    client, _ = service
    response = _chat(client, "hello there", model=model)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    if status >= 500:
        _assert_no_internals(response, upstream[0].url)
    assert client.get("/healthz").status_code == 200


def _stream_error(response: httpx.Response) -> dict[str, Any]:
    """The error event that ends a broken stream: well-formed JSON in OpenAI's shape, then [DONE], and nothing
    else that says done."""
    events = _sse_data(response.text)
    assert response.status_code == 200 and events[-1] == "[DONE]" and events.count("[DONE]") == 1
    error = events[-2]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_stream_faults(service, upstream):
    client, _ = service
    assert _chat(client, "hello", model="fake-fail", stream=True).status_code == 502
    assert _chat(client, "hello", model="fake-garbage", stream=True).status_code == 502
    slow = _chat(client, "one two", model="fake-slow:1.5", stream=True)  # each chunk later than the timeout
    assert "did not answer in time" in _stream_error(slow)["message"]
    for model in ("fake-truncated", "fake-nonjson"):  # cut off mid-event; a data line that is not JSON
        broken = _chat(client, "hello", model=model, stream=True)
        assert _stream_error(broken)["code"] == 502
        assert "<html>" not in broken.text and '"del' not in broken.text  # no half event, no garbage passed on
        _assert_no_internals(broken, upstream[0].url)


def _dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    return f"http://127.0.0.1:{port}"


def _settled_readyz(client: httpx.Client) -> httpx.Response:
    deadline = time.monotonic() + 10
    while (ready := client.get("/readyz")).json()["status"] == "loading" and time.monotonic() < deadline:
        time.sleep(0.05)
    return ready


def test_unreachable_upstream_is_502_and_not_ready_by_default():
    dead = _dead_url()
    app = create_app(ServeSettings(upstream_url=f"{dead}/v1"), detector=InterventionDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        response = _chat(client, "hello")
        assert response.status_code == 502 and "the upstream LLM failed" in response.json()["error"]["message"]
        _assert_no_internals(response, dead)
        ready = _settled_readyz(client)
        assert ready.status_code == 503 and ready.json()["status"] == "upstream unavailable"


def test_readyz_can_be_told_not_to_check_the_upstream():
    app = create_app(ServeSettings(upstream_url=f"{_dead_url()}/v1", ready_checks_upstream=False),
                     detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        _wait_ready(client)


def test_readyz_probes_the_upstream_once_for_many_callers(upstream):
    """/readyz needs no key: a burst of calls shares one cached probe instead of becoming a burst upstream."""
    server, seen = upstream
    app = create_app(ServeSettings(upstream_url=f"{server.url}/v1"), detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        _wait_ready(client)
        before = len(seen["models"])
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: client.get("/readyz").status_code, range(100)))
    assert statuses == [200] * 100
    assert len(seen["models"]) - before <= 2  # the cached probe, and at most one more if it expired meanwhile


def test_models_lists_the_upstream_s_or_the_configured_ones(service, upstream):
    client, _ = service
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["fake-echo"]
    app = create_app(ServeSettings(models=["guarded-llm"]), detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        assert client.get("/v1/models").json() == {
            "object": "list", "data": [{"id": "guarded-llm", "object": "model", "owned_by": "prosocial"}]}


def _post_raw(client: httpx.Client, route: str, raw: str) -> httpx.Response:
    return client.post(route, content=raw.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("route", "raw", "param"),
    [
        ("/v1/safety", '{"contexts":[["bad \\ud800"]]}', "contexts[0][0]"),
        ("/v1/respond", '{"context":["hi", "bad \\udfff"]}', "context[1]"),
        ("/v1/chat/completions", '{"model":"\\ud800","messages":[{"role":"user","content":"hi"}]}', "model"),
        ("/v1/chat/completions",
         '{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x \\ud800"}]}]}',
         "messages[0].content[0].text"),
        ("/v1/safety", '{"contexts":[["hi"]],"with_rots":NaN}', None),
        ("/v1/safety", '{"contexts":[["hi"]],"with_rots":Infinity}', None),
        ("/v1/chat/completions", '{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":-Infinity}',
         None),
        ("/v1/safety", '{"contexts":[["hi"]],"with_rots":"yes"}', "with_rots"),
        ("/v1/chat/completions", '{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":1}', "stream"),
        ("/v1/safety", '{"contexts": [["hi"]', None),
    ],
)
def test_bad_bodies_are_422_in_openai_shape_without_echo(service, route, raw, param):
    client, _ = service
    response = _post_raw(client, route, raw)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == 422 and error["param"] == param
    assert "bad " not in response.text and "x \\ud800" not in response.text  # the input is not echoed


def test_content_parts_are_limited_like_plain_content(service):
    client, _ = service
    parts = [{"type": "text", "text": "x" * 3000}] * 4  # each fits, together over the 8,000-character limit
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422 and "8000 characters" in response.json()["error"]["message"]
    body["messages"][0]["content"] = [{"type": "text", "text": "hi"}] * 50  # more parts than max_turns
    assert client.post("/v1/chat/completions", json=body).status_code == 422


def test_a_huge_invalid_body_gets_a_small_answer():
    app = create_app(ServeSettings(), detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        response = client.post("/v1/safety", json={"contexts": [["x" * 9000] * 48]})
    assert response.status_code == 422 and len(response.content) < 1000


def test_responses_carry_security_headers_and_errors_everywhere_are_json(service):
    client, _ = service
    for response in (client.get("/healthz"), client.get("/no-such-route"), client.post("/v1/safety", json={})):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]
    assert client.get("/no-such-route").json()["error"]["code"] == 404
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/healthz", headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"] != "a b\tc"


def test_respond_uses_the_agent_and_escalates(service, upstream):
    client, callback_events = service
    _, seen = upstream
    reply = client.post("/v1/respond", json={"context": ["Hi", "Hello!", "You are a fucking idiot"]}).json()
    # the fake LM echoes the user; the agent's reply guard replaces an echo by its ask-first reply with the RoT
    assert reply["response"] == fallback_reply([SWEAR_ROT], casual=False) and reply["coarse"] == "needs caution"
    assert reply["escalated"] is False and reply["rots"] == [SWEAR_ROT]
    assert "gently explain" in seen["requests"][-1]["body"]["messages"][0]["content"]  # the agent steered its LM
    reply = client.post("/v1/respond", json={"context": ["I will kill myself"]}).json()
    assert reply["escalated"] is True and reply["response"] == HANDOVER_REPLY
    assert any(e["route"] == "/v1/respond" for e in callback_events)


def test_metrics_count_requests_and_labels(service):
    client, _ = service
    client.post("/v1/safety", json={"contexts": [["hello"]]})
    text = client.get("/metrics").text
    assert 'prosocial_requests_total{method="POST",route="/v1/safety",status="200"}' in text
    assert 'prosocial_verdicts_total{route="/v1/safety",safety_label="__casual__"}' in text
    assert "prosocial_detector_batch_size_bucket" in text and "prosocial_request_seconds_bucket" in text


def test_metrics_labels_cannot_be_grown_by_clients(service):
    """Any token is a valid HTTP method and any path can be asked for: neither may become a label of its own."""
    client, _ = service
    size = len(client.get("/metrics").content)
    for i in range(10):
        client.request(f"XMETHOD{i}", "/v1/safety")
        client.request(f"XMETHOD{i}", f"/no-such-route-{i}")
    text = client.get("/metrics").text
    assert "XMETHOD" not in text and "no-such-route" not in text
    assert 'method="OTHER",route="/v1/safety",status="405"' in text
    assert 'method="OTHER",route="(unmatched)",status="404"' in text
    assert len(text) < size + 3000  # a handful of new series, not 20


def test_api_keys():
    app = create_app(ServeSettings(api_keys=["s3cret"]), detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        body = {"contexts": [["hi"]]}
        assert client.post("/v1/safety", json=body).status_code == 401
        assert _post_raw(client, "/v1/safety", "{not json").status_code == 401  # the key before the body
        assert client.get("/v1/models").status_code == 401
        assert client.post("/v1/safety", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/v1/safety", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/v1/safety", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 401  # they tell how the service is used
        assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
    app = create_app(ServeSettings(api_keys=["s3cret"], metrics_public=True), detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        assert client.get("/metrics").status_code == 200


def test_respond_without_a_generator_says_how_to_enable_it():
    app = create_app(ServeSettings(), detector=KeywordDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        _wait_ready(client)
        assert client.get("/readyz").json()["agent"] is False
        response = client.post("/v1/respond", json={"context": ["hi"]})
    assert response.status_code == 501
    assert "--generator" in response.json()["error"]["message"] and "setting `generator`" in response.text


class MissingWeightsDetector(KeywordDetector):
    def predict(self, contexts, with_rots=True):
        raise ModelError("model directory not found: /nowhere")


@pytest.mark.parametrize(
    ("settings", "detector", "words"),
    [(ServeSettings(detector="no-such-detector"), None, "no-such-detector"),
     (ServeSettings(), MissingWeightsDetector(), "/nowhere")],
)
def test_readyz_reports_a_detector_that_cannot_load(settings, detector, words):
    app = create_app(settings, detector=detector)
    with ServerThread(app) as running, httpx.Client(base_url=running.url) as client:
        deadline = time.monotonic() + 10
        while (ready := client.get("/readyz")).json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.status_code == 503 and words in ready.json()["error"]
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/safety", json={"contexts": [["hi"]]}).status_code == 503


class SlowCountingDetector(KeywordDetector):
    """Records each batch's size and takes 50 ms per call, like a real model would, so requests pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def predict(self, contexts, with_rots=True):
        self.batches.append(len(contexts))
        time.sleep(0.05)
        return super().predict(contexts, with_rots)


def test_concurrent_requests_are_micro_batched():
    detector = SlowCountingDetector()
    app = create_app(ServeSettings(batch_size=16, batch_wait_ms=20), detector=detector)
    with ServerThread(app) as running:
        with httpx.Client(base_url=running.url) as client:
            _wait_ready(client)
        statuses: list[int] = []

        def one(i: int) -> None:
            with httpx.Client(base_url=running.url, timeout=10) as client:
                statuses.append(client.post("/v1/safety", json={"contexts": [[f"message {i}"]]}).status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == [200] * 12
    assert max(detector.batches) > 1 and sum(detector.batches) == 12 + 1  # +1: the warm-up


def _cut_by_shutdown(upstream, grace: float, text: str, **chat: Any) -> httpx.Response:
    """A chat request in flight when the server is told to stop (as on SIGTERM), with `grace` seconds to finish: the
    stop comes once the upstream has the request (a fixed sleep lost the race on a busy machine)."""
    server, seen = upstream
    before = len(seen["requests"])
    app = create_app(ServeSettings(upstream_url=f"{server.url}/v1"), detector=KeywordDetector())
    running = ServerThread(app, timeout_graceful_shutdown=grace)
    result: dict[str, Any] = {}
    with running:
        def request() -> None:
            with httpx.Client(base_url=running.url, timeout=10) as client:
                result["response"] = _chat(client, text, **chat)

        thread = threading.Thread(target=request)
        thread.start()
        deadline = time.monotonic() + 20
        while len(seen["requests"]) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        running.stop()
        thread.join()
    return result["response"]


@pytest.mark.parametrize(("grace", "delay", "status"), [(10, 0.6, 200), (0.3, 3, 503)])
def test_shutdown_lets_in_flight_requests_finish_and_answers_503_after_the_grace(upstream, grace, delay, status):
    """As on SIGTERM: stop accepting, finish what is in flight; what the grace cuts off gets a JSON 503."""
    response = _cut_by_shutdown(upstream, grace, "hello", model=f"fake-slow:{delay}")
    assert response.status_code == status
    if status == 503:
        assert "shutting down" in response.json()["error"]["message"]


@pytest.mark.parametrize("grace", [10, 0.3])
def test_shutdown_ends_a_cut_stream_with_an_error_event_and_done(upstream, grace):
    """A stream already under way when the grace ends cannot become a 503: it ends with a 503 error event and
    [DONE], never silently (a client would take the cut answer for a whole one)."""
    response = _cut_by_shutdown(upstream, grace, "hi", model="fake-slow:0.4", stream=True)
    if grace == 10:  # finished within the grace
        assert _sse_data(response.text)[-1] == "[DONE]" and "error" not in response.text
    else:
        error = _stream_error(response)
        assert error["code"] == 503 and error["type"] == "service_unavailable"


def test_norms_setting_applies_user_norms_and_a_bad_file_fails_readiness(tmp_path, upstream):
    norms = tmp_path / "norms.jsonl"
    norm = {"id": "no-spoilers", "rot": "It's rude to spoil a story for people who haven't seen it.",
            "level": "caution", "examples": ["the butler did it, that's the ending", "the hero dies at the end"]}
    norms.write_text(json.dumps(norm) + "\n", encoding="utf-8")
    settings = ServeSettings(norms=[str(norms)], upstream_url=f"{upstream[0].url}/v1")
    with ServerThread(create_app(settings, detector=KeywordDetector())) as running:
        with httpx.Client(base_url=running.url) as client:
            _wait_ready(client)
            contexts = [["spoiler: the ending is that the butler did it"], ["What a lovely day!"]]
            results = client.post("/v1/safety", json={"contexts": contexts}).json()["results"]
            assert [r["norm"] for r in results] == ["no-spoilers", None]
            assert results[0]["coarse"] == "needs caution" and results[0]["rots"][0] == norm["rot"]
            _chat(client, "spoiler: the hero dies at the end")
            guidance = upstream[1]["requests"][-1]["body"]["messages"][1]["content"]
            assert "spoil a story" in guidance  # the proxy guides the upstream with the matched norm
    norms.write_text(json.dumps(norm | {"level": "severe"}) + "\n", encoding="utf-8")
    with ServerThread(create_app(settings, detector=KeywordDetector())) as running:
        with httpx.Client(base_url=running.url) as client:
            deadline = time.monotonic() + 10
            while (ready := client.get("/readyz")).json()["status"] == "loading" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ready.status_code == 503 and "unknown level" in ready.json()["error"]
            assert client.post("/v1/safety", json={"contexts": [["hi"]]}).status_code == 503


def test_settings_precedence(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('[serve]\ndetector = "keywords"\nport = 9000\nmax_turns = 5\n', encoding="utf-8")
    env = {"PROSOCIAL_PORT": "9100", "PROSOCIAL_API_KEYS": "a,b", "PROSOCIAL_DETECTOR_SETTINGS": '{"x": 1}'}
    settings = ServeSettings.load(config, env=env, port=None, max_turns=7)
    assert (settings.detector, settings.port, settings.max_turns) == ("keywords", 9100, 7)
    assert settings.api_keys == ["a", "b"] and settings.detector_settings == {"x": 1}
    json_config = tmp_path / "serve.json"
    json_config.write_text('{"upstream_timeout": 3}', encoding="utf-8")
    assert ServeSettings.load(json_config, env={}).upstream_timeout == 3
    with pytest.raises(ModelError, match="max_turns"):
        ServeSettings.load(env={"PROSOCIAL_MAX_TURNS": "zero"})
    json_config.write_text('{"no_such_key": 1}', encoding="utf-8")
    with pytest.raises(ModelError, match="no_such_key"):
        ServeSettings.load(json_config, env={})
