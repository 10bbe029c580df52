"""`prosocial.data.normalize`: the tricks that hide words from a detector are undone; ordinary text is left alone."""

import pytest

from prosocial.data.normalize import normalize, segment

PLAIN = "I'm going to kill myself tonight, I already have the pills."


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if 33 <= ord(c) <= 126 else "\u3000" if c == " " else c for c in text)


def sans_bold(text: str) -> str:
    def one(c: str) -> str:
        if c.islower() and c.isascii():
            return chr(0x1D5EE + ord(c) - ord("a"))
        if c.isupper() and c.isascii():
            return chr(0x1D5D4 + ord(c) - ord("A"))
        return c

    return "".join(map(one, text))


def spaced(text: str) -> str:
    return " ".join(c for c in text if c != " ")


TRANSFORMS = {
    "fullwidth": fullwidth,
    "sans-serif bold": sans_bold,
    "rtl override": lambda t: "\u202e" + t[::-1],
    "zero-width": lambda t: "\u200b".join(t),
    "soft hyphens": lambda t: t.replace("ll", "l\u00adl"),
    "combining marks": lambda t: "".join(c + "\u0336" if c.isalpha() else c for c in t),
    "cyrillic look-alikes": lambda t: t.replace("o", "о").replace("e", "е").replace("a", "а"),
    "leetspeak": lambda t: t.replace("i", "1").replace("e", "3").replace("o", "0"),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_trick_is_undone(name):
    assert normalize(TRANSFORMS[name](PLAIN)) == PLAIN


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
