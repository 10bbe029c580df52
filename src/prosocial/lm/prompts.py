"""The paper's prompts for steering a pre-trained LM with Canary's rules-of-thumb (§6.2, Appendix D.2).

Appendix D.2, verbatim: "To obtain vanilla outputs from a PLM, we construct a basic prompt P0 with
dialogue context c as follows: “The following is a conversation between Speaker 1 and Speaker 2. \\n\\n
Speaker 1: {c} \\n Speaker 2:”. [...] To obtain outputs from a PLM equipped with Canary, we first sample
relevant RoTs r from Canary, given dialogue context c. We then construct prompt Pr with r and c as follows:
“The following is a conversation between Speaker 1 and Speaker 2. Speaker 2 is trying to gently explain
{r}. \\n\\n Speaker 1: {c} \\n Speaker 2:”"

Appendix C gives the multi-turn form: "The following is a conversation between Speaker 1 and Speaker 2.
\\n\\n {input context} \\n Speaker 2:". So a context is rendered one utterance per line with alternating
"Speaker 1:" / "Speaker 2:" tags, the last line being Speaker 1's; a single utterance gives exactly
"Speaker 1: {c}". The spaces around "\\n" in the paper are typesetting: the strings here have none.

The paper does not say how several RoTs fill {r}. Canary emits them as one text, sentence after sentence,
so they are joined with spaces, and the last one's final period is left to the template's own ".".
"""

from __future__ import annotations

from collections.abc import Sequence

from prosocial.data.context import USER_TAG, build_context, speaker_of
from prosocial.lm.base import Message

HEADER = "The following is a conversation between Speaker 1 and Speaker 2."
RESPONSE_TAG = "Speaker 2:"
#: The line of the paper's "RoT & Response" format (§4.2) that states the rule before the reply; Prost-mini writes
#: it, Canary-mini's RoT writer completes it.
RULE_TAG = "Rule of thumb:"
CHAT_ROLE = "You are Speaker 2 in a conversation with Speaker 1 (the user)."


def _utterances(context: str | Sequence[str]) -> list[str]:
    """A lone string is one utterance (not a sequence of characters); an empty context is a caller bug."""
    utterances = [context] if isinstance(context, str) else list(context)
    if not utterances or not any(u.strip() for u in utterances):
        raise ValueError("the dialogue context is empty: at least Speaker 1's last utterance is needed")
    return utterances


def dialogue_prompt(context: Sequence[str], max_turns: int = 3) -> str:
    """P0's header and dialogue (the last `max_turns` utterances), ending in a newline: Speaker 2's turn comes next."""
    return f"{HEADER}\n\n{build_context(list(context), max_turns=max_turns)}\n"


def rot_sentence(rots: str | Sequence[str]) -> str:
    """The Pr guidance sentence: "Speaker 2 is trying to gently explain {r}."."""
    items = [r.strip() for r in ([rots] if isinstance(rots, str) else rots) if r.strip()]
    if not items:
        raise ValueError("no rules-of-thumb to explain: use plain_prompt() for an unguided prompt")
    sentences = [r if r[-1] in ".!?" else r + "." for r in items[:-1]] + [items[-1].rstrip(". ")]
    return f"Speaker 2 is trying to gently explain {' '.join(sentences)}."


def plain_prompt(context: str | Sequence[str], max_turns: int | None = None) -> str:
    """P0: the vanilla dialogue prompt, ending in "Speaker 2:" for the LM to continue."""
    return f"{HEADER}\n\n{build_context(_utterances(context), max_turns=max_turns)}\n{RESPONSE_TAG}"


def rot_prompt(context: str | Sequence[str], rots: str | Sequence[str], max_turns: int | None = None) -> str:
    """Pr: P0 with the RoT guidance sentence right after the header sentence."""
    body = build_context(_utterances(context), max_turns=max_turns)
    return f"{HEADER} {rot_sentence(rots)}\n\n{body}\n{RESPONSE_TAG}"


def chat_messages(
    context: str | Sequence[str], rots: str | Sequence[str] | None = None, max_turns: int | None = None
) -> list[Message]:
    """The same prompt for instruction-tuned models: the dialogue as user/assistant turns.

    Speaker 1 is the user and Speaker 2 the assistant (the model). With RoTs, a system message carries the
    Pr guidance; without, there is no system message, mirroring the unguided P0.
    """
    utterances = _utterances(context)
    kept = utterances[-max_turns:] if max_turns else utterances
    n = len(kept)
    messages: list[Message] = []
    if rots is not None and (isinstance(rots, str) or len(rots)):
        messages.append({"role": "system", "content": f"{CHAT_ROLE} {rot_sentence(rots)}"})
    for i, utterance in enumerate(kept):
        role = "user" if speaker_of(n - 1 - i) == USER_TAG else "assistant"
        messages.append({"role": role, "content": utterance.strip()})
    return messages
