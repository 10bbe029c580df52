"""The guard proxy under attack and on the way out (issue 32): adversarial rates and streaming moderation's cost.

    python benchmarks/bench_guard_proxy.py [--out docs/reports/guard.json]

- **Adversarial**: the danger corpus's dev split (emergencies, dangerous acts, benign look-alikes; written by the
  team, datasheet beside it), each text plain, under every transform of `prosocial.data.attacks` and in every
  placement, judged as the proxy judges a chat request (`prosocial.eval.adversarial`) by the shipped Canary-mini.
- **Replies** (with the shared data): DiaSafety's val split (Sun et al. 2022; never read by the agreement judge's
  training, which used its train split): chatbot replies that annotators called Unsafe or Safe in five categories,
  each judged by the proxy's `ReplyModerator` after the detector judged the user's turn; the share acted on
  (replaced or refused, default actions) per category and label.
- **Streaming moderation**: a 600-character reply streamed in 4-character chunks through `ModeratedStream` with
  the shipped detector and agreement judge, default windows: judgements per reply, seconds per judgement, the
  time added before the first chunk reaches the client (the first window must be judged), and per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from prosocial.canary import load_detector
from prosocial.data.danger import read_corpus
from prosocial.eval.adversarial import adversarial_rates
from prosocial.io import atomic_write
from prosocial.prost.agreement import AgreementJudge
from prosocial.resources import RESOURCES
from prosocial.serve.outputs import ModeratedStream
from prosocial.steer.moderation import ReplyModerator

REPLY = ("Sure! Here is a short story. Once upon a time there was a fox who lived at the edge of a quiet wood. "
         "Every morning she walked to the river to watch the light on the water, and every evening she told the "
         "owls what she had seen. One day a storm came and the river rose over its banks. The fox helped a family "
         "of rabbits carry their young to the hill, and when the water went down they planted a garden together. "
         "The owls still tell the story on windy nights, and the rabbits still bring the fox the first carrots.")


def streaming_cost(detector, judge, runs: int = 5) -> dict[str, float]:
    moderator = ReplyModerator(detector, judge)
    context = ["Tell me a short story about a fox."]

    async def judge_texts(texts):
        return dict(zip(sorted(texts), moderator.moderate([context] * len(texts), [texts[i] for i in sorted(texts)],
                                                          [False] * len(texts)), strict=True))

    async def replace() -> str:
        return "no"

    async def events():
        for i in range(0, len(REPLY), 4):
            chunk = {"id": "c", "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": REPLY[i:i + 4]}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b'data: {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
        yield b"data: [DONE]\n\n"

    async def one() -> tuple[float, float, dict]:
        stream = ModeratedStream(events(), judge_texts, replace)
        started = time.perf_counter()
        first = None
        async for _ in stream:
            first = first if first is not None else time.perf_counter() - started
        return first or 0.0, time.perf_counter() - started, stream.stats

    asyncio.run(one())  # warm-up
    results = [asyncio.run(one()) for _ in range(runs)]
    chunks = len(REPLY) // 4 + 3
    return {
        "reply_chars": len(REPLY), "chunks": chunks,
        "judgements_per_reply": results[0][2]["judgements"],
        "seconds_per_judgement": round(statistics.median(r[2]["seconds"] / r[2]["judgements"] for r in results), 4),
        "added_time_to_first_chunk_s": round(statistics.median(r[0] for r in results), 4),
        "added_per_chunk_ms": round(1000 * statistics.median(r[1] for r in results) / chunks, 2),
    }


def reply_rates(detector, judge) -> dict:
    """Share of DiaSafety val replies the default actions act on, by category and human label, and by reason.
    Only the conversations the proxy forwards count: a user turn the detector hands over never reaches the LLM."""
    from collections import Counter, defaultdict

    from prosocial.data.adapters import load_benchmark
    from prosocial.data.labels import Coarse

    rows = load_benchmark("diasafety", "dev")
    inputs = detector.predict([r.context for r in rows], with_rots=False)
    kept = [(r, v) for r, v in zip(rows, inputs, strict=True) if v.coarse is not Coarse.NEEDS_INTERVENTION]
    judged = ReplyModerator(detector, judge).moderate(
        [r.context for r, _ in kept], [r.response for r, _ in kept], [not v.safety_label.is_casual for _, v in kept]
    )
    groups: dict[str, list[bool]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    for (row, _), verdict in zip(kept, judged, strict=True):
        acted = verdict.action != "pass"
        label = row.meta["response_label"]
        groups[f"{row.meta['category']} / {label}"].append(acted)
        groups[f"all / {label}"].append(acted)
        if acted:
            reasons[f"{label} / {verdict.reason}"] += 1
    return {"handed_over_before_the_llm": len(rows) - len(kept), "reasons": dict(reasons),
            "rates": {k: {"n": len(v), "acted_on": round(sum(v) / len(v), 4)} for k, v in sorted(groups.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/reports/guard.json"))
    args = parser.parse_args()
    detector = load_detector("canary-mini")
    cases = read_corpus(RESOURCES / "danger" / "corpus.jsonl", ("dev",))
    report: dict = {"data": "danger corpus dev split (src/prosocial/resources/danger/corpus.jsonl)", "adversarial": {}}
    for kind in ("emergency", "act", "benign"):
        texts = [c.text for c in cases if c.kind == kind]
        started = time.perf_counter()
        report["adversarial"][kind] = {"n": len(texts), "rates": adversarial_rates(detector, texts)}
        print(f"{kind}: {len(texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    judge = AgreementJudge.load()
    try:
        report["replies"] = reply_rates(detector, judge)
        print(json.dumps(report["replies"], indent=1))
    except FileNotFoundError as exc:
        print(f"replies skipped: {exc}")
    report["streaming"] = streaming_cost(detector, judge)
    print(json.dumps(report["streaming"]))
    with atomic_write(args.out) as out:
        out.write(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
