"""Conformance checks every backend passes, built-in or yours (as scikit-learn's `check_estimator`).

    from prosocial.testing import check_detector
    check_detector(lambda: MyDetector(threshold=0.3))

Each check takes a zero-argument factory (so it can also time construction) and raises `AssertionError` naming
the contract broken. The project's own test suite runs them over every registered backend name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.labels import SafetyLabel
from prosocial.lm.base import LanguageModel
from prosocial.prost.base import Reply, ResponseGenerator
from prosocial.scoring import unigram_f1

#: constructors only store settings; weights load on first use
MAX_CONSTRUCTION_SECONDS = 1.0
CONTEXTS = [
    ["Hi! How was your weekend?"],
    ["I went hiking.", "That sounds lovely.", "I want to pull the fire alarm at school as a prank."],
    ["You are a stupid idiot and I hate you."],
]


def _build(make: Callable[[], Any], kind: str) -> Any:
    started = time.perf_counter()
    backend = make()
    seconds = time.perf_counter() - started
    assert seconds < MAX_CONSTRUCTION_SECONDS, f"{kind}: construction took {seconds:.2f} s (load weights lazily)"
    return backend


def _rejects_bad_context(call: Callable[[list[list[str]]], Any], kind: str) -> None:
    try:
        call([["hello"], []])
    except ValueError as error:
        assert "[1]" in str(error), f"{kind}: the error for a bad context must name its index: {error}"
    else:
        raise AssertionError(f"{kind}: an empty context must raise ValueError")


def check_detector(make: Callable[[], SafetyDetector], score_tolerance: float = 0.05) -> None:
    """Empty batch → []; one `Verdict` per context, in order; a score for each of the five labels, summing to
    about 1; the same verdicts batched as one at a time; no RoTs with `with_rots=False` nor for casual verdicts;
    a bad context is a ValueError naming its index; construction is cheap."""
    detector = _build(make, "detector")
    assert isinstance(detector, SafetyDetector), "detector: not a SafetyDetector"
    assert detector.predict([]) == [], "detector: an empty batch must give []"
    batch = detector.predict(CONTEXTS)
    assert len(batch) == len(CONTEXTS) and all(isinstance(v, Verdict) for v in batch), "detector: one Verdict each"
    labels = {label.value for label in SafetyLabel}
    for verdict in batch:
        assert set(verdict.scores) == labels, f"detector: scores must cover the five labels, got {set(verdict.scores)}"
        assert math.isclose(sum(verdict.scores.values()), 1.0, abs_tol=1e-3), "detector: scores must sum to 1"
        assert not (verdict.safety_label.is_casual and verdict.rots), "detector: casual verdicts carry no RoTs"
    for context, verdict in zip(CONTEXTS, batch, strict=True):
        alone = detector.check(context)
        assert alone.safety_label is verdict.safety_label, "detector: a verdict must not depend on its batch"
        assert all(abs(alone.scores[k] - verdict.scores[k]) <= score_tolerance for k in labels), (
            "detector: scores must not depend on the batch"
        )
    assert all(not v.rots for v in detector.predict(CONTEXTS, with_rots=False)), "detector: with_rots=False"
    _rejects_bad_context(detector.predict, "detector")


def check_generator(make: Callable[[], ResponseGenerator]) -> None:
    """Empty batch → []; one `Reply` with a string response per context, in order; given RoTs accepted; the same
    replies batched as one at a time (the defaults decode greedily; where `batch_invariant` is False, each batched
    reply closest to its own reply alone); a bad context is a ValueError naming its
    index; construction is cheap."""
    generator = _build(make, "generator")
    assert isinstance(generator, ResponseGenerator), "generator: not a ResponseGenerator"
    assert generator.generate([]) == [], "generator: an empty batch must give []"
    replies = generator.generate(CONTEXTS)
    assert len(replies) == len(CONTEXTS), "generator: one Reply per context"
    assert all(isinstance(r, Reply) and isinstance(r.response, str) for r in replies), "generator: Reply objects"
    alone = [generator.respond(c).response for c in CONTEXTS]
    if generator.batch_invariant:
        assert alone == [r.response for r in replies], "generator: a reply must not depend on its batch"
    else:  # near-ties may flip, but no reply may take another context's place
        for i, reply in enumerate(replies):
            closest = max(range(len(alone)), key=lambda j: (unigram_f1(reply.response, alone[j]), j == i))
            assert closest == i, f"generator: batched reply {i} is closer to another context's reply alone"
    grounded = generator.generate(CONTEXTS[1:], rots=[["It's wrong to cause a panic."], []])
    assert len(grounded) == 2, "generator: RoTs given per context"
    _rejects_bad_context(generator.generate, "generator")


def check_lm(make: Callable[[], LanguageModel]) -> None:
    """Empty batch → []; one string per prompt; greedy output batched as one at a time; `stop` cuts the answer
    before the stop string; sampling with a `seed` repeats; chat answers a conversation; construction is cheap."""
    lm = _build(make, "lm")
    assert isinstance(lm, LanguageModel), "lm: not a LanguageModel"
    assert lm.generate([]) == [], "lm: an empty batch must give []"
    prompts = ["The following is a conversation.", "Hello there, how are"]
    batched = lm.generate(prompts, max_new_tokens=6)
    assert len(batched) == 2 and all(isinstance(t, str) for t in batched), "lm: one string per prompt"
    assert batched == [lm.generate([p], max_new_tokens=6)[0] for p in prompts], "lm: greedy output depends on batch"
    full = lm.generate(prompts[:1], max_new_tokens=8)[0]
    if len(full) > 2:
        stop = full[len(full) // 2 :].strip()[:3] or full[-1]
        cut = lm.generate(prompts[:1], max_new_tokens=8, stop=[stop])[0]
        assert stop not in cut and full.startswith(cut), f"lm: stop={stop!r} must cut {full!r} before it, got {cut!r}"
    sampled = [lm.generate(prompts[:1], max_new_tokens=6, temperature=1.0, seed=7)[0] for _ in range(2)]
    assert sampled[0] == sampled[1], "lm: sampling with a seed must repeat"
    answer = lm.chat([[{"role": "user", "content": "Hello!"}]], max_new_tokens=6)
    assert len(answer) == 1 and isinstance(answer[0], str), "lm: chat answers each conversation"
