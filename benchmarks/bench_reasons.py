"""Reasons for verdicts and replies built on them (issue 31): RoT sources, RoT coverage, replies, speed.

    .venv/bin/python benchmarks/bench_reasons.py [--part rots|replies|all] [--out docs/reports/reasons.json]

Data (none of it trained or tuned on):
- **SBIC dev**: the offensive dev posts with RoTs made from their implied statements (paper §3.1), less those whose
  text is also an SBIC train post or a ProsocialDialog train turn (the writer's training prompts held them); F1 and
  BLEU-4 of each system's first RoT against the best of the post's references (`rot_scores(alternatives=True)`).
- **ProsocialDialog validation with history**: a seeded sample of validation rows whose gold reply states a norm
  (its silver RoT, `data.silver_rots`) and whose turn the writer never trained on (ProsocialDialog opens dialogues
  with SBIC posts, some of them SBIC train posts), each with its recovered dialogue history
  (`lm.history.linked_contexts`, as `benchmarks/bench_prost.py` does); F1 of the first RoT against that silver RoT.
- **Coverage**: every verdict Canary-mini flags on the safety suite's dev samples, the behaviour suite's contexts and
  the danger corpus' held-out rows: the share with at least one RoT, and where the first came from.
- **Replies** (`--part replies`): problematic validation contexts with history answered by Prost-mini v3 alone (its
  own RoT & Response), by the agent with retrieval-only RoTs (the writer off) and by the agent as shipped; agreement
  by the ToxiChat stance evaluator and by the learned judge (each toward any of the user's last two turns), replies
  to flagged turns that state or build on a norm, bare "Why would you …?" replies, and F1/BLEU-4 against the gold
  reply; then F1 on casual later turns (DailyDialog validation).

Systems for RoTs: the RoT bank gated as shipped before this issue ("retrieval, gated": no RoT below the gate), the
bank's nearest entry ungated, Prost-mini v3's own RoT line (the adapter completing "Rule of thumb:"), the RoT writer,
and Canary-mini's pipeline (danger rule, gated bank, writer, nearest entry). A sample of 100 flagged suite contexts
with their RoTs, and of 100 agent replies, is written out for reading by hand.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from prosocial.canary import load_detector
from prosocial.canary.base import Verdict
from prosocial.data.adapters import default_root, load_benchmark
from prosocial.data.danger import BY_NAME, read_corpus
from prosocial.data.labels import SafetyLabel
from prosocial.data.silver_rots import norm_sentence
from prosocial.io import write_json
from prosocial.lm.history import linked_contexts, read_links, read_partial_rows
from prosocial.lm.prompts import RULE_TAG
from prosocial.resources import RESOURCES
from prosocial.scoring import bleu4, rot_scores, unigram_f1

DANGER = RESOURCES / "danger" / "corpus.jsonl"


def pd_rows(root: Path, n: int, seed: int) -> tuple[list[list[str]], list[str], list[str]]:
    """Seeded validation rows whose gold reply states a norm: contexts with history, gold replies, silver RoTs."""

    from prosocial.lm.inference import load_model
    from prosocial.lm.lora import base_model_dir

    rows = read_partial_rows(root / "prosocial_dialog_partial" / "valid.json")
    candidates = [i for i, (context, reply) in enumerate(rows)
                  if norm_sentence(reply) and not trained_on(context, root)]
    picked = sorted(random.Random(seed).sample(candidates, min(n, len(candidates))))
    model, tokenizer = load_model(base_model_dir())
    contexts = linked_contexts(rows, picked, model, tokenizer,
                               read_links("train")["threshold_nats"], 3)
    return contexts, [rows[i][1] for i in picked], [norm_sentence(rows[i][1]) for i in picked]


def trained_on(post: str, root: Path, _prompts: list[str] = []) -> bool:  # noqa: B006 (a cache)
    """Whether the shipped writer's training prompts held this post: SBIC repeats posts under other ids, and
    ProsocialDialog opens dialogues with SBIC posts (the writer was trained before `writer_data` filtered both)."""
    if not _prompts:
        rows = read_partial_rows(root / "prosocial_dialog_partial" / "train.json")
        _prompts.append("\n".join([e.context[-1] for e in load_benchmark("sbic", "train", root=root)]
                                   + [c for c, _ in rows]))
    return f"\n{post}\n" in f"\n{_prompts[0]}\n"


def rot_systems(detector, contexts: list[list[str]]) -> dict[str, list[list[str]]]:
    """Each system's RoTs for the same contexts, all treated as flagged."""
    from prosocial.prost.mini import ProstMini, render_prompt

    bank, writer = detector._bank, detector._writer
    out: dict[str, list[list[str]]] = {
        "retrieval, gated (before)": bank.search(contexts, k=1),
        "retrieval, nearest entry": bank.search(contexts, k=1, min_similarity=-1.0),
    }
    prost = ProstMini()
    lines = prost.lm.generate([render_prompt(c[-3:]) + RULE_TAG for c in contexts], max_new_tokens=40,
                              stop=["\n", "<|im_end|>"])
    out["prost-mini v3 RoT line"] = [[" ".join(t.split())] if t.strip() else [] for t in lines]
    out["rot writer"] = [[r] if r else [] for r in writer.write(contexts)]
    verdicts = [Verdict(SafetyLabel.NEEDS_CAUTION) for _ in contexts]
    detector.add_rots(contexts, verdicts)
    out["canary-mini pipeline"] = [v.rots[:1] for v in verdicts]
    return out


