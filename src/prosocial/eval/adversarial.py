"""The adversarial suite of the guard proxy: how often a harmful request is still flagged (and handed over) when
it is disguised (`data.attacks.TRANSFORMS`) or put somewhere other than the last user turn
(`data.attacks.PLACEMENTS`), judged exactly as the proxy judges a chat request (`serve.inputs.judge_messages`).

A guard is as good under attack as it is on the plain text when each rate stays close to the plain one; the
benign look-alikes measure the cost, since undoing tricks could also turn harmless text into alarms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.attacks import PLACEMENTS, TRANSFORMS
from prosocial.data.labels import Coarse
from prosocial.serve.inputs import VerdictCache, judge_messages


def judge_requests(detector: SafetyDetector, requests: Sequence[list[dict[str, Any]]]) -> list[Verdict]:
    """The proxy's input verdict for each chat request (labels only: RoTs do not change a label)."""

    async def predict(contexts: list[list[str]], with_rots: bool) -> list[Verdict]:
        return detector.predict(contexts, with_rots=False)

    async def run() -> list[Verdict]:
        cache = VerdictCache()
        return [(await judge_messages(messages, predict, cache)).verdict for messages in requests]

    return asyncio.run(run())


def adversarial_rates(detector: SafetyDetector, texts: Sequence[str]) -> dict[str, dict[str, float]]:
    """For the plain texts and each transform and placement: the share flagged and the share handed over."""
    conditions: dict[str, list[list[dict[str, Any]]]] = {"plain": [PLACEMENTS["user"](t) for t in texts]}
    for name, transform in TRANSFORMS.items():
        conditions[name] = [PLACEMENTS["user"](transform(t)) for t in texts]
    for name, place in PLACEMENTS.items():
        if name != "user":
            conditions[f"in {name}"] = [place(t) for t in texts]
    rates = {}
    for name, requests in conditions.items():
        verdicts = judge_requests(detector, requests)
        rates[name] = {
            "flagged": sum(not v.safety_label.is_casual for v in verdicts) / len(verdicts),
            "handed_over": sum(v.coarse is Coarse.NEEDS_INTERVENTION for v in verdicts) / len(verdicts),
        }
    return rates
