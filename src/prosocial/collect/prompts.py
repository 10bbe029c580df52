"""The few-shot prompts that draft dialogue openers and continuations (paper §3.2, A.2).

The LM plays two roles: the problematic speaker ("A") and, for the opener only, the inquisitive speaker
("Q") whose rephrased elaboration question invites reflective listening. Annotators later revise it all.
"""

from __future__ import annotations

import re

from prosocial.lm.base import LanguageModel

#: Situation → first-person utterance (A.2: "not getting treatment for my sick child" → "I'm not going …").
FIRST_PERSON_SHOTS = (
    ("not getting treatment for my sick child", "I'm not going to get treatment for my sick child."),
    ("hoping to spam others", "I'm hoping to spam everyone in my group chat."),
    ("telling my sister her cooking is awful", "I told my sister her cooking is awful."),
)

#: The A.2 prompt: A answers the reason behind its thoughts, Q asks with a rephrased question.
DIALOGUE_HEADER = (
    "A is a toxically biased chatbot answering the reason behind its thoughts. "
    "Q is a curious chatbot asking the reason behind thoughts.\n\n"
)
DIALOGUE_SHOTS = (
    (
        "I'm thinking of breaking up with my boyfriend with cancer",
        "Why do you want to break up with him? Is this because of his cancer?",
        "Yes, seeing him makes me also sick.",
    ),
    (
        "I'm not going to get treatment for my sick child.",
        "Why wouldn't you get treatment for your child? Don't you think they need a doctor?",
        "Doctors are a waste of money, kids get better on their own.",
    ),
)

#: Machine-generated candidate RoTs (§3.2 fn. 2) for situations that come without any.
ROT_SHOTS = (
    ("I shoved the kids into the street during traffic.", "It's wrong to put children in danger."),
    ("hoping to spam others", "It's bad to intentionally disrupt others."),
    ("I'm thinking of breaking up with my boyfriend with cancer", "You should support your partner when they are ill."),
)


def first_person_prompt(situation: str) -> str:
    shots = "".join(f"Situation: {s}\nUtterance: {u}\n\n" for s, u in FIRST_PERSON_SHOTS)
    return "Rewrite each situation as something the person says about themselves.\n\n" + shots + (
        f"Situation: {situation}\nUtterance:"
    )


def dialogue_prompt(utterances: list[str]) -> str:
    """The A/Q transcript so far, ending with the speaker whose turn is next (A at even positions, else Q)."""
    shots = "".join(f"A: {a}\nQ: {q}\nA: {c}\n\n" for a, q, c in DIALOGUE_SHOTS)
    lines = "".join(f"{'A' if i % 2 == 0 else 'Q'}: {u}\n" for i, u in enumerate(utterances))
    return DIALOGUE_HEADER + shots + lines + ("A:" if len(utterances) % 2 == 0 else "Q:")


def rot_prompt(situation: str) -> str:
    shots = "".join(f"Situation: {s}\nRule-of-thumb: {r}\n\n" for s, r in ROT_SHOTS)
    intro = "Write the social norm that applies to each situation.\n\n"
    return intro + shots + f"Situation: {situation}\nRule-of-thumb:"


def clean(text: str) -> str:
    """One line of speech: drop speaker tags the LM may echo and collapse whitespace."""
    text = re.sub(r"^\s*(?:A|Q|Utterance|Rule-of-thumb)\s*:\s*", "", text.strip())
    return " ".join(text.split())


class Drafter:
    """Batched LM calls for each drafting step; empty outputs are retried with other seeds, then left to humans."""

    def __init__(self, lm: LanguageModel, max_new_tokens: int = 48, temperature: float = 0.7, seed: int = 0,
                 retries: int = 2):
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self.retries = retries

    def _complete(self, prompts: list[str]) -> list[str]:
        out = [""] * len(prompts)
        todo = list(range(len(prompts)))
        for attempt in range(self.retries + 1):
            if not todo:
                break
            texts = self.lm.generate(
                [prompts[i] for i in todo],
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                stop=["\n"],
                seed=self.seed + attempt,
            )
            for i, text in zip(todo, texts, strict=True):
                out[i] = clean(text)
            todo = [i for i in todo if len(out[i]) < 3]
        return out

    def first_person(self, situations: list[str]) -> list[str]:
        drafts = self._complete([first_person_prompt(s) for s in situations])
        return [d or s for d, s in zip(drafts, situations, strict=True)]

    def next_utterance(self, histories: list[list[str]]) -> list[str]:
        return self._complete([dialogue_prompt(h) for h in histories])

    def rots(self, situations: list[str]) -> list[str]:
        return self._complete([rot_prompt(s) for s in situations])