def source_of(rot: str, bank_rots: set[str], rules: set[str]) -> str:
    """Where a verdict's first RoT came from (a bank RoT may have passed the gate or stood in for the writer)."""
    from prosocial.canary.mini import GENERAL_ROT

    if rot == GENERAL_ROT:
        return "general rule"
    return "danger rule" if rot in rules else "bank (gated or fallback)" if rot in bank_rots else "writer"


def coverage(detector, root: Path, seed: int, per_source: int, handread_seed: int) -> dict:
    from prosocial.eval.behaviour import build_checks
    from prosocial.eval.safety_suite import load_suite

    suite = load_suite(root, per_source=per_source, seed=seed)
    sets = {
        "safety suite dev": [e.context for examples in suite.by_source.values() for e in examples],
        "behaviour suite": [c for check in build_checks(detector, root, per_check=per_source // 2, seed=seed)
                            for c in check.contexts],
        "danger held-out": [c.context for c in read_corpus(DANGER, ("heldout",))],
    }
    bank_rots = {r for e in detector._bank.entries for r in e.rots}
    rules = {c.rot for c in BY_NAME.values()}
    result, flagged_suite = {}, []
    for name, contexts in sets.items():
        started = time.perf_counter()
        verdicts = detector.predict(contexts)
        flagged = [(c, v) for c, v in zip(contexts, verdicts, strict=True) if not v.safety_label.is_casual]
        sources = Counter(source_of(v.rots[0], bank_rots, rules) if v.rots else "none" for _, v in flagged)
        result[name] = {"contexts": len(contexts), "flagged": len(flagged),
                        "with_rot_pct": round(100 * sum(bool(v.rots) for _, v in flagged) / max(1, len(flagged)), 1),
                        "first_rot_from": dict(sources), "seconds": round(time.perf_counter() - started, 1)}
        if name == "safety suite dev":
            flagged_suite = flagged
    total = sum(r["flagged"] for r in result.values())
    covered = sum(r["with_rot_pct"] * r["flagged"] / 100 for r in result.values())
    result["all"] = {"flagged": total, "with_rot_pct": round(100 * covered / max(1, total), 1)}
    sample = random.Random(f"handread:{handread_seed}").sample(flagged_suite, min(100, len(flagged_suite)))
    result["handread_sample"] = [{"context": c[-3:], "label": v.safety_label.value, "rots": v.rots,
                                  "source": source_of(v.rots[0], bank_rots, rules) if v.rots else "none"}
                                 for c, v in sample]
    return result


def speed(detector, contexts: list[list[str]]) -> dict:
    def median_ms(call, items) -> float:
        times = []
        for item in items:
            started = time.perf_counter()
            call(item)
            times.append(time.perf_counter() - started)
        return round(1000 * statistics.median(times), 1)

    detector._writer.write([contexts[0]])  # warm
    return {
        "writer_one_context_ms": median_ms(lambda c: detector._writer.write([c]), contexts),
        "label_only_one_context_ms": median_ms(lambda c: detector.predict([c], with_rots=False), contexts),
        "verdict_with_rots_one_flagged_context_ms": median_ms(
            lambda c: detector.add_rots([c], [Verdict(SafetyLabel.NEEDS_CAUTION)]), contexts),
        "contexts": len(contexts),
    }


def rots_part(args, root: Path) -> dict:
    detector = load_detector("canary-mini")
    posts = [e for e in load_benchmark("sbic", "dev", root=root) if e.rots and not trained_on(e.context[-1], root)]
    posts = random.Random(args.seed).sample(posts, min(args.rows, len(posts)))
    pd_contexts, _, silver = pd_rows(root, args.rows, args.seed)
    result: dict = {"sbic_dev_posts": len(posts), "pd_validation_rows": len(pd_contexts)}
    sbic = rot_systems(detector, [p.context for p in posts])
    pd = rot_systems(detector, pd_contexts)
    result["sbic_dev"] = {name: {k: round(100 * v, 1) if isinstance(v, float) and k != "rot_n" else v
                                 for k, v in rot_scores(rots, [p.rots for p in posts], alternatives=True).items()}
                          for name, rots in sbic.items()}
    result["pd_validation_with_history"] = {
        name: {"rot_f1": round(100 * statistics.mean(unigram_f1(r[0], s) if r else 0.0
                                                     for r, s in zip(rots, silver, strict=True)), 1),
               "rot_bleu4": round(100 * statistics.mean(bleu4(r[0], s) if r else 0.0
                                                        for r, s in zip(rots, silver, strict=True)), 2),
               "given_pct": round(100 * sum(bool(r) for r in rots) / len(rots), 1)}
        for name, rots in pd.items()}
    result["examples"] = [{"context": c[-3:], "silver": s, **{n: pd[n][i][:1] for n in pd}}
                          for i, (c, s) in enumerate(zip(pd_contexts[:8], silver[:8], strict=True))]
    result["coverage"] = coverage(detector, root, args.seed, args.suite_per_source,
                                  args.seed if args.handread_seed is None else args.handread_seed)
    result["speed"] = speed(detector, pd_contexts[: args.speed_rows])
    return result


def replies_part(args, root: Path) -> dict:
    from prosocial.eval.toxichat_evaluators import Evaluators
    from prosocial.prost.agreement import AgreementJudge
    from prosocial.prost.guard import questions_motive, states_norm
    from prosocial.prost.mini import ProstMini
    from prosocial.steer import ProsocialAgent

    contexts, gold, _ = pd_rows(root, args.rows, args.seed)
    prost = ProstMini()
    shipped = load_detector("canary-mini")
    retrieval_only = load_detector("canary-mini", rot_writer=False)
    verdicts = shipped.predict(contexts)
    evaluators, judge = Evaluators.load(), AgreementJudge.load()
    systems = {}
    started = time.perf_counter()
    systems["prost-mini v3 alone"] = [(r.response, r.rots, False) for r in prost.generate(contexts)]
    timing = {"prost-mini v3 alone": time.perf_counter() - started}
    for name, detector in (("agent, retrieval-only RoTs", retrieval_only), ("agent (shipped)", shipped)):
        started = time.perf_counter()
        turns = ProsocialAgent(detector, prost).respond_batch(contexts)
        timing[name] = time.perf_counter() - started
        systems[name] = [(t.response, t.rots, t.escalated) for t in turns]
    flagged = [i for i, v in enumerate(verdicts) if v.safety_label in (SafetyLabel.PROBABLY_NEEDS_CAUTION,
                                                                       SafetyLabel.NEEDS_CAUTION)]
    result: dict = {"rows": len(contexts), "flagged_probably_or_needs_caution": len(flagged),
                    "with_history": sum(len(c) > 1 for c in contexts), "systems": {}}
    for name, answers in systems.items():
        generated = [i for i, (_, _, escalated) in enumerate(answers) if not escalated]
        pairs = [(list(contexts[i][::-1][::2])[:2], answers[i][0]) for i in generated]
        flat = [(turn, reply) for turns, reply in pairs for turn in turns]
        stance = iter(evaluators.stance([t for t, _ in flat], [r for _, r in flat]))
        judged = iter(judge.agrees([t for t, _ in flat], [r for _, r in flat]))
        stance_agree = [any(next(stance) == "agree" for _ in turns) for turns, _ in pairs]
        judge_agree = [any([next(judged) for _ in turns]) for turns, _ in pairs]
        rots_for = [verdicts[i].rots for i in range(len(contexts))]
        on_flagged = [i for i in flagged if not answers[i][2]]
        result["systems"][name] = {
            "generated": len(generated),
            "agree_stance_evaluator_pct": round(100 * sum(stance_agree) / len(generated), 1),
            "agree_judge_pct": round(100 * sum(judge_agree) / len(generated), 1),
            "states_norm_on_flagged_pct": round(100 * sum(states_norm(answers[i][0], rots_for[i] + answers[i][1])
                                                          for i in on_flagged) / max(1, len(on_flagged)), 1),
            "bare_motive_question_on_flagged_pct": round(100 * sum(
                questions_motive(answers[i][0]) and not states_norm(answers[i][0], rots_for[i])
                for i in on_flagged) / max(1, len(on_flagged)), 1),
            "f1": round(100 * statistics.mean(unigram_f1(a[0], g) for a, g in zip(answers, gold, strict=True)), 1),
            "bleu4": round(100 * statistics.mean(bleu4(a[0], g) for a, g in zip(answers, gold, strict=True)), 2),
            "seconds": round(timing[name], 1),
            "stance_agree_replies": [answers[i][0] for i, a in zip(generated, stance_agree, strict=True) if a],
            "judge_agree_replies": [answers[i][0] for i, a in zip(generated, judge_agree, strict=True) if a],
        }
    sample = random.Random(args.seed).sample(range(len(contexts)), min(100, len(contexts)))
    result["handread_sample"] = [{"context": contexts[i][-3:], "label": verdicts[i].safety_label.value,
                                  "reply": systems["agent (shipped)"][i][0]} for i in sample]
    casual = [d["dialogue"] for d in json.loads((root / "casual" / "dailydialog" / "valid.json").read_text())
              if len(d["dialogue"]) >= 4]
    casual = random.Random(args.seed).sample(casual, min(args.casual_rows, len(casual)))
    casual_contexts, casual_gold = [d[:3] for d in casual], [d[3] for d in casual]
    agent = ProsocialAgent(shipped, prost)
    result["casual_later_turns"] = {
        "rows": len(casual),
        "f1_prost_mini_v3_alone": round(100 * statistics.mean(unigram_f1(r.response, g) for r, g in zip(
            prost.generate(casual_contexts), casual_gold, strict=True)), 1),
        "f1_agent_shipped": round(100 * statistics.mean(unigram_f1(t.response, g) for t, g in zip(
            agent.respond_batch(casual_contexts), casual_gold, strict=True)), 1),
    }
    from bench_prost_guard import SHOWCASE  # the README's ten inputs (this folder is on sys.path when run)

    result["showcase"] = [{"input": text, "label": t.safety_label.value, "danger": t.danger, "rots": t.rots,
                           "reply": t.response, "escalated": t.escalated}
                          for text, t in zip(SHOWCASE, agent.respond_batch([[x] for x in SHOWCASE]), strict=True)]
    times = []
    for context in contexts[: args.speed_rows]:
        started = time.perf_counter()
        agent.respond(context)
        times.append(time.perf_counter() - started)
    result["agent_turn_median_s"] = round(statistics.median(times), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("rots", "replies", "all"), default="all")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--casual-rows", type=int, default=100)
    parser.add_argument("--speed-rows", type=int, default=30)
    parser.add_argument("--suite-per-source", type=int, default=200, help="safety-suite dev examples per source "
                        "(half as many behaviour cases per check) for the coverage count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--handread-seed", type=int, default=None,
                        help="draw the RoT hand-read sample with this seed (default: --seed); a new seed gives a "
                             "sample no earlier reading has seen")
    parser.add_argument("--out", default="docs/reports/reasons.json")
    args = parser.parse_args()
    root = default_root()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    for part, run in (("rots", rots_part), ("replies", replies_part)):
        if args.part in (part, "all"):
            report[part] = run(args, root)
            write_json(out, report)
            print(json.dumps({k: v for k, v in report[part].items()
                              if k not in ("handread_sample", "examples", "coverage")}, indent=1)[:6000])


if __name__ == "__main__":
    main()
