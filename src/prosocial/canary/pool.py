"""An unlabelled pool for distillation: train-split utterances no label covers, for a teacher to label.

A student learns the teacher's judgement best where the labelled data says nothing: the replies in the data. They
talk about wrongdoing without doing it (ProsocialDialog's crowdworkers name the norm; DiaSafety's chatbots answer
risky or toxic turns, some agreeing), or carry on small talk. Each becomes a context of its own, its dialogue's
earlier turns before it, so the student also sees a reply after the turn it answers:

- ProsocialDialog train rows: context + the crowdworker's reply;
- DiaSafety train: the context + the chatbot's response (blank responses skipped);
- the casual corpora's train dialogues: each reply after the turns before it (their labelled contexts end on the
  opener's turns).

Dev splits are never read; a context identical to a labelled one is left out.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from prosocial.data.schema import Example

#: the labelled sources whose replies join the pool first (the casual corpora are the caller's)
REPLY_SOURCES = ("prosocial_dialog", "diasafety")
POOL_SOURCE = "unlabelled_pool"


def _replies(examples: Iterable[Example], max_turns: int) -> Iterable[list[str]]:
    for example in examples:
        if example.response:
            yield [*example.context, example.response][-max_turns:]


def unlabelled_pool(
    root: Path | None,
    size: int,
    casual_sources: Sequence[str],
    labelled: Iterable[Example] = (),
    max_turns: int = 4,
    seed: int = 13,
) -> list[Example]:
    """Up to `size` distinct contexts ending in a reply, none equal to a `labelled` context: the replies of
    `REPLY_SOURCES` first (they are few and near the decision boundary), then a seeded sample of the casual ones
    (there are tens of thousands, and the labelled data already has plenty of small talk)."""
    from prosocial.data.adapters import load_benchmark

    seen = {"\n".join(e.context[-max_turns:]) for e in labelled}
    rng = random.Random(seed)
    pool: list[Example] = []
    for group in (REPLY_SOURCES, tuple(casual_sources)):
        contexts = []
        for name in group:
            for context in _replies(load_benchmark(name, "train", root=root), max_turns):
                key = "\n".join(context)
                if key not in seen:
                    seen.add(key)
                    contexts.append(context)
        room = max(0, size - len(pool))
        pool += [Example(c, source=POOL_SOURCE) for c in rng.sample(contexts, min(room, len(contexts)))]
    return pool
