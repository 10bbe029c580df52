"""Canary-mini first, an LLM judge second: the fast model decides the clear cases, your LLM the rest.

`canary-judge` runs Canary-mini on every context and sends to the LLM judge (`prosocial.canary.llm_judge`) the
contexts it is unsure of — its caution share within `band` of its casual threshold, as `canary-cascade` measures
doubt, or its intervention probability within `intervention_band` of its intervention threshold (a band of its
own: that threshold is low, 0.22 for the shipped model, so one band for both would send nearly every context once
it passes 0.22) — and, with
`send_flagged` (the default), every context it flags, so the judge also writes their RoTs. Everything else keeps
Canary-mini's verdict, at Canary-mini's cost.

What the judge says stands, with one exception: an emergency that Canary-mini's danger head named (needs
intervention with a danger category) is never lowered by the judge (`keep_emergencies`), because a missed
emergency costs more than a needless hand-over, and a prompt-injected or confused judge must not be able to
silence one. A context the judge cannot answer (its server down or slow, an answer still malformed after the
repair) keeps Canary-mini's verdict, is logged and counted (`fallbacks`): a flagged context is never passed
because the judge failed.

`sent`, `seen`, `fallbacks` and `judge_seconds` count what went where, for a service's metrics and the benchmark
(`benchmarks/bench_llm_judge.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.canary.llm_judge import JudgeError, LLMJudge
from prosocial.canary.mini import DEFAULT_DIR, CanaryMini, caution_share
from prosocial.data.context import check_context
from prosocial.data.labels import SafetyLabel

log = logging.getLogger(__name__)


@register_detector("canary-judge")
class CanaryJudge(SafetyDetector):
    """Canary-mini (`fast`, or the folder `fast_dir` with `fast_settings`) and an LLM judge (`judge`: an `LLMJudge`
    or its settings; `model`, `base_url`, `api_key`, `timeout`, `adapter`, `lm` and `policy` are merged into them,
    so a CLI spec needs no nesting: ``canary-judge:model=llama3.1,base_url=http://localhost:11434/v1``).
    `observer(sent, failed, seconds)` is told after each call that sent contexts to the judge (service metrics)."""

    def __init__(
        self,
        judge: LLMJudge | dict[str, Any] | None = None,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        adapter: str | None = None,
        lm: str | None = None,
        policy: Sequence[str | Path] = (),
        band: float = 0.15,
        intervention_band: float = 0.05,
        send_flagged: bool = True,
        keep_emergencies: bool = True,
        fast: SafetyDetector | None = None,
        fast_dir: str | Path = DEFAULT_DIR,
        fast_settings: dict[str, Any] | None = None,
        observer: Callable[[int, int, float], None] | None = None,
    ):
        self.judge = judge
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.adapter = adapter
        self.lm = lm
        self.policy = policy
        self.band = band
        self.intervention_band = intervention_band
        self.send_flagged = send_flagged
        self.keep_emergencies = keep_emergencies
        self.fast = fast
        self.fast_dir = fast_dir
        self.fast_settings = fast_settings
        self.observer = observer
        self.sent = self.seen = self.fallbacks = 0
        self.judge_seconds = 0.0
        self._lock = threading.Lock()

    @cached_property
    def _fast(self) -> CanaryMini:
        return self.fast if self.fast is not None else CanaryMini(**({"model_dir": self.fast_dir}
                                                                      | (self.fast_settings or {})))

    @cached_property
    def _judge(self) -> LLMJudge:
        if isinstance(self.judge, LLMJudge):
            return self.judge
        flat = {"model": self.model, "base_url": self.base_url, "api_key": self.api_key, "timeout": self.timeout,
                "adapter": self.adapter, "lm": self.lm, "policy": self.policy or None}
        return LLMJudge(**(dict(self.judge or {}) | {k: v for k, v in flat.items() if v is not None}))

    def warm_up(self) -> None:
        self._fast.warm_up()
        self._judge.warm_up()

    def unsure(self, probs: np.ndarray) -> np.ndarray:
        """Rows of coarse probabilities within `band` of the fast model's casual threshold (on the caution share) or
        within `intervention_band` of its intervention threshold."""
        config = self._fast.config
        near_casual = np.abs(caution_share(probs) - config.casual_threshold) < self.band
        near_intervention = np.abs(probs[:, 2] - config.intervention_threshold) < self.intervention_band
        return near_casual | near_intervention

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        for name in ("band", "intervention_band"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        checked = [check_context(c, f"contexts[{i}]") for i, c in enumerate(contexts)]
        if not checked:
            return []
        fast, judge = self._fast, self._judge
        probs = fast.probabilities(checked)
        labels, categories = fast.decide(probs, checked)
        flagged = np.array([not label.is_casual for label in labels])
        send = self.unsure(probs) | (flagged & self.send_flagged)
        sent = [int(i) for i in np.flatnonzero(send)]
        verdicts: list[Verdict | None] = [None] * len(checked)
        kept = [i for i in range(len(checked)) if not send[i]]
        for i, verdict in zip(kept, self._fast_verdicts(checked, probs, labels, categories, kept, with_rots),
                              strict=True):
            verdicts[i] = verdict
        started = time.perf_counter()
        results = judge.judge([checked[i] for i in sent], with_rots) if sent else []
        seconds = time.perf_counter() - started
        failed = [i for i, r in zip(sent, results, strict=True) if isinstance(r, JudgeError)]
        for i, result in zip(sent, results, strict=True):
            if not isinstance(result, JudgeError):
                verdicts[i] = self._merge(result, labels[i], categories[i], with_rots)
        if failed:
            log.warning("canary-judge: the LLM judge failed on %d of %d context(s) (%s); Canary-mini's verdicts stand",
                        len(failed), len(sent), next(r for r in results if isinstance(r, JudgeError)))
            for i, verdict in zip(failed, self._fast_verdicts(checked, probs, labels, categories, failed, with_rots),
                                  strict=True):
                verdicts[i] = verdict
        with self._lock:
            self.sent += len(sent)
            self.seen += len(checked)
            self.fallbacks += len(failed)
            self.judge_seconds += seconds
        if sent and self.observer is not None:
            self.observer(len(sent), len(failed), seconds)
        return verdicts  # type: ignore[return-value]

    def _fast_verdicts(self, contexts: list[list[str]], probs: np.ndarray, labels: list[SafetyLabel],
                       categories: list[str | None], rows: list[int], with_rots: bool) -> list[Verdict]:
        if not rows:
            return []
        return self._fast.verdicts([contexts[i] for i in rows], probs[rows], [labels[i] for i in rows],
                                   [categories[i] for i in rows], with_rots)

    def _merge(self, verdict: Verdict, fast_label: SafetyLabel, category: str | None, with_rots: bool) -> Verdict:
        """The judge's verdict, except that it never lowers an emergency the danger head named."""
        emergency = fast_label is SafetyLabel.NEEDS_INTERVENTION and category is not None
        if self.keep_emergencies and emergency and verdict.safety_label < fast_label:
            from prosocial.data.danger import BY_NAME

            verdict.safety_label = fast_label
            verdict.rots = [BY_NAME[category].rot, *verdict.rots] if with_rots else []
        if not verdict.safety_label.is_casual and verdict.danger is None:
            verdict.danger = category
        return verdict
