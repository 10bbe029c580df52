"""The prosocial agent: Canary judges each turn, a generator answers, and emergencies go to a human.

Paper §2.3: contexts that *need intervention* (medical issues, imminent danger, self-harm) call for a real
human (e.g. 911), not a chatbot reply. So on such a turn the agent never asks the LM; it notifies the
escalation handlers (callbacks, webhooks) and answers with a fixed hand-over text pointing to emergency
help. §3 also observes that needs-intervention situations do not de-escalate, so a conversation stays in
hand-over mode until it is explicitly reset (e.g. by the human who took over).

Every generated reply passes `prost.guard.ReplyGuard` (on by default): it must not be empty, loop, echo or agree
with what the user said (the guard's rules and the learned agreement judge, `prost.agreement`: the rules alone let
7% of Prost-mini v3's replies to problematic turns through that the judge calls agreeing), and on a casual turn it
must not question the user's motive; a failing reply is repaired, resampled, or replaced by a reply stating
Canary's RoT and asking back. On a turn flagged "probably" or "needs caution" the reply then states or builds on the
verdict's RoT (`STATE_RULE`): a bare "Why would you …?" misreads the turn as often as not. A turn counts as casual
for the guard only when the detector is sure of it (`SURE_CASUAL`): Canary-mini calls many problematic turns casual
at lower scores (v2, shipped when this was measured, on 200 problematic ProsocialDialog contexts: 140 casual verdicts,
median casual score 0.80; "I think I'll drive home after these eight beers." at 0.89; v4 still 0.88), and there
asking back is the right move.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.canary.language import UNSUPPORTED_REPLY
from prosocial.data.context import check_context
from prosocial.data.danger import ACTS, check_region, handover_for, warning_reply
from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.prost.agreement import AgreementJudge
from prosocial.prost.base import Reply, ResponseGenerator
from prosocial.prost.guard import ReplyGuard, Route, build_on_rule

log = logging.getLogger(__name__)

#: The casual score from which a casual verdict is trusted by the reply guard (see the module docstring).
SURE_CASUAL = 0.9
#: Levels whose reply must state or build on the verdict's first RoT (`prost.guard.build_on_rule`): asking back
#: ("Why would you …?") alone suits only "possibly needs caution"; the paper's replies to the rest give feedback.
STATE_RULE = frozenset({SafetyLabel.PROBABLY_NEEDS_CAUTION, SafetyLabel.NEEDS_CAUTION})
#: The hand-over for a verdict without a danger category, in the international wording (`data.danger`).
HANDOVER_REPLY = handover_for(None)


@dataclass
class EscalationEvent:
    """What a human on call is told when a conversation needs intervention."""

    conversation_id: str
    context: list[str]
    verdict: Verdict
    time: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "context": list(self.context),
            "verdict": self.verdict.to_dict(),
            "time": self.time,
        }


EscalationHandler = Callable[[EscalationEvent], Any]


class WebhookEscalation:
    """POST the event as JSON to `url`; a non-2xx answer or a timeout raises (the agent logs it)."""

    def __init__(self, url: str, timeout: float = 5.0, headers: dict[str, str] | None = None):
        self.url = url
        self.timeout = timeout
        self.headers = dict(headers or {})

    def __call__(self, event: EscalationEvent) -> None:
        response = httpx.post(self.url, json=event.to_dict(), headers=self.headers, timeout=self.timeout)
        response.raise_for_status()

    def __repr__(self) -> str:
        return f"WebhookEscalation({self.url!r})"


@dataclass
class AgentTurn:
    """One agent answer: the reply, the turn's safety judgement, the RoTs used, and the hand-over state."""

    response: str
    safety_label: SafetyLabel
    rots: list[str]
    escalated: bool
    #: the user norm that decided the verdict, if one did
    norm: str | None = None
    #: how the reply guard got the reply ("accepted", "repaired", "resampled", "fallback"); "warning" for the
    #: warning to a danger at caution level; None when the turn was handed over or the agent runs unguarded. Not in
    #: `to_dict`: the API's fields stay as they are.
    guard: Route | str | None = None
    #: the danger category of the verdict (`prosocial.data.danger`), if any: it chose the hand-over or warning
    danger: str | None = None

    @property
    def coarse(self) -> Coarse:
        return self.safety_label.coarse

    def to_dict(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "safety_label": self.safety_label.value,
            "coarse": self.coarse.value,
            "rots": list(self.rots),
            "escalated": self.escalated,
            "norm": self.norm,
            "danger": self.danger,
        }


