"""Label-preserving context augmentation: so that turn count and small talk are not evidence of safety.

In the public data, flagged contexts are mostly single utterances (every DiaSafety, SBIC and ETHICS example)
while casual ones are mostly multi-turn chit-chat, so a classifier learns "more turns → casual". Three rules
break that shortcut without changing what a label means (the paper, §3: needs-intervention contexts never turn
casual; caution de-escalates only when the speaker accepts feedback):

=====================  ===========================================  ============================================
rule                   new example                                  why the label is kept
=====================  ===========================================  ============================================
``prefix_small_talk``  1–3 consecutive turns of a real casual       the judged (last) utterance is unchanged, and
                       dialogue, then the example's context         small talk neither causes nor excuses it
``trailing_filler``    the context, a neutral bot turn ("I see."),  no feedback was given, so none was accepted:
                       then a filler ("ok", "haha", "thanks")       a filler does not resolve the problem
``lone_utterance``     one utterance of a casual dialogue, alone    chit-chat stays casual out of its dialogue,
                                                                    short turns ("ok", "thanks") included
=====================  ===========================================  ============================================

Casual turns come only from the casual corpora's *train* split, so no dev dialogue leaks into training.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from prosocial.data.labels import SafetyLabel
from prosocial.data.schema import Example

#: Benign short turns a user types after anything; written for this rule, not taken from a dev split.
FILLERS: tuple[str, ...] = (
    "ok", "okay", "k", "haha", "lol", "hmm", "thanks", "thank you", "fine", "sure", "yeah", "yes", "no", "cool",
    "nice", "alright", "I see", "oh", "wow", "right", "yep", "nope", "idk", "whatever", "ok thanks", "got it",
)  # fmt: skip

#: What a bot says that is neither feedback nor agreement: the turn between a problem and a filler.
NEUTRAL_REPLIES: tuple[str, ...] = (
    "I see.", "Okay.", "Tell me more.", "Go on.", "Hmm, what happened next?", "What do you mean?",
    "How so?", "And then?", "I'm listening.", "What makes you say that?",
)  # fmt: skip

SHORT_WORDS = 3


def is_short(utterance: str, words: int = SHORT_WORDS) -> bool:
    """At most `words` words: the turns ("ok", "thanks a lot") a detector must not flag for being short."""
    return len(utterance.split()) <= words


def small_talk(casual: Sequence[Example], rng: random.Random, max_turns: int = 3) -> list[str]:
    """1–`max_turns` consecutive turns taken from one casual dialogue."""
    donor = rng.choice(casual).context
    n = rng.randint(1, min(max_turns, len(donor)))
    start = rng.randint(0, len(donor) - n)
    return donor[start : start + n]


def prefix_small_talk(example: Example, casual: Sequence[Example], rng: random.Random, max_turns: int = 3) -> Example:
    """The example after 1–`max_turns` consecutive turns taken from one casual dialogue."""
    return _variant(example, [*small_talk(casual, rng, max_turns), *example.context], "prefix_small_talk")


def trailing_filler(example: Example, rng: random.Random) -> Example:
    """The example followed by a neutral bot turn and a filler from the user."""
    return _variant(example, [*example.context, rng.choice(NEUTRAL_REPLIES), rng.choice(FILLERS)], "trailing_filler")


def lone_utterances(
    casual: Sequence[Example], count: int, rng: random.Random, short_share: float = 0.3
) -> list[Example]:
    """`count` single utterances of casual dialogues, labelled casual; `short_share` of them short turns.

    Short ones are drawn from the corpora's own short turns, with the `FILLERS` list added to that pool.
    """
    turns = sorted({u for e in casual for u in e.context})
    short = sorted({u for u in turns if is_short(u)} | set(FILLERS))
    picks = [rng.choice(short) if rng.random() < short_share else rng.choice(turns) for _ in range(count)]
    return [
        Example(context=[u], safety_label=SafetyLabel.CASUAL, source="lone_utterance", id=f"lone_utterance/{i}",
                meta={"augmented": "lone_utterance"})
        for i, u in enumerate(picks)
    ]  # fmt: skip


def augment(
    examples: Sequence[Example],
    casual: Sequence[Example],
    rng: random.Random,
    prefix_share: float = 0.4,
    filler_share: float = 0.15,
    lone_share: float = 0.12,
) -> list[Example]:
    """The examples plus augmented copies: a prefixed copy of `prefix_share` of the labelled single-utterance
    examples (flagged or not, so turn count carries no label), a trailing-filler copy of `filler_share` of the
    flagged ones, and casual lone utterances numbering `lone_share` of the examples.

    `casual` are casual-corpus examples of the same split as `examples`; casual-corpus examples themselves are
    not augmented (they are dialogues already). Without casual examples, only fillers are added.
    """
    out = list(examples)
    dialogues = {id(e) for e in casual}
    for example in examples:
        if example.safety_label is None or id(example) in dialogues:
            continue
        if casual and len(example.context) == 1 and rng.random() < prefix_share:
            out.append(prefix_small_talk(example, casual, rng))
        if not example.safety_label.is_casual and rng.random() < filler_share:
            out.append(trailing_filler(example, rng))
    if casual:
        out += lone_utterances(casual, round(lone_share * len(examples)), rng)
    return out


def _variant(example: Example, context: list[str], rule: str) -> Example:
    return replace(example, context=context, id=f"{example.id}+{rule}", meta=example.meta | {"augmented": rule})
