"""`prosocial.data.normalize`: the tricks that hide words from a detector are undone; ordinary text is left alone."""

import pytest

from prosocial.data import attacks
from prosocial.data.normalize import normalize, segment

PLAIN = "I'm going to kill myself tonight, I already have the pills."


#: the tricks the normaliser undoes exactly ("chatter after" hides by length; the guard's windows undo it)
TRANSFORMS = {k: v for k, v in attacks.TRANSFORMS.items() if k != "chatter after"}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_trick_is_undone(name):
    seen = normalize(TRANSFORMS[name](PLAIN))
    if name == "spaced letters":  # the words come back; spaced-out punctuation stays spaced ("I ' m")
        assert "going to kill myself tonight" in seen and seen.replace(" ", "") == PLAIN.replace(" ", "")
    else:
        assert seen == PLAIN


def test_spaced_letters_are_joined_into_words():
    assert normalize("I'm going to k i l l m y s e l f tonight") == "I'm going to kill myself tonight"
    assert normalize("k-i-l-l m-e") == "kill me"
    assert segment("howtomakeabomb") == ["how", "to", "make", "a", "bomb"]
    assert segment("therapist") == ["therapist"]


@pytest.mark.parametrize("text", [
    "Meet me at 10am on the 2nd; bring 5mg, the mp3 player and my 4x4 keys.",
    "Hello! How are you?? I have 2 cats and 1 dog.",
    "I have a PhD and an MBA, it's 3:30 now.",
    "Привет, как дела? Γειά σου κόσμε.",
    "what's 2+2? Email me at jo@example.com",
])
def test_ordinary_text_is_left_alone(text):
    assert normalize(text) == text


def test_accents_go_only_on_latin_letters():
    assert normalize("héllo café") == "hello cafe"
    assert normalize("नमस्ते दुनिया") == "नमस्ते दुनिया"  # Devanagari vowel signs are letters, not decoration