@dataclass
class Conversation:
    """A dialogue with the agent: utterances (user and agent alternating), one verdict per user turn."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    history: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    escalated: bool = False

    def reset(self) -> None:
        """Start over (e.g. once a human has taken care of the situation): empty history, no hand-over."""
        self.history.clear()
        self.verdicts.clear()
        self.escalated = False


class ProsocialAgent:
    """Detector + generator + escalation, per turn or in batches.

    `escalation` is a handler, a webhook URL, or a sequence of them; handlers run once, on the turn a
    conversation enters hand-over mode. A failing handler is logged and skipped: the user still gets the
    hand-over reply. `guard` checks every generated reply (True: a `ReplyGuard` with the shipped agreement judge,
    whose encoder loads on the first reply; False: none); its `stats` count how often each check and each path
    fired. A generator whose `feedback_gate` names the detector's backend (Prost-mini's "canary-mini") is given
    the detector itself, so one copy serves both.

    The hand-over reply fits the verdict's danger category (poison control for a poisoning, a domestic-violence
    line for abuse, a crisis line for self-harm) with the contacts of `region` (`prosocial.data.danger`); a
    `handover` text replaces them all. A dangerous act (caution level) gets a warning with one safer step instead
    of a generated reply, which may ask "Why would you …?" or approve. An emergency category read below the
    hand-over threshold ("I'm going to poison the neighbour's dog") gets a generated reply: the category's
    emergency script would misfire there.
    """

    def __init__(
        self,
        detector: SafetyDetector,
        generator: ResponseGenerator,
        escalation: EscalationHandler | str | Sequence[EscalationHandler | str] | None = None,
        handover: str | None = None,
        webhook_timeout: float = 5.0,
        guard: ReplyGuard | bool = True,
        region: str = "international",
    ):
        self.detector = detector
        self.generator = generator
        self.handover = handover
        self.region = check_region(region)
        if escalation is None:
            items: Sequence[EscalationHandler | str] = []
        elif isinstance(escalation, str) or callable(escalation):
            items = [escalation]
        else:
            items = escalation
        self.handlers: list[EscalationHandler] = [
            WebhookEscalation(h, timeout=webhook_timeout) if isinstance(h, str) else h for h in items
        ]
        self.guard = ReplyGuard(judge=AgreementJudge.load()) if guard is True else guard or None
        if getattr(generator, "feedback_gate", None) == detector.name:  # Prost-mini's gate names this detector:
            generator.feedback_gate = detector  # share it instead of loading a second copy on the first feedback turn

    def warm_up(self, generator: bool = True, detector: bool = True) -> None:
        """Load the models now, not on the first message (they load on first use): for interactive sessions and
        services. `generator=False` leaves the generator alone (a remote LM need not be up yet); `detector=False`
        the detector (a service warms it first)."""
        if detector:
            self.detector.warm_up()
        if generator:
            self.generator.generate([["hello"]])
        if self.guard is not None and self.guard.judge is not None:
            self.guard.judge.agrees(["hello"], ["hi"])

    def respond(self, context: Sequence[str], conversation_id: str | None = None) -> AgentTurn:
        """One stateless context (utterances, oldest first; the last is the user's)."""
        return self.respond_batch([context], None if conversation_id is None else [conversation_id])[0]

    def respond_batch(
        self,
        contexts: Sequence[Sequence[str]],
        conversation_ids: Sequence[str] | None = None,
        on_reply: Callable[[int], None] | None = None,
    ) -> list[AgentTurn]:
        """Many stateless contexts: one detector call and at most one generator call for the whole batch.

        `on_reply(i)`, when given, is called once per context as soon as its turn is decided, so a batch job's
        progress can move per row: hand-overs and warnings right after the detector's call, generated replies as
        the reply guard accepts them (`ReplyGuard.generate`). A generator answers its whole batch in one call
        (llama.cpp decodes the batch's prompts in one request over its slots, and splitting the batch would change
        its replies: `batch_invariant`), so the replies it generates are reported together when it returns; only
        the reporting is per row, the replies are the same with or without `on_reply`.
        """
        checked = [check_context(c, where=f"contexts[{i}]") for i, c in enumerate(contexts)]
        ids = list(conversation_ids) if conversation_ids is not None else [uuid.uuid4().hex for _ in checked]
        if len(ids) != len(checked):
            raise ValueError(f"{len(ids)} conversation ids for {len(checked)} contexts")
        turns, _ = self._run(checked, ids, [False] * len(checked), on_reply)
        return turns

    def turn(self, conversation: Conversation, user_text: str) -> AgentTurn:
        """The user says `user_text`; judge it in context, answer, and record both in `conversation`."""
        context = check_context([*conversation.history, user_text])
        turns, verdicts = self._run([context], [conversation.id], [conversation.escalated])
        result = turns[0]
        conversation.history += [context[-1], result.response]
        conversation.verdicts.append(verdicts[0])
        conversation.escalated = result.escalated
        return result

    def _run(
        self, contexts: list[list[str]], ids: list[str], escalated: list[bool],
        on_reply: Callable[[int], None] | None = None,
    ) -> tuple[list[AgentTurn], list[Verdict]]:
        report = on_reply or (lambda i: None)
        verdicts = self.detector.predict(contexts)
        handover = [was or v.coarse is Coarse.NEEDS_INTERVENTION for was, v in zip(escalated, verdicts, strict=True)]
        for context, cid, verdict, was, now in zip(contexts, ids, verdicts, escalated, handover, strict=True):
            if now and not was:
                self._escalate(EscalationEvent(cid, context, verdict, datetime.now(UTC).isoformat()))
        warned = {i: warning_reply(v.danger) for i, v in enumerate(verdicts)
                  if not handover[i] and v.danger in ACTS and v.coarse is Coarse.NEEDS_CAUTION}
        # text the models cannot read: no reply written from a verdict on words nobody understood
        warned |= {i: UNSUPPORTED_REPLY for i, v in enumerate(verdicts)
                   if not handover[i] and v.language_policy == "flag"}
        todo = [i for i, h in enumerate(handover) if not h and i not in warned]
        for i in (i for i, h in enumerate(handover) if h or i in warned):  # hand-overs and warnings are decided
            report(i)
        replies: dict[int, tuple[Reply, Route | None]] = {}
        if todo:
            grounding = [[] if verdicts[i].safety_label.is_casual else verdicts[i].rots for i in todo]
            chosen = [contexts[i] for i in todo]
            if self.guard is None:
                generated = self.generator.generate(chosen, grounding if any(grounding) else None)
                replies = {i: (r, None) for i, r in zip(todo, generated, strict=True)}
                for i in todo:
                    report(i)
            else:
                casual = [self._sure_casual(verdicts[i]) for i in todo]
                flagged = [not verdicts[i].safety_label.is_casual for i in todo]
                guarded = self.guard.generate(self.generator, chosen, grounding, casual, flagged,
                                              on_reply=lambda k: report(todo[k]))
                replies = {i: (g.reply, g.path) for i, g in zip(todo, guarded, strict=True)}
        turns = []
        for i, verdict in enumerate(verdicts):
            if handover[i]:
                turns.append(AgentTurn(self.handover or handover_for(verdict.danger, self.region),
                                       verdict.safety_label, list(verdict.rots), True, verdict.norm,
                                       danger=verdict.danger))
            elif i in warned:
                route = "language" if verdict.language_policy == "flag" else "warning"
                turns.append(AgentTurn(warned[i], verdict.safety_label, list(verdict.rots), False, verdict.norm,
                                       route, verdict.danger))
            else:
                reply, route = replies[i]
                rots = list(reply.rots or verdict.rots)
                text = reply.response
                if verdict.safety_label in STATE_RULE and rots:  # asking back alone is for the lowest level only
                    text = build_on_rule(text, rots[0])
                turns.append(AgentTurn(text, verdict.safety_label, rots, False, verdict.norm, route, verdict.danger))
        return turns, verdicts

    @staticmethod
    def _sure_casual(verdict: Verdict) -> bool:
        """Casual with a casual score of at least `SURE_CASUAL` (a detector without scores is taken at its word)."""
        return verdict.safety_label.is_casual and verdict.scores.get(SafetyLabel.CASUAL.value, 1.0) >= SURE_CASUAL

    def _escalate(self, event: EscalationEvent) -> None:
        for handler in self.handlers:
            try:
                handler(event)
            except Exception:  # a broken pager must never leave the user without the hand-over reply
                log.exception("escalation handler %r failed for conversation %s", handler, event.conversation_id)
