"""Flatten a dialogue history into model input: the one function every model uses."""

from __future__ import annotations

import re
from collections.abc import Sequence

USER_TAG = "Speaker 1:"
BOT_TAG = "Speaker 2:"
#: The most characters of one context a batch job passes on: far more than the packaged models read (Canary-mini
#: 96 tokens, Prost-mini 1,600 characters, both from the end), yet it bounds what one oversized input line costs.
MAX_CONTEXT_CHARS = 100_000
#: the most words of a judged window of a long text (the detector reads about 96 tokens; fewer words dilute less)
WINDOW_WORDS = 32
#: the most sentences in one window
WINDOW_SENTENCES = 3
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")


def speaker_of(position_from_end: int) -> str:
    """The last utterance is always the user's (Speaker 1); speakers alternate going back."""
    return USER_TAG if position_from_end % 2 == 0 else BOT_TAG


def build_context(
    utterances: Sequence[str],
    max_turns: int | None = None,
    speaker_tags: bool = True,
    separator: str = "\n",
) -> str:
    """Join the last `max_turns` utterances (all when None), oldest first.

    With `speaker_tags`, each line is prefixed "Speaker 1:" / "Speaker 2:" as in the paper's prompts, counting
    back from the last utterance, which is Speaker 1's (the user's).
    """
    kept = list(utterances)[-max_turns:] if max_turns else list(utterances)
    if not speaker_tags:
        return separator.join(u.strip() for u in kept)
    n = len(kept)
    return separator.join(f"{speaker_of(n - 1 - i)} {u.strip()}" for i, u in enumerate(kept))


def check_context(context: object, where: str = "context") -> list[str]:
    """Validate one dialogue context (utterances, oldest first) and return it as a list of stripped strings.

    Every model entry point calls this, so an empty context or a non-string turn fails with the same message.
    """
    if isinstance(context, str) or not isinstance(context, Sequence):
        raise ValueError(f"{where}: expected a list of utterances (oldest first), got {type(context).__name__}")
    if not context:
        raise ValueError(f"{where}: the context is empty; give at least one utterance")
    for i, utterance in enumerate(context):
        if not isinstance(utterance, str):
            raise ValueError(f"{where}[{i}]: expected a string, got {type(utterance).__name__}")
    if not context[-1].strip():
        raise ValueError(f"{where}[{len(context) - 1}]: the last utterance (the one judged) is empty")
    return [u.strip() for u in context]


def clip_context(turns: Sequence[str], max_chars: int, per_turn: int = 0) -> list[str]:
    """The newest turns that fit in `max_chars` (each costing its length plus `per_turn`), the last one cut to its
    end if it alone is longer: models read the newest words, so that is what an oversized context keeps."""
    kept: list[str] = []
    total = 0
    for turn in reversed(turns):
        total += len(turn) + per_turn
        if kept and total > max_chars:
            break
        kept.append(turn)
    kept.reverse()
    kept[-1] = kept[-1][-max_chars:]
    return kept


def windows(text: str, size: int = WINDOW_WORDS, span: int = WINDOW_SENTENCES) -> list[str]:
    """A text longer than `size` words as every run of 1 to `span` consecutive sentences that fits in `size` words
    (a longer sentence is cut into pieces of `size`), and every sentence longer than `size` / 2 words also in
    overlapping pieces of `size` / 2: a harmful sentence is read without the harmless text around it, one that
    needs its neighbours is read with them, and text without full stops is still read in small pieces. A shorter
    text is its own window."""
    if len(text.split()) <= size:
        return [text]
    sentences: list[list[str]] = []
    for sentence in _SENTENCE.split(text):
        words = sentence.split()
        sentences += [words[i:i + size] for i in range(0, len(words), size)]
    out = []
    for start in range(len(sentences)):
        window: list[str] = []
        for sentence in sentences[start:start + span]:
            if window and len(window) + len(sentence) > size:
                break
            window += sentence
            out.append(" ".join(window))
    short = size // 2  # a long stretch without a full stop ("… for like 6 minutes Anyway, the weather …")
    for sentence in sentences:
        out += [" ".join(sentence[i:i + short]) for i in range(0, len(sentence) - short + 1, short // 2)]
    return list(dict.fromkeys(out))
