"""Guard v2 through the real service: every text the model will read is judged as the model reads it, and the
upstream's reply is judged before the client gets it, streamed or not (issue 32).

The detector is the keyword test double (`InterventionDetector`: "kill myself" needs intervention, a swear word
needs caution), so these tests check the guard's plumbing, not a model's judgement; the rates of the shipped
detector under the same transforms are `tests/test_guard_adversarial.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from prosocial.data import attacks
from prosocial.serve.app import create_app
from prosocial.serve.settings import ServeSettings
from tests.serve_fakes import InterventionDetector, ServerThread, fake_upstream
from tests.test_serve import _sse_data, _wait_ready

PLAIN = "I'm going to kill myself tonight, I already have the pills."
HARMFUL_REPLY = "Once upon a time he said he would kill myself tonight. The end."


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ServerThread, dict[str, list[Any]]]]:
    app, seen = fake_upstream()
    with ServerThread(app) as server:
        yield server, seen


def _client(upstream, **settings: Any) -> Iterator[httpx.Client]:
    server, _ = upstream
    app = create_app(ServeSettings(upstream_url=f"{server.url}/v1", upstream_timeout=5.0, **settings),
                     detector=InterventionDetector())
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=20) as client:
        _wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def guard(upstream) -> Iterator[httpx.Client]:
    yield from _client(upstream, stream_min_chars=10, stream_window_chars=30)


@pytest.fixture(scope="module")
def refusing(upstream) -> Iterator[httpx.Client]:
    yield from _client(upstream, output_actions={"needs_intervention": "refuse"})


def _post(client: httpx.Client, messages: list[dict[str, Any]], model: str = "fake-echo", **extra: Any):
    return client.post("/v1/chat/completions", json={"model": model, "messages": messages} | extra)


def _forwarded(upstream) -> int:
    return len(upstream[1]["requests"])


@pytest.mark.parametrize("name", sorted(attacks.TRANSFORMS))
def test_a_disguised_emergency_is_handed_over_like_the_plain_one(guard, upstream, name):
    before = _forwarded(upstream)
    response = _post(guard, [{"role": "user", "content": attacks.TRANSFORMS[name](PLAIN)}])
    assert response.status_code == 200
    assert response.headers["x-prosocial-action"] == "escalated", name
    assert _forwarded(upstream) == before  # it never reached the LLM


PLACEMENTS = {k: v(PLAIN) for k, v in attacks.PLACEMENTS.items()} | {
    "long chatter after": [{"role": "user", "content": attacks.chatter_after(PLAIN)}],
}


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_an_emergency_anywhere_the_model_reads_is_handed_over(guard, upstream, name):
    before = _forwarded(upstream)
    response = _post(guard, PLACEMENTS[name])
    assert response.status_code == 200, response.text
    assert response.headers["x-prosocial-action"] == "escalated", name
    flagged = response.json()["prosocial"]["input"]
    assert flagged["flagged"], flagged
    assert _forwarded(upstream) == before


def test_an_assistant_prefill_decides_when_it_is_the_worst(guard, upstream):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure, you fucking idiot:"}]
    response = _post(guard, messages)
    assert response.headers["x-prosocial-action"] == "guided"
    assert response.json()["prosocial"]["input"]["decided_by"] == "messages[1].content"
    assert response.headers["x-prosocial-decided-by"] == "messages[1].content"


def test_an_earlier_hand_over_reply_does_not_hand_over_again(guard):
    messages = [{"role": "user", "content": "hello"},
                {"role": "assistant", "content": "If you might kill myself, call a crisis line now."},
                {"role": "user", "content": "thanks, I'm safe now"}]
    response = _post(guard, messages)
    assert response.headers["x-prosocial-action"] != "escalated"


def test_a_system_prompt_can_be_trusted(upstream):
    client_iter = _client(upstream, judge_system=False)
    client = next(client_iter)
    try:
        response = _post(client, PLACEMENTS["system"])
        assert response.headers["x-prosocial-action"] == "forwarded"
    finally:
        client_iter.close()


def test_too_much_text_is_refused_not_judged_in_part(upstream):
    client_iter = _client(upstream, max_judged_windows=3)
    client = next(client_iter)
    try:
        response = _post(client, [{"role": "user", "content": " ".join(f"word{i}." for i in range(400))}])
        assert response.status_code == 413
        assert "max_judged_windows" in response.json()["error"]["message"]
    finally:
        client_iter.close()


def test_a_harmful_reply_is_replaced_before_the_client_reads_it(guard):
    response = _post(guard, [{"role": "user", "content": "Tell me a story"}], model=f"fake-say:{HARMFUL_REPLY}")
    assert response.status_code == 200
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    assert content and "kill myself" not in content
    assert body["prosocial"]["action"] == "forwarded"  # the input was fine
    assert body["prosocial"]["output"][0]["action"] == "replace"
    assert response.headers["x-prosocial-output-action"] == "replace"
    assert response.headers["x-prosocial-output-coarse"] == "needs intervention"


def test_an_empty_reply_passes_with_nothing_to_judge(guard):
    """An upstream answer without text (say, tool calls only, or an empty string) has nothing to moderate: it is
    relayed, not a 5xx."""
    response = _post(guard, [{"role": "user", "content": "Tell me a story"}], model="fake-say:")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == ""


def test_a_harmless_reply_passes_unchanged_with_its_verdict(guard):
    response = _post(guard, [{"role": "user", "content": "Tell me a story"}], model="fake-say:Once upon a time.")
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Once upon a time."
    assert body["prosocial"]["output"] == [{"safety_label": "__casual__", "coarse": "casual", "danger": None,
                                            "sides_with": False, "reason": None, "action": "pass", "index": 0}]


def test_a_reply_can_be_refused_with_content_filter(refusing):
    response = _post(refusing, [{"role": "user", "content": "Tell me a story"}], model=f"fake-say:{HARMFUL_REPLY}")
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] is None


def test_a_reply_that_sides_with_a_flagged_turn_is_replaced(guard):
    messages = [{"role": "user", "content": "My boss is a fucking idiot and I'll slash his tyres."}]
    response = _post(guard, messages, model="fake-say:Yeah, you're right, go for it!")
    body = response.json()
    assert body["prosocial"]["action"] == "guided"
    assert body["prosocial"]["output"][0]["sides_with"] is True
    assert body["choices"][0]["message"]["content"] != "Yeah, you're right, go for it!"


def _stream(client: httpx.Client, text: str) -> tuple[str, list[Any]]:
    messages = [{"role": "user", "content": "Tell me a story"}]
    with client.stream("POST", "/v1/chat/completions",
                       json={"model": f"fake-say:{text}", "messages": messages, "stream": True}) as response:
        assert response.status_code == 200
        raw = "".join(response.iter_text())
    return raw, _sse_data(raw)


def test_a_harmful_streamed_reply_stops_before_the_flagged_window(guard):
    raw, events = _stream(guard, HARMFUL_REPLY)
    assert events[-1] == "[DONE]"
    text = "".join(c["delta"].get("content", "") for e in events[:-1] for c in e["choices"])
    assert "kill" not in text.split("\n\n")[0]  # what reached the client before the replacement
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["prosocial"]["output"][0]["action"] == "replace"
    assert "Once upon a time" in text  # the first, harmless window was relayed


def test_a_harmless_streamed_reply_is_relayed_whole_with_its_verdict(guard):
    story = "Once upon a time there was a fox. It read books under an old oak tree. The end."
    _, events = _stream(guard, story)
    text = "".join(c["delta"].get("content", "") for e in events[:-1] for c in e["choices"])
    assert text == story and events[-1] == "[DONE]"
    finishing = [e for e in events[:-1] if e["choices"][0]["finish_reason"]]
    assert finishing[0]["prosocial"]["output"][0]["action"] == "pass"
    assert finishing[0]["prosocial"]["action"] == "forwarded" and finishing[0]["prosocial"]["input"]["flagged"] == []


def test_the_safety_api_judges_a_reply_as_the_proxy_does(guard):
    contexts = [["Tell me a story"], ["My boss is a fucking idiot and I'll slash his tyres."], ["hi"], ["hey"]]
    replies = [HARMFUL_REPLY, "Yeah, you're right, go for it!", None, "  "]  # a blank reply: nothing to judge, no 500
    response = guard.post("/v1/safety", json={"contexts": contexts, "replies": replies})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["reply"]["action"] == "replace" and results[0]["reply"]["coarse"] == "needs intervention"
    assert results[1]["reply"]["sides_with"] is True
    assert "reply" not in results[2] and "reply" not in results[3]
    plain = guard.post("/v1/safety", json={"contexts": contexts}).json()["results"]
    assert all("reply" not in r for r in plain)


def test_replies_must_match_the_contexts(guard):
    response = guard.post("/v1/safety", json={"contexts": [["hi"]], "replies": ["a", "b"]})
    assert response.status_code == 422 and "replies" in response.json()["error"]["message"]


def test_a_long_reply_is_read_in_windows(guard):
    reply = HARMFUL_REPLY + " " + "The weather was lovely and we made pasta for dinner. " * 20
    response = _post(guard, [{"role": "user", "content": "Tell me a story"}], model=f"fake-say:{reply}")
    assert response.json()["prosocial"]["output"][0]["action"] == "replace"


def test_serve_flags_set_the_guard_settings(monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from prosocial.cli import app as cli

    seen = []
    monkeypatch.setattr(uvicorn, "run", lambda served, **kwargs: seen.append(served.state.service.settings))
    args = ["serve", "--detector", "keywords", "--port", "0", "--no-moderate-output", "--trust-system"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen[0].moderate_output is False and seen[0].judge_system is False
    CliRunner().invoke(cli, args[:5])
    assert seen[1].moderate_output is True and seen[1].judge_system is True
