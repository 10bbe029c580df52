"""The steering prompts must be exactly the paper's P0 / Pr (Appendix D.2)."""

from __future__ import annotations

import pytest

from prosocial.lm.prompts import chat_messages, plain_prompt, rot_prompt, rot_sentence

HEADER = "The following is a conversation between Speaker 1 and Speaker 2."
ROT = "It's wrong to pull a fire alarm when there's no fire."


def test_plain_prompt_single_turn_is_p0() -> None:
    assert plain_prompt(["I want to cause a panic by pulling the fire alarm as a prank."]) == (
        "The following is a conversation between Speaker 1 and Speaker 2.\n\n"
        "Speaker 1: I want to cause a panic by pulling the fire alarm as a prank.\n"
        "Speaker 2:"
    )


def test_a_lone_string_is_one_utterance() -> None:
    assert plain_prompt("Hi there. ") == f"{HEADER}\n\nSpeaker 1: Hi there.\nSpeaker 2:"


def test_multi_turn_context_alternates_and_ends_with_speaker_1() -> None:
    context = ["I want to cut ties with my grandma.", "Why is that?", "They cut me out of their lives."]
    assert plain_prompt(context) == (
        f"{HEADER}\n\n"
        "Speaker 1: I want to cut ties with my grandma.\n"
        "Speaker 2: Why is that?\n"
        "Speaker 1: They cut me out of their lives.\n"
        "Speaker 2:"
    )
    assert plain_prompt(["a", "b", "c", "d"], max_turns=2) == f"{HEADER}\n\nSpeaker 2: c\nSpeaker 1: d\nSpeaker 2:"


def test_rot_prompt_is_pr() -> None:
    assert rot_prompt(["I'm going to pull the fire alarm as a prank."], [ROT]) == (
        "The following is a conversation between Speaker 1 and Speaker 2. "
        "Speaker 2 is trying to gently explain It's wrong to pull a fire alarm when there's no fire.\n\n"
        "Speaker 1: I'm going to pull the fire alarm as a prank.\n"
        "Speaker 2:"
    )


def test_several_rots_read_as_consecutive_sentences() -> None:
    assert rot_sentence([ROT, "  You shouldn't cause panic ", ""]) == (
        "Speaker 2 is trying to gently explain It's wrong to pull a fire alarm when there's no fire. "
        "You shouldn't cause panic."
    )
    assert rot_sentence(["It's bad to lie", "It's good to be honest."]) == (
        "Speaker 2 is trying to gently explain It's bad to lie. It's good to be honest."
    )
    assert rot_sentence(ROT) == rot_sentence([ROT])


def test_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="context is empty"):
        plain_prompt([])
    with pytest.raises(ValueError, match="context is empty"):
        plain_prompt(["  "])
    with pytest.raises(ValueError, match="no rules-of-thumb"):
        rot_prompt(["hi"], [" "])


def test_chat_messages_map_speakers_to_roles() -> None:
    assert chat_messages(["a", "b", "c"]) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert chat_messages(["x", "y"], rots=[]) == [
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "y"},
    ]


def test_chat_messages_carry_rots_as_system_guidance() -> None:
    messages = chat_messages(["I'll pull the alarm.", "Why?", "For fun."], rots=[ROT], max_turns=1)
    assert messages == [
        {
            "role": "system",
            "content": "You are Speaker 2 in a conversation with Speaker 1 (the user). "
            "Speaker 2 is trying to gently explain It's wrong to pull a fire alarm when there's no fire.",
        },
        {"role": "user", "content": "For fun."},
    ]
