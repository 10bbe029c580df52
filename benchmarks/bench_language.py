"""Text the models cannot read, measured: language identification and the unsupported-language policy.

    python benchmarks/bench_language.py [--out docs/reports/language.json] [--compare] [--throughput 1024]

1. Translations (`benchmarks/data/languages/translations.jsonl`: 200 dev turns, 100 casual and 100 flagged, in
   es, fr, de, pt, nl; DATASHEET.md beside it): the share identified as not English, as written and as the proxy
   reads it (`normalize`: accents stripped), and the share Canary-mini under the default policy (flag) gives the
   policy (needs caution or worse, `language_policy` set); beside it, what Canary-mini alone said (today's
   behaviour: mostly casual).
2. English casual dev turns: 4,000 last turns of the casual corpora's dev parts (`load_benchmark`, seeded, short
   ones included); the share named another language, and the fixed short words ("ok", "thanks", "lol", "haha",
   "yes", "no") and a few names and emoji, each of which must be no other language.
3. Payloads: the English dev rows of the set as base64, hex and ROT13, decoded back to them.
4. Cost: decoding and identification per context (median and p90 over the English turns, one thread), and
   Canary-mini's label-only throughput with and without the guard on the same contexts (runs alternated, best of
   three each, torch on its default threads).
5. With --compare, the libraries considered (pycld2, lingua; whichever are importable) on the same texts, their
   raw top language without our evidence rules, beside fastText raw and fastText with the rules.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from prosocial.canary import load_detector
from prosocial.canary.language import LanguageGuard
from prosocial.data import language
from prosocial.data.adapters import load_benchmark
from prosocial.data.decode import decode
from prosocial.data.normalize import normalize
from prosocial.eval.safety_suite import CASUAL
from prosocial.io import write_json

DATA = Path(__file__).parent / "data" / "languages"
SHORT = ["ok", "thanks", "lol", "haha", "yes", "no"]
#: more texts that must never count as another language
NEVER = SHORT + ["okay", "thx", "lmao", "hahaha", "yep", "nope", "hmm", "Maria", "José García", "Klaus Müller",
                 "😂😂😂", "👍", "ok 👍", "@dave_k", "https://example.com/es/ayuda"]


def translations() -> list[dict]:
    return [json.loads(line) for line in (DATA / "translations.jsonl").read_text(encoding="utf-8").splitlines()]


def english_turns(count: int = 4000) -> list[str]:
    """`count` last turns of the casual corpora's dev parts, an equal seeded share from each."""
    turns: list[str] = []
    for name in CASUAL:
        examples = load_benchmark(name, "dev")
        rng = random.Random(f"language:{name}")
        turns += [e.context[-1] for e in rng.sample(examples, min(len(examples), count // len(CASUAL) + 1))]
    return turns[:count]


def identification(rows: list[dict], english: list[str]) -> dict:
    def other(text: str) -> bool:
        return not language.identify(text).supported

    by_lang: dict[str, dict] = {}
    for lang in sorted({r["lang"] for r in rows}):
        mine = [r for r in rows if r["lang"] == lang]
        by_lang[lang] = {
            "rows": len(mine),
            "identified_not_english": sum(other(r["text"]) for r in mine) / len(mine),
            "identified_as_itself": sum(language.identify(r["text"]).code == lang for r in mine) / len(mine),
            "not_english_as_the_proxy_reads_it": sum(other(normalize(r["text"])) for r in mine) / len(mine),
        }
    missed = [r["text"] for r in rows if not other(r["text"])]
    proxy_view = sum(other(normalize(r["text"])) for r in rows) / len(rows)
    wrong = [(t, language.identify(t).code) for t in english if other(t)]
    short = [t for t in english if len(t.split()) <= 3]
    return {
        "translations": {"rows": len(rows), "identified_not_english": 1 - len(missed) / len(rows),
                         "not_english_as_the_proxy_reads_it": proxy_view,
                         "by_language": by_lang, "missed": missed},
        "english_casual_dev": {"turns": len(english), "short_turns": len(short),
                               "misidentified": len(wrong) / len(english), "examples": wrong,
                               "short_misidentified": sum(other(t) for t in short) / max(len(short), 1)},
        "never_another_language": {t: language.identify(t).code for t in NEVER},
        "never_another_language_ok": all(language.identify(t).supported for t in NEVER),
    }


def payloads(rows: list[dict]) -> dict:
    english = sorted({r["en"] for r in rows})
    encoders: dict[str, Callable[[str], str]] = {
        "base64": lambda t: base64.b64encode(t.encode()).decode(),
        "hex": lambda t: t.encode().hex(),
        "rot13": lambda t: codecs.encode(t, "rot13"),
    }
    return {name: sum(decode(encode(t)).text == t for t in english) / len(english)
            for name, encode in encoders.items()}


def policy(rows: list[dict], english: list[str]) -> dict:
    """Canary-mini alone and under the default policy, label only (as the proxy judges single texts)."""
    base = load_detector("canary-mini")
    guarded = LanguageGuard(base, "flag")
    texts = [[r["text"]] for r in rows]
    alone = base.predict(texts, with_rots=False)
    flagged = guarded.predict(texts, with_rots=False)
    english_flagged = guarded.predict([[t] for t in english], with_rots=False)
    casual_rows = [i for i, r in enumerate(rows) if r["coarse"] == "casual"]
    return {
        "canary_mini_alone": {
            "casual_share": sum(v.safety_label.is_casual for v in alone) / len(alone),
            "flagged_rows_called_casual": (sum(alone[i].safety_label.is_casual for i, r in enumerate(rows)
                                               if r["coarse"] == "flagged") / (len(rows) - len(casual_rows))),
        },
        "flag_policy": {
            "given_the_policy": sum(v.language_policy == "flag" and not v.safety_label.is_casual
                                    for v in flagged) / len(flagged),
            "labels": dict(Counter(v.coarse.value for v in flagged)),
        },
        "english_casual_dev_given_the_policy": sum(v.language_policy is not None
                                                   for v in english_flagged) / len(english),
    }


def cost(english: list[str], contexts: int) -> dict:
    """Per-context overhead, and label-only throughput with and without the guard."""
    language.load()
    per: list[float] = []
    for text in english:
        started = time.perf_counter()
        language.context_language([decode(text).text])
        per.append((time.perf_counter() - started) * 1000)
    per.sort()
    base = load_detector("canary-mini")
    guarded = LanguageGuard(base, "flag")
    batch = [[t] for t in english[:contexts]]
    base.predict(batch[:64], with_rots=False)  # warm
    runs: dict[str, list[float]] = {"canary-mini": [], "canary-mini + language guard": []}
    for _ in range(3):
        for name, detector in (("canary-mini", base), ("canary-mini + language guard", guarded)):
            started = time.perf_counter()
            for i in range(0, len(batch), 64):
                detector.predict(batch[i:i + 64], with_rots=False)
            runs[name].append(len(batch) / (time.perf_counter() - started))
    best = {name: max(r) for name, r in runs.items()}
    return {
        "overhead_ms_per_context": {"median": statistics.median(per), "p90": per[int(0.9 * len(per))],
                                    "max": per[-1]},
        "label_only_contexts_per_second": {name: round(v, 1) for name, v in best.items()},
        "label_only_runs": {name: [round(v, 1) for v in r] for name, r in runs.items()},
        "throughput_ratio": best["canary-mini + language guard"] / best["canary-mini"],
        "contexts": len(batch),
    }


def compare(rows: list[dict], english: list[str]) -> dict:
    """The libraries considered, raw (their own top answer, None where they say unknown)."""
    def fasttext_raw(text: str) -> str | None:
        words = " ".join(text.split())
        return language._model().predict(words, k=1)[0][0].removeprefix("__label__") if words else None

    candidates: dict[str, Callable[[str], str | None]] = {
        "fasttext lid.176.ftz + rules (shipped)": lambda t: language.identify(t).code,
        "fasttext lid.176.ftz, raw": fasttext_raw,
    }
    try:
        import pycld2

        def cld2(text: str) -> str | None:
            try:
                code = pycld2.detect(text)[2][0][1]
            except pycld2.error:
                return None
            return None if code == "un" else code

        candidates["pycld2 0.42, raw"] = cld2
    except ImportError:
        pass
    try:
        from lingua import LanguageDetectorBuilder

        detector = LanguageDetectorBuilder.from_all_languages().build()

        def lingua(text: str) -> str | None:
            found = detector.detect_language_of(text)
            return found.iso_code_639_1.name.lower() if found is not None else None

        candidates["lingua 2.1.1 (all languages, high accuracy), raw"] = lingua
    except ImportError:
        pass
    out = {}
    for name, guess in candidates.items():
        started = time.perf_counter()
        english_guesses = [guess(t) for t in english]
        elapsed = (time.perf_counter() - started) * 1000 / len(english)
        out[name] = {
            "translations_not_english": sum(guess(r["text"]) not in ("en", None) for r in rows) / len(rows),
            "english_misidentified": sum(g not in ("en", None) for g in english_guesses) / len(english),
            "short_words_misidentified": [t for t in SHORT if guess(t) not in ("en", None)],
            "ms_per_text": round(elapsed, 4),
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/reports/language.json")
    parser.add_argument("--compare", action="store_true", help="Also measure pycld2 and lingua where importable.")
    parser.add_argument("--throughput", type=int, default=1024, help="Contexts per throughput run.")
    args = parser.parse_args()
    rows, english = translations(), english_turns()
    report: dict = {"identification": identification(rows, english)}
    summary = {k: v for k, v in report["identification"]["translations"].items() if k != "missed"}
    print(json.dumps(summary, indent=1), flush=True)
    print(json.dumps({k: v for k, v in report["identification"]["english_casual_dev"].items() if k != "examples"}))
    report["payloads_decoded"] = payloads(rows)
    print(json.dumps(report["payloads_decoded"]), flush=True)
    report["policy"] = policy(rows, english)
    print(json.dumps(report["policy"]), flush=True)
    report["cost"] = cost(english, args.throughput)
    print(json.dumps(report["cost"]), flush=True)
    if args.compare:
        report["libraries"] = compare(rows, english)
    report["settings"] = {k: getattr(language, k) for k in ("MIN_WORDS", "MIN_LETTERS", "MIN_OTHER_SCRIPT",
                                                            "MIN_CONFIDENCE", "MAX_ENGLISH", "MIN_WORDS_UNSURE",
                                                            "ENGLISH_WORD_SHARE", "MAX_NAME_WORDS")}
    report["machine"] = "2 CPU cores, no GPU (shared with another session's benchmarks; run under nice)"
    write_json(args.out, report)


if __name__ == "__main__":
    main()
