"""Response moderation: judge what an LLM answered, in its dialogue, before anyone reads it.

Guarding only the way in leaves the model free to answer "Tell me a story" with a story of a stabbing, or a guided
drink-driving turn with "Sure, you'll be fine". Llama Guard classifies responses as well as prompts, and so does
this: a reply gets

- the paper's label, by the same detector, for the reply as the latest utterance of its dialogue;
- whether it **sides with** the user's problem (agrees with, encourages, reassures about it): the reply guard's
  rules and learned agreement judge (`prost.guard.sides_with`), the check Prost's own replies pass;

and an **action** per reason, configurable: `pass`, `replace` (with a prosocial reply grounded in the RoTs), or
`refuse` (OpenAI's `finish_reason: "content_filter"`). By default a reply that sides with a flagged turn or that
itself needs intervention is replaced, and a reply that needs caution passes: a good reply to a problem talks about
the problem ("It's wrong to drive after drinking") and is flagged at caution as often as a bad one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.context import windows
from prosocial.data.labels import Coarse
from prosocial.prost.guard import AgreementCheck, fallback_reply, judge_agreement, sides_with

Action = Literal["pass", "replace", "refuse"]
ACTIONS: tuple[str, ...] = ("pass", "replace", "refuse")
#: the reasons a reply can be acted on, most serious first, and what is done by default
DEFAULT_ACTIONS: dict[str, Action] = {"sides_with": "replace", "needs_intervention": "replace", "needs_caution": "pass"}
#: the replacement for a bad reply to a turn nobody flagged (there is no RoT to build on)
DECLINE = "Sorry, I can't continue with that. Is there something else I can help with?"


def check_actions(actions: Mapping[str, str]) -> dict[str, Action]:
    """The defaults with `actions` on top; an unknown reason or action is a clear error."""
    unknown = sorted(set(actions) - set(DEFAULT_ACTIONS))
    if unknown:
        raise ValueError(f"unknown output reason(s) {unknown}; known: {list(DEFAULT_ACTIONS)}")
    bad = {k: v for k, v in actions.items() if v not in ACTIONS}
    if bad:
        raise ValueError(f"unknown output action(s) {bad}; known: {list(ACTIONS)}")
    return DEFAULT_ACTIONS | dict(actions)  # type: ignore[arg-type]


@dataclass
class ReplyVerdict:
    """The judgement of one reply: its label, whether it sides with the user's problem, and what to do."""

    verdict: Verdict
    sides_with: bool
    reason: str | None
    action: Action

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {"safety_label": v.safety_label.value, "coarse": v.coarse.value, "danger": v.danger,
                "sides_with": self.sides_with, "reason": self.reason, "action": self.action}


class ReplyModerator:
    """Judges replies in their dialogue (see the module docstring). `judge` is the learned agreement judge
    (`prost.agreement.AgreementJudge`), None for the rules alone; `actions` maps a reason to an action."""

    def __init__(
        self, detector: SafetyDetector, judge: AgreementCheck | None = None, actions: Mapping[str, str] | None = None
    ):
        self.detector = detector
        self.judge = judge
        self.actions = actions

    def moderate(
        self, contexts: Sequence[Sequence[str]], replies: Sequence[str], flagged: Sequence[bool]
    ) -> list[ReplyVerdict]:
        """One verdict per reply; `contexts[i]` is the dialogue up to the user turn that `replies[i]` answers,
        `flagged[i]` whether that turn was flagged (then reassurance counts as siding with it)."""
        if not len(contexts) == len(replies) == len(flagged):
            raise ValueError(f"{len(contexts)} contexts, {len(replies)} replies, {len(flagged)} flags")
        if not replies:
            return []
        judged, owners = reply_contexts(contexts, replies)
        labels = worst_labels(self.detector.predict(judged, with_rots=False), owners, len(replies))
        return self.decide(contexts, replies, flagged, labels)

    def decide(
        self,
        contexts: Sequence[Sequence[str]],
        replies: Sequence[str],
        flagged: Sequence[bool],
        labels: Sequence[Verdict],
    ) -> list[ReplyVerdict]:
        """`moderate` with the detector's labels of the replies (`reply_contexts`, `worst_labels`) already given, so a
        service can get them through its micro-batcher; the agreement judge runs only for replies to flagged turns."""
        actions = check_actions(self.actions or {})
        # Siding with a turn nobody flagged is agreeing with small talk ("Pasta is the best!" "Yes, it is!").
        todo = [i for i, hit in enumerate(flagged) if hit]
        judged = dict(zip(todo, judge_agreement(self.judge, [contexts[i] for i in todo], [replies[i] for i in todo],
                                                [True] * len(todo)), strict=True))
        out = []
        for i, (context, reply, verdict) in enumerate(zip(contexts, replies, labels, strict=True)):
            siding = i in judged and bool(reply.strip()) and sides_with(context, reply, True, judged[i])
            reasons = [r for r, hit in (("sides_with", siding),
                                        ("needs_intervention", verdict.coarse is Coarse.NEEDS_INTERVENTION),
                                        ("needs_caution", verdict.coarse is Coarse.NEEDS_CAUTION)) if hit]
            acted = [r for r in reasons if actions[r] != "pass"]
            reason = (acted or reasons or [None])[0]
            out.append(ReplyVerdict(verdict, siding, reason, actions[reason] if reason else "pass"))
        return out


def reply_contexts(contexts: Sequence[Sequence[str]], replies: Sequence[str]) -> tuple[list[list[str]], list[int]]:
    """What the detector reads to label the replies: each reply's dialogue with the reply, or one window of a long
    reply (`data.context.windows`: the detector reads only its last ~96 tokens), as the latest turn; and for each
    such context the index of its reply."""
    judged: list[list[str]] = []
    owners: list[int] = []
    for i, (context, reply) in enumerate(zip(contexts, replies, strict=True)):
        for piece in windows(reply):
            judged.append([*context, piece])
            owners.append(i)
    return judged, owners


def worst_labels(found: Sequence[Verdict], owners: Sequence[int], n: int) -> list[Verdict]:
    """Each reply's most severe label over its windows (`reply_contexts`)."""
    worst: dict[int, Verdict] = {}
    for i, verdict in zip(owners, found, strict=True):
        if i not in worst or verdict.safety_label > worst[i].safety_label:
            worst[i] = verdict
    return [worst[i] for i in range(n)]


def replacement(input_verdict: Verdict) -> str:
    """The reply sent instead of one that was replaced, when no agent writes one: the input's RoT with a question
    back when the user's turn was flagged (`prost.guard.fallback_reply`), else a plain decline."""
    rots = [r for r in input_verdict.rots if r.strip()]
    if input_verdict.coarse is Coarse.CASUAL:
        return DECLINE
    return fallback_reply(rots, casual=False)
