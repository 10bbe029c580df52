"""Encoded payloads read as what they say: base64, hex and ROT13 are no disguise to a language model.

"SSB3YW50IHRvIGtpbGwgbXlzZWxm" is "I want to kill myself" to any LLM that has seen base64, and a detector that
reads the letters calls it casual. `decode` finds such payloads and puts their text in their place, so the
detector judges what the LLM will read. A payload that decodes to nothing readable (bytes, or another layer the
detector cannot read) is *unreadable*: a deployment's language policy decides what happens to it
(`prosocial.canary.language`), never a verdict on its letters.

What counts as a payload:
- base64 (standard or URL-safe, padded or not): a run of at least `MIN_PAYLOAD` base64 characters with a digit,
  a "+", "/" or "=", or both upper- and lower-case letters (so "internationalization" is a word, not base64);
- hex: at least `MIN_PAYLOAD` hex digits with a digit among them, contiguous or as byte pairs split by spaces or
  colons ("49 20 77 61 6e 74");
- ROT13: a whole ASCII text with enough words to name a language (`prosocial.data.language`), few common English
  words, and a ROT13 that reads as English (`_rot13`).
A payload decodes to readable text when its bytes are UTF-8, nearly all printable, and mostly letters; decoding
repeats (base64 of hex of base64) up to `MAX_LAYERS` times.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

from prosocial.data import language

MIN_PAYLOAD = 12
MAX_LAYERS = 3
#: a payload this long that does not decode leaves its text unreadable, unless the words around it can be judged
#: (a hash inside an English sentence does not; "iPhone13ProMax" is no payload)
MIN_UNREADABLE = 20

_BASE64 = re.compile(rf"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{{{MIN_PAYLOAD},}}={{0,2}}(?![A-Za-z0-9+/=_-])")
_LINKS = re.compile(r"(https?://\S+|www\.\S+)")
_HEX = re.compile(rf"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{{2}}[ :]?){{{MIN_PAYLOAD // 2},}}(?![0-9A-Fa-f])")


@dataclass(frozen=True)
class Reading:
    """A text as it is judged: its payloads decoded (`encodings` names them, in the order they were undone), or
    `unreadable` when its payloads decode to nothing a reader could read."""

    text: str
    encodings: tuple[str, ...] = ()
    unreadable: bool = False


def _looks_base64(token: str) -> bool:
    return (any(c.isdigit() or c in "+/=" for c in token)
            or (any(c.isupper() for c in token) and any(c.islower() for c in token)))


def _readable(data: bytes) -> str | None:
    """The bytes as text when they read as text: UTF-8, nearly all printable, mostly letters."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return None
    printable = sum(c.isprintable() for c in visible) / len(visible)
    letters = sum(c.isalpha() for c in visible) / len(visible)
    return text.strip() if printable >= 0.95 and letters >= 0.5 else None


def _from_base64(token: str) -> str | None:
    if not _looks_base64(token):
        return None
    body = token.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        data = (base64.urlsafe_b64decode(padded) if ("-" in body or "_" in body)
                else base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        return None
    return _readable(data)


def _from_hex(token: str) -> str | None:
    digits = re.sub(r"[ :]", "", token)
    if len(digits) % 2 or not any(c.isdigit() for c in digits):
        return None
    try:
        return _readable(bytes.fromhex(digits))
    except ValueError:
        return None


def _one_layer(text: str) -> tuple[str, list[str], list[str]]:
    """The text with each base64 and hex payload it holds decoded (links left alone), the encodings undone, and
    the payloads of at least `MIN_UNREADABLE` characters that did not decode."""
    undone: list[str] = []
    failed: list[str] = []

    def sub(pattern: re.Pattern[str], decoder, name: str, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            token = match.group(0)
            decoded = decoder(token.strip(" :"))
            if decoded is None:
                if len(token.strip(" :")) >= MIN_UNREADABLE and (pattern is _HEX or _looks_base64(token)):
                    failed.append(token)
                return token
            undone.append(name)
            return decoded + (" " if token.endswith((" ", ":")) else "")

        return pattern.sub(one, text)

    pieces = []
    for i, piece in enumerate(_LINKS.split(text)):  # odd pieces are links: their paths are no payloads
        pieces.append(piece if i % 2 else sub(_BASE64, _from_base64, "base64", sub(_HEX, _from_hex, "hex", piece)))
    return "".join(pieces), undone, failed


def decode(text: str) -> Reading:
    """`text` with its payloads decoded (see the module docstring); the same text when it holds none. It is
    unreadable when a payload did not decode and what is left around it is too little to judge."""
    encodings: list[str] = []
    current = text
    for _ in range(MAX_LAYERS):
        if not (_BASE64.search(current) or _HEX.search(current)):
            break
        current, undone, failed = _one_layer(current)
        encodings += undone
        if failed:
            rest = current
            for token in failed:
                rest = rest.replace(token, " ")
            if not language.evidence(rest)[1]:
                return Reading(current, tuple(encodings), unreadable=True)
        if not undone:
            break
    rot = _rot13(current)
    if rot is not None:
        current, encodings = rot, [*encodings, "rot13"]
    return Reading(current, tuple(encodings))


def _rot13(text: str) -> str | None:
    """The ROT13 of a text when that reads as English and the text does not: the turned text is identified as
    English and holds more common English words than the text (at least `ENGLISH_WORD_SHARE` of its words, or
    the identifier is at least half sure). fastText alone calls some ROT13 gibberish English, so the text's own
    English words decide whether to try."""
    if not text.isascii():  # ROT13 turns ASCII letters only
        return None
    words, enough = language.evidence(text)
    share = language.english_share(words)
    if not enough or share >= language.ENGLISH_WORD_SHARE:
        return None
    turned = codecs.encode(" ".join(words), "rot13")
    turned_share = language.english_share(turned.split())
    if turned_share <= share:  # the cheap test first: most text is no ROT13, and its turn has no English words
        return None
    guess = language.identify(turned)
    if guess.code == "en" and (turned_share >= language.ENGLISH_WORD_SHARE or guess.confidence >= 0.5):
        return codecs.encode(text, "rot13")
    return None
