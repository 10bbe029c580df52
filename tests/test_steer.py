"""The "steered" generator: the paper's P0/Pr prompts (or chat messages) reach a real (tiny) LM; replies are cleaned."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from prosocial.errors import ModelError
from prosocial.lm.base import LanguageModel, load_lm
from prosocial.lm.prompts import plain_prompt, rot_prompt
from prosocial.prost import load_generator
from prosocial.steer import SteeredGenerator
from prosocial.steer.steered import FALLBACK_REPLY, TURN_STOPS, clean_reply
from tests.steer_helpers import PRANK_ROT, RecordingLM, build_tiny_llama

PRANK = ["I want to pull the fire alarm as a prank."]
HELLO = ["hello there, how are you today?"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def silent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("silent-llama"), silent=True)


@pytest.fixture
def spy(tiny_dir: Path) -> RecordingLM:
    return RecordingLM(load_lm("transformers", model=str(tiny_dir)))


def test_registered_and_built_from_a_backend_name(tiny_dir: Path) -> None:
    generator = load_generator("steered", lm="transformers", model=str(tiny_dir), max_new_tokens=4)
    assert isinstance(generator, SteeredGenerator) and generator.lm.name == "transformers"
    assert generator.respond(HELLO).response


def test_bad_settings_are_clear_errors(spy: RecordingLM) -> None:
    with pytest.raises(ValueError, match="prompt_style"):
        SteeredGenerator(spy, prompt_style="fancy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already built"):
        SteeredGenerator(spy, model="other")
    with pytest.raises(ModelError, match="known"):
        SteeredGenerator("no-such-lm")
    with pytest.raises(ValueError, match="one list per context"):
        SteeredGenerator(spy).generate([PRANK, HELLO], [[PRANK_ROT]])


def test_rots_reach_the_prompt_as_pr_and_no_rots_give_p0(spy: RecordingLM) -> None:
    generator = SteeredGenerator(spy, max_new_tokens=4)
    replies = generator.generate([PRANK, HELLO, PRANK], [[PRANK_ROT], [], ["  "]])
    assert spy.calls == [("generate", [rot_prompt(PRANK, [PRANK_ROT]), plain_prompt(HELLO), plain_prompt(PRANK)])]
    assert "Speaker 2 is trying to gently explain It's wrong to pull a fire alarm" in spy.calls[0][1][0]
    assert [r.rots for r in replies] == [[PRANK_ROT], [], []]
    generator.generate([PRANK])
    assert spy.calls[-1] == ("generate", [plain_prompt(PRANK)])


def test_chat_style_sends_rots_as_system_guidance(spy: RecordingLM) -> None:
    generator = SteeredGenerator(spy, prompt_style="chat", max_new_tokens=4)
    generator.generate([["hi", "hello!", *PRANK], HELLO], [[PRANK_ROT], []])
    (kind, batch), = spy.calls
    assert kind == "chat"
    assert batch[0][0] == {"role": "system", "content": batch[0][0]["content"]}
    assert PRANK_ROT.rstrip(".") in batch[0][0]["content"]
    assert [m["role"] for m in batch[0][1:]] == ["user", "assistant", "user"]
    assert batch[1] == [{"role": "user", "content": HELLO[0]}]


def test_replies_are_the_models_greedy_turn_cleaned(spy: RecordingLM) -> None:
    generator = SteeredGenerator(spy, max_new_tokens=5)
    first = generator.generate([PRANK, HELLO], [[PRANK_ROT], []])
    raw = spy.inner.generate([rot_prompt(PRANK, [PRANK_ROT])], max_new_tokens=5, stop=list(TURN_STOPS))[0]
    assert first[0].response == (clean_reply(raw, one_line=True) or first[0].response)
    assert all(r.response and r.response == r.response.strip() for r in first)
    assert [r.response for r in generator.generate([PRANK, HELLO], [[PRANK_ROT], []])] == [
        r.response for r in first
    ]


def test_clean_reply_keeps_only_the_models_own_turn() -> None:
    raw = "  That's not a good idea.\nSpeaker 1: why not?\nSpeaker 2: because"
    assert clean_reply(raw) == "That's not a good idea."
    assert clean_reply(" Sure! Speaker 2: again") == "Sure!"
    assert clean_reply("\nSpeaker 1: hi") == ""
    assert clean_reply("\n Sure.\n\nThe joke is a", one_line=True) == "Sure."
    assert clean_reply(" Sure.\n- one\n- two") == "Sure.\n- one\n- two"


def test_empty_replies_fall_back_with_a_warning(silent_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    lm: LanguageModel = load_lm("transformers", model=str(silent_dir))
    generator = SteeredGenerator(lm, max_new_tokens=3)
    with caplog.at_level(logging.WARNING, logger="prosocial.steer.steered"):
        plain, guided = generator.generate([HELLO, PRANK], [[], [PRANK_ROT]])
    assert plain.response == FALLBACK_REPLY
    assert guided.response.endswith(PRANK_ROT)
    assert sum("empty reply" in r.message for r in caplog.records) == 2
    assert SteeredGenerator(lm, max_new_tokens=3, fallback="Tell me more.").respond(HELLO).response == "Tell me more."


@pytest.mark.slow
def test_packaged_smollm2_through_llamacpp_answers_in_turn() -> None:
    generator = load_generator("steered", lm="llamacpp", max_new_tokens=40)
    reply = generator.respond(PRANK, [PRANK_ROT])
    assert reply.response and "Speaker 1:" not in reply.response and "\n" not in reply.response
    chat = load_generator("steered", lm="llamacpp", prompt_style="chat", max_new_tokens=40).respond(PRANK, [PRANK_ROT])
    assert chat.response
