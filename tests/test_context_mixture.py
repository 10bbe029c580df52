from collections import Counter

import pytest

from prosocial.data import CANARY_WEIGHTS, MixtureSampler, build_context


def test_build_context_tags_speakers_counting_back_from_the_user():
    history = ["hi", "hello, how are you?", "I want to pull the fire alarm."]
    assert build_context(history) == (
        "Speaker 1: hi\nSpeaker 2: hello, how are you?\nSpeaker 1: I want to pull the fire alarm."
    )
    assert build_context(history, max_turns=2) == (
        "Speaker 2: hello, how are you?\nSpeaker 1: I want to pull the fire alarm."
    )
    assert build_context(history, speaker_tags=False, separator=" | ") == (
        "hi | hello, how are you? | I want to pull the fire alarm."
    )


def test_mixture_follows_weights_and_is_deterministic():
    sources = {
        "prosocial": list(range(100)),
        "dailydialog": ["a", "b"],
        "empathetic": ["c"],
        "blended_skill_talk": ["d"],
    }
    first = MixtureSampler(sources, CANARY_WEIGHTS, seed=3).sample(7000)
    again = MixtureSampler(sources, CANARY_WEIGHTS, seed=3).sample(7000)
    other = MixtureSampler(sources, CANARY_WEIGHTS, seed=4).sample(7000)
    assert first == again and first != other
    counts = Counter(name for name, _ in first)
    assert abs(counts["prosocial"] / 7000 - 4 / 7) < 0.02
    assert abs(counts["empathetic"] / 7000 - 1 / 7) < 0.02


def test_mixture_walks_a_source_whole_before_repeating():
    draws = [item for _, item in MixtureSampler({"a": list(range(10))}, {"a": 1}, seed=0).sample(10)]
    assert sorted(draws) == list(range(10))


def test_mixture_rejects_sources_without_weights():
    with pytest.raises(ValueError, match="no mixture weight for source"):
        MixtureSampler({"mystery": [1]}, CANARY_WEIGHTS)
