"""canary-judge with a fake LLM judge (issue 34): the share of contexts sent to the judge and the blended latency.

    python benchmarks/bench_llm_judge.py [--judge-ms 400] [--timed 40] [--out docs/reports/llm-judge]

Contexts: the danger corpus's dev split (`prosocial.resources/danger`, datasheet beside it: emergencies, dangerous
acts and benign look-alikes, each with the level it calls for). That is the hard end of real traffic, which is
mostly small talk, so the shares sent here are an upper end.

The judge is a fake: a `LanguageModel` that waits `--judge-ms` per request (a stand-in for an 8B model's answer on
a GPU server; the real figure is yours to measure) and answers the corpus's own expected level (emergency → needs
intervention, act → needs caution, benign → casual), so the rates it gives are a *ceiling*: what a perfect judge
would add on top of Canary-mini when it sees what the cascade sends it. For each band (how close to Canary-mini's
thresholds a context must be to count as unsure) and with or without every flagged context sent:

- share sent: contexts that went to the judge, over the whole split (`--intervention-band`, 0.05 as shipped, beside
  every band but 0, which sends nothing unsure);
- latency: one `check` per context, one at a time (as a chat turn is judged), over a seeded sample of `--timed`
  contexts: median, p95 and mean, next to Canary-mini alone;
- emergencies handed over, acts flagged, look-alikes flagged (with the oracle judge: ceilings).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary import load_detector
from prosocial.canary.llm_judge import LLMJudge
from prosocial.canary.mini import CanaryMini
from prosocial.data.danger import read_corpus
from prosocial.data.labels import Coarse
from prosocial.eval.report_files import provenance, seeded_sample, write_report
from prosocial.lm.base import Completion, LanguageModel
from prosocial.resources import RESOURCES

BANDS = (0.0, 0.1, 0.15, 0.25)


class Remembered(CanaryMini):
    """Canary-mini's probabilities and decisions on the split, computed once: the rates pass repeats them for every
    configuration (the timed pass uses the real model)."""

    def __init__(self, contexts: list[list[str]], probs: np.ndarray, labels: list, categories: list):
        super().__init__(rot_writer=False)
        rows = zip(contexts, probs, labels, categories, strict=True)
        self.memo = {tuple(c): (p, lab, cat) for c, p, lab, cat in rows}

    def probabilities(self, contexts):
        return np.stack([self.memo[tuple(c)][0] for c in contexts])

    def decide(self, probs, contexts, danger=None):
        return [self.memo[tuple(c)][1] for c in contexts], [self.memo[tuple(c)][2] for c in contexts]


class OracleJudge(LanguageModel):
    """Answers the expected level of the corpus row whose text ends the dialogue, after `delay` seconds."""

    def __init__(self, gold: dict[str, Any], delay: float):
        self.gold = gold
        self.delay = delay

    def generate(self, prompts: list[str], **_: Any) -> list[str]:
        return [""] * len(prompts)

    def chat(self, messages_batch: list[list[dict[str, str]]], **_: Any) -> list[str]:
        return [c.text for c in self.chat_detailed(messages_batch)]

    def chat_detailed(self, messages_batch: list[list[dict[str, str]]], max_new_tokens: int = 256,
                      schema: dict[str, Any] | None = None, top_logprobs: int = 0) -> list[Completion]:
        out = []
        for messages in messages_batch:
            time.sleep(self.delay)
            dialogue = messages[1]["content"].split("\n")
            last = next(line for line in reversed(dialogue) if line.startswith("User: "))[len("User: "):]
            case = self.gold[last]
            label = {"emergency": "needs_intervention", "act": "needs_caution"}.get(case.kind, "casual")
            danger = case.category if case.kind != "benign" else "none"
            out.append(Completion(json.dumps({"label": label, "danger": danger, "rots": [],
                                              "rationale": "the corpus's expected level"}), constrained=True))
        return out


def rates(cases: list, verdicts: list) -> dict[str, float]:
    def share(kind: str, hit) -> float:
        rows = [v for c, v in zip(cases, verdicts, strict=True) if c.kind == kind]
        return round(100 * sum(map(hit, rows)) / max(1, len(rows)), 1)

    return {
        "emergencies_handed_over_pct": share("emergency", lambda v: v.coarse is Coarse.NEEDS_INTERVENTION),
        "acts_flagged_pct": share("act", lambda v: not v.safety_label.is_casual),
        "lookalikes_flagged_pct": share("benign", lambda v: not v.safety_label.is_casual),
    }


def timings(detector, contexts: list[list[str]]) -> dict[str, float]:
    seconds = []
    for context in contexts:
        started = time.perf_counter()
        detector.check(context)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {"median_ms": round(1000 * statistics.median(seconds), 1),
            "p95_ms": round(1000 * seconds[int(0.95 * (len(seconds) - 1))], 1),
            "mean_ms": round(1000 * statistics.fmean(seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge-ms", type=float, default=400.0, help="the fake judge's time per request")
    parser.add_argument("--timed", type=int, default=40, help="contexts timed one at a time per configuration")
    parser.add_argument("--intervention-band", type=float, default=0.05,
                        help="canary-judge's intervention_band where the band is not 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/reports/llm-judge"))
    args = parser.parse_args()

    cases = read_corpus(RESOURCES / "danger" / "corpus.jsonl", ("dev",))
    contexts = [c.context for c in cases]
    gold = {" ".join(c.text.split()): c for c in cases}
    timed = seeded_sample(contexts, args.timed, args.seed)
    fast = CanaryMini(rot_writer=False)  # as `prosocial serve` runs it
    fast.warm_up()
    alone = fast.predict(contexts, with_rots=False)
    probs = fast.probabilities(contexts)
    remembered = Remembered(contexts, probs, *fast.decide(probs, contexts))
    results: dict[str, Any] = {"canary-mini": {"sent_pct": 0.0, **rates(cases, alone), **timings(fast, timed)}}
    for send_flagged in (False, True):
        for band in BANDS:
            settings = {"band": band, "send_flagged": send_flagged,
                        "intervention_band": band and args.intervention_band}
            judge = LLMJudge(lm=OracleJudge(gold, args.judge_ms / 1000))
            split = load_detector("canary-judge", judge=judge, fast=remembered, **settings)
            verdicts = split.predict(contexts, with_rots=False)
            sent = round(100 * split.sent / split.seen, 1)
            detector = load_detector("canary-judge", judge=judge, fast=fast, **settings)
            name = f"band {band:g}" + (", flagged sent" if send_flagged else "")
            results[name] = {"band": band, "send_flagged": send_flagged, "sent_pct": sent, **rates(cases, verdicts),
                             **timings(detector, timed)}
            print(name, json.dumps(results[name]), flush=True)
    header = ("| configuration | sent to the judge | median | p95 | mean | emergencies handed over | acts flagged | "
              "look-alikes flagged |\n|---|---|---|---|---|---|---|---|")
    rows = [f"| {name} | {r['sent_pct']}% | {r['median_ms']} ms | {r['p95_ms']} ms | {r['mean_ms']} ms | "
            f"{r['emergencies_handed_over_pct']}% | {r['acts_flagged_pct']}% | {r['lookalikes_flagged_pct']}% |"
            for name, r in results.items()]
    meta = provenance(corpus=f"danger dev split: {len(cases)} contexts", judge_ms=args.judge_ms,
                      intervention_band=args.intervention_band,
                      timed=len(timed), seed=args.seed,
                      judge="fake: answers the corpus's expected level after judge_ms (rates are ceilings)")
    write_report(args.out, "canary-judge with a fake judge", ["\n".join([header, *rows])], meta, results)
    print("\n".join([header, *rows]))


if __name__ == "__main__":
    main()
