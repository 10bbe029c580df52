"""Text as a reader sees it: undo the tricks that hide words from a detector but not from a language model.

An LLM reads "𝗸𝗶𝗹𝗹 𝗺𝘆𝘀𝗲𝗹𝗳", "ｋｉｌｌ", "k1ll mys3lf", "k i l l m y s e l f" and a line reversed behind a
right-to-left override as what they say; a WordPiece encoder sees rare symbols, digits and single letters. The
guard judges `normalize(text)` beside the original (the most severe verdict wins) and forwards the original
unchanged, so a normalisation that is wrong now and then costs a false alarm at worst, never a changed request.

What is undone, in order:
0. base64, hex and ROT13 payloads become the text they decode to (`prosocial.data.decode`); a text whose payload
   decodes to nothing readable is returned as it is (the steps below would turn its digits into letters and hide
   the payload from `prosocial.canary.language.LanguageGuard`, which gives it the unreadable-text policy);
1. a right-to-left override (U+202E) reverses the characters up to the next pop (U+202C) or line end, as a
   screen shows them;
2. invisible characters go: zero-width ones, soft hyphens, bidi controls, variation selectors;
3. NFKC folds compatibility forms: fullwidth, mathematical alphanumerics, circled and small letters, ligatures;
4. combining marks on Latin letters go ("k̶i̶l̶l̶", "ḱíll");
5. Cyrillic and Greek look-alikes inside Latin words become Latin ("kіll" with a Cyrillic і);
6. letters spaced out one by one are joined and split into words ("k i l l m y s e l f" → "kill myself");
7. common leetspeak inside words becomes letters ("k1ll", "t0night", "$uicide"), but not "10am", "mp3" or "2nd".
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import cache
from importlib.resources import files

from prosocial.data.decode import decode

_RLO, _POP = "\u202e", "\u202c"
_INVISIBLE = dict.fromkeys(
    map(
        ord,
        "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
        "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u3164\ufeff\uffa0",
    )
)
_INVISIBLE.update(dict.fromkeys(range(0xFE00, 0xFE10)))  # variation selectors
_INVISIBLE.update(dict.fromkeys(range(0xE0000, 0xE0080)))  # tag characters

#: Cyrillic and Greek letters that look like Latin ones (Unicode's confusables, the common subset)
_LOOKALIKE_FROM = "аАвВеЕєЁёкКмМнНоОрРсСтТуУхХіІїјЈѕЅԁһҺԛԝѡɑαΑβΒεΕηΗιΙκΚνΝοΟρΡτΤυΥχΧζΖ"
_LOOKALIKES = str.maketrans(_LOOKALIKE_FROM, "aABBeEeEekKmMhHoOpPcCtTyYxXiIijJsSdhHqwwaaABBeEnHiIkKvNoOpPtTuYxXzZ")
_LOOKALIKE_CHARS = frozenset(_LOOKALIKE_FROM)
_WORD = re.compile(r"\w+")

#: three or more single letters, each followed by the same separator: "k i l l", "k.i.l.l", "k-i-l-l"
_SPACED = re.compile(r"(?<![^\s\"'(])([A-Za-z])([ .\-_*])(?:[A-Za-z]\2)+[A-Za-z](?![^\s.,;:?!\"')])")
#: a run of spaced letters that continues after a wider gap ("k i l l  m y s e l f"): joined as one run
_SPACED_RUNS = re.compile(
    r"(?:(?<![^\s\"'(])[A-Za-z](?:[ .\-_*][A-Za-z])+(?![^\s.,;:?!\"')])(?: {1,3}|(?=$)|(?=[^\w ])))+"
)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i",
                       "|": "l", "€": "e"})
_LEET_TOKEN = re.compile(r"(?<![\w@$!|€])[\w@$!|€]*[A-Za-z][\w@$!|€]*(?![\w@$!|€])|(?<![\w@$!|€])[@$][\w@$!|€]+")
#: digits that are meant as digits: "10am", "2nd", "5mg", "mp3", "covid19", "4x4", "b2b"
_REAL_NUMBER = re.compile(r"\d+[a-z]{0,3}|[a-z]+\d+|\d+[a-z]\d+|[a-z]\d[a-z]", re.IGNORECASE)


def normalize(text: str) -> str:
    """The text with the tricks above undone (the same text when there were none)."""
    reading = decode(text)
    if reading.unreadable:
        return text
    text = reading.text
    text = _unreverse(text) if _RLO in text else text
    text = text.translate(_INVISIBLE)
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = _strip_latin_marks(text)
        text = _WORD.sub(_latin_lookalikes, text)
    text = _join_spaced_letters(text)
    return _LEET_TOKEN.sub(_unleet, text)


def _unreverse(text: str) -> str:
    """Each RLO…PDF (or RLO…line end) stretch in display order."""
    out, rest = [], text
    while _RLO in rest:
        before, _, after = rest.partition(_RLO)
        end = min((i for i in (after.find(_POP), after.find("\n")) if i >= 0), default=len(after))
        out += [before, after[:end][::-1]]
        rest = after[end:]
    return "".join(out) + rest


def _strip_latin_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    kept: list[str] = []
    base_is_latin = False
    for char in decomposed:
        if unicodedata.category(char) == "Mn":
            if not base_is_latin:
                kept.append(char)
            continue
        kept.append(char)
        base_is_latin = char.isascii() and char.isalpha()
    return unicodedata.normalize("NFC", "".join(kept))


def _latin_lookalikes(match: re.Match[str]) -> str:
    """A word mixing Latin letters and look-alikes is a Latin word in disguise; a wholly Cyrillic or Greek word
    stays as written (it is one)."""
    word = match.group()
    if any(c in _LOOKALIKE_CHARS for c in word) and any(c.isascii() and c.isalpha() for c in word):
        return word.translate(_LOOKALIKES)
    return word


def _join_spaced_letters(text: str) -> str:
    if not _SPACED.search(text):
        return text
    return _SPACED_RUNS.sub(_segment_run, text)


def _segment_run(match: re.Match[str]) -> str:
    run = match.group()
    letters = "".join(c for c in run if c.isalpha())
    if len(letters) < 3:
        return run
    trailing = " " if run.endswith(" ") else ""
    return " ".join(segment(letters)) + trailing


def _unleet(match: re.Match[str]) -> str:
    whole = match.group()
    if "@" in whole and re.match(r"\.[A-Za-z]", match.string[match.end():]):
        return whole  # an e-mail address
    token = whole.rstrip("!|")  # "Hello!" ends a sentence; only "!" inside a word stands for a letter
    return _unleet_token(token) + whole[len(token):]


def _unleet_token(token: str) -> str:
    plain = token.translate(_LEET)
    if token.isalpha() or not any(c.isalpha() for c in plain):
        return token
    if _REAL_NUMBER.fullmatch(token) and plain.lower() not in _common_words():
        return token  # "10am", "mp3", "covid19"; but "t0" and "hav3" are words in disguise
    return plain


@cache
def _word_costs() -> dict[str, float]:
    """-log P(word) of English words by their web frequency: the unigram counts `wordsegment` ships (Apache-2.0,
    from Google's trillion-word corpus via Peter Norvig), 333,000 words; loaded on the first spaced-out text."""
    counts: dict[str, float] = {}
    with files("wordsegment").joinpath("unigrams.txt").open(encoding="utf-8") as lines:
        for line in lines:
            word, _, count = line.partition("\t")
            counts[word] = float(count)
    total = sum(counts.values())
    return {w: math.log(total / c) for w, c in counts.items()}


@cache
def _common_words(size: int = 30_000) -> frozenset[str]:
    """The `size` most frequent words (the unigram file is in order of frequency)."""
    return frozenset(list(_word_costs())[:size])


def segment(letters: str) -> list[str]:
    """The most likely split of a run of letters into words ("killmyself" → ["kill", "myself"]): the split whose
    words are most probable together; a stretch no word covers stays one piece."""
    costs = _word_costs()
    lower = letters.lower()
    longest = 24
    best = [0.0] + [math.inf] * len(lower)
    back = [0] * (len(lower) + 1)
    for end in range(1, len(lower) + 1):
        for start in range(max(0, end - longest), end):
            piece = lower[start:end]
            known = costs.get(piece)
            cost = best[start] + (known if known is not None else _unknown(len(piece)))
            if cost < best[end]:
                best[end], back[end] = cost, start
    parts, end = [], len(lower)
    while end > 0:
        parts.append(letters[back[end]:end])
        end = back[end]
    return parts[::-1]


def _unknown(length: int) -> float:
    """The cost of a piece no word covers: rising fast with its length (Norvig's estimate)."""
    return math.log(1e12) + length * math.log(10)
