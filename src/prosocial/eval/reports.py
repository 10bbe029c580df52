"""Table 2, 3 and 5 reports (paper §5.1, §5.2, §6.1) for any detector or generator, on any labelled data.

`canary_report` / `prost_report` compute the paper's columns (training uses them for its dev tables) and what a
reader needs to trust and compare them: per-class precision / recall / F1 and confusion matrices (5-way and
coarse 3-way), several models side by side, any registered detector or generator (the offline defaults
included; columns a model cannot give, such as a retrieval detector's perplexity, are "–"), and data given
either as a ProsocialDialog file or as an external benchmark split. Table 5's tables (paper §6.1) are drawn here
too, from the rates `eval.toxichat` computes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.labels import COARSE_LABELS, LABELS
from prosocial.data.schema import Example
from prosocial.eval.metrics import load_metric
from prosocial.eval.report_files import describe_sample, seeded_sample, slug
from prosocial.prost.base import ResponseGenerator
from prosocial.scoring import bleu4, perplexity, rot_scores, unigram_f1

FINE = [label.value for label in LABELS]
COARSE = [label.value for label in COARSE_LABELS]


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``[LABEL=]NAME[:key=value,...]`` → (label, NAME, settings); values are JSON when they parse (commas inside
    JSON objects and lists are fine).

    NAME is a registry name or a saved model folder, whose ``prosocial.json`` names its backend (`load_detector`
    and `load_generator` read it), so ``--model runs/canary`` works as well as
    ``--model "T5=generative:model=runs/canary"``.
    """
    head, _, tail = spec.partition(":")
    label, _, name = head.rpartition("=")
    name = name.strip()
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in _top_level_split(tail))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad setting {item!r} in {spec!r}: expected key=value")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value.strip()
    return (label.strip() or spec), name, settings


def _top_level_split(text: str) -> list[str]:
    """Split at commas outside brackets and quotes, so a JSON value such as {"a": 1, "b": 2} stays whole."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "[{":
            depth += 1
        elif not quoted and ch in "]}":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def load_examples(data: str, root: Path | None = None, limit: int | None = None, seed: int = 0,
                  split: str | None = None) -> tuple[list[Example], str]:
    """Examples and a one-line description: a ProsocialDialog file / folder (either format) or ``benchmark:split``
    of the external benchmarks (e.g. ``diasafety:dev``). `limit` takes a seeded sample, order kept."""
    path = Path(data)
    if path.exists():
        from prosocial.data.formats import read_dialogues

        examples = [e for d in read_dialogues(path, split=split) for e in d.examples()]
        what = f"{path}"
    else:
        from prosocial.data.adapters import load_benchmark

        name, _, bench_split = data.partition(":")
        examples = load_benchmark(name, bench_split or "dev", root=root)
        what = f"benchmark {name}, {bench_split or 'dev'} split"
    sample = seeded_sample(examples, limit, seed)
    return sample, describe_sample(what, len(sample), len(examples), seed)


# --- Table 2 --------------------------------------------------------------------------------------------------


def _verdicts(detector: SafetyDetector, contexts: list[list[str]], batch_size: int) -> tuple[list[Verdict], int]:
    """Verdicts with RoTs, and the number of malformed generations where the detector reports it."""
    from prosocial.canary.generative import GenerativeCanary

    if isinstance(detector, GenerativeCanary):
        return detector.predict_raw(contexts, with_rots=True)
    verdicts: list[Verdict] = []
    for start in range(0, len(contexts), batch_size):
        verdicts += detector.predict(contexts[start : start + batch_size], with_rots=True)
    return verdicts, 0


def _gold_rot_perplexity(detector: SafetyDetector, examples: Sequence[Example]) -> float | None:
    """Perplexity of the gold RoTs, teacher-forced after the gold label token (the label is given, not scored),
    EOS included; None for detectors that are not language models."""
    from prosocial.canary.generative import GenerativeCanary

    if not isinstance(detector, GenerativeCanary) or not examples:
        return None
    from prosocial.lm.inference import token_nlls

    model, tokenizer = detector._ensure()
    sep = f" {detector.separator} "
    nlls = token_nlls(model, tokenizer, detector.sources([e.context for e in examples]),
                      [" " + sep.join(r.strip() for r in e.rots if r.strip()) for e in examples],
                      detector.batch_size, detector.max_source_len, prefixes=[e.safety_label.value for e in examples])
    return perplexity(nlls)


def canary_report(detector: SafetyDetector, examples: Sequence[Example], batch_size: int = 64) -> dict[str, Any]:
    """Table 2's columns (as fractions; PPL as is) plus per-class scores and confusion matrices.

    Only labelled examples count. RoT BLEU-4 / F1 compare the predicted RoTs (joined by spaces) with the gold
    RoTs (joined alike, `scoring.rot_scores`) on the examples that have gold RoTs, whatever label was predicted;
    ``malformed`` is the share of generative Canary outputs without a leading label token.
    """
    labelled = [e for e in examples if e.safety_label is not None]
    if not labelled:
        raise ValueError("the Canary report needs examples with a safety label")
    verdicts, malformed = _verdicts(detector, [e.context for e in labelled], batch_size)
    classification = load_metric("classification")
    fine = classification.compute(predictions=[v.safety_label.value for v in verdicts],
                                  references=[e.safety_label.value for e in labelled], labels=FINE)
    coarse = classification.compute(predictions=[v.coarse.value for v in verdicts],
                                    references=[e.coarse.value for e in labelled], labels=COARSE)
    result: dict[str, Any] = {"n": len(labelled), "accuracy": fine["accuracy"], "accuracy_coarse": coarse["accuracy"],
                              "malformed": malformed / len(labelled), "fine": fine, "coarse": coarse}
    result |= rot_scores([v.rots for v in verdicts], [e.rots for e in labelled])
    if result["rot_n"]:
        with_rots = [e for e in labelled if any(r.strip() for r in e.rots)]
        result["rot_perplexity"] = _gold_rot_perplexity(detector, with_rots)
    return result


def _cell(value: float | None, scale: float = 100.0, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(scale * value)


def canary_table(results: dict[str, dict[str, Any]]) -> str:
    """Table 2's layout (×100 like the paper), one row per model."""
    lines = ["| model | n | safety acc (5-way) | acc (3-way) | macro F1 (5-way) | RoT BLEU-4 | RoT F1 | RoT PPL |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n']} | {_cell(r['accuracy'])} | {_cell(r['accuracy_coarse'])} | "
            f"{_cell(r['fine']['macro_f1'])} | {_cell(r.get('rot_bleu4'), fmt='{:.2f}')} | {_cell(r.get('rot_f1'))} | "
            f"{_cell(r.get('rot_perplexity'), 1.0, '{:.2f}')} |")
    return "\n".join(lines)


def per_class_table(result: dict[str, Any], view: str = "fine") -> str:
    """Precision / recall / F1 / support per class (×100)."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, c in result[view]["per_class"].items():
        lines.append(f"| `{label}` | {100 * c['precision']:.1f} | {100 * c['recall']:.1f} | {100 * c['f1']:.1f} | "
                     f"{c['support']} |")
    return "\n".join(lines)


def plot_confusion(result: dict[str, Any], path: Path, title: str) -> Path:
    """Row-normalised confusion matrices (5-way and 3-way) with counts, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [5, 3]})
    for ax, view in zip(axes, ("fine", "coarse"), strict=True):
        labels = [label.strip("_").replace("_", " ") for label in result[view]["labels"]]
        counts = np.array(result[view]["confusion_matrix"])
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i, j in np.ndindex(counts.shape):
            ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{'5-way' if view == 'fine' else '3-way'} (acc {result[view]['accuracy']:.1%})", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def canary_sections(results: dict[str, dict[str, Any]], out: Path, described: str) -> tuple[list[str], dict[str, str]]:
    """A report section per model (per-class tables, 5-way and 3-way, and its confusion matrices drawn beside
    `out` as OUT-<model>.png), and each model's figure file name."""
    sections, figures = [], {}
    for label, result in results.items():
        figure = plot_confusion(result, out.parent / f"{out.name}-{slug(label)}.png", f"{label} on {described}")
        figures[label] = figure.name
        sections.append(f"### {label}\n\n5-way:\n\n{per_class_table(result)}\n\n3-way:\n\n"
                        f"{per_class_table(result, 'coarse')}\n\n![confusion matrices]({figure.name})")
    return sections, figures


# --- Table 3 --------------------------------------------------------------------------------------------------


def prost_report(generator: ResponseGenerator, examples: Sequence[Example]) -> dict[str, Any]:
    """Table 3's columns (fractions; the paper prints BLEU-4 and F1 ×100) for any generator on examples that have
    a gold reply: BLEU-4 and F1 of the reply (a rot-response Prost writes its own RoTs first; only the reply is
    scored), and for a `Prost` the reply's perplexity (other generators do not expose token probabilities).
    Where examples have RoTs, ``gold_rot_*`` repeat the columns with the gold RoTs given ("Response w/ gold RoT").
    """
    from prosocial.prost.seq2seq import Prost

    data = [e for e in examples if e.response and e.response.strip()]
    if not data:
        raise ValueError("the Prost report needs examples with a gold response")

    def scores(subset: Sequence[Example], rots: Sequence[Sequence[str]] | None) -> dict[str, float]:
        replies = generator.generate([e.context for e in subset], rots)
        refs = [e.response for e in subset]
        out = {"bleu4": float(np.mean([bleu4(r.response, g) for r, g in zip(replies, refs, strict=True)])),
               "f1": float(np.mean([unigram_f1(r.response, g) for r, g in zip(replies, refs, strict=True)]))}
        if isinstance(generator, Prost):
            out["perplexity"] = perplexity(generator.response_nlls(subset, gold_rots=rots is not None))
        return out

    result: dict[str, Any] = {"n": float(len(data)), **scores(data, None)}
    grounded = [e for e in data if any(r.strip() for r in e.rots)]
    if grounded:
        result["gold_rot_n"] = float(len(grounded))
        result.update({f"gold_rot_{k}": v for k, v in scores(grounded, [e.rots for e in grounded]).items()})
    return result


def prost_table(results: dict[str, dict[str, Any]]) -> str:
    """Table 3's layout (BLEU-4 and F1 ×100), plus the "w/ gold RoT" row where the data has RoTs."""
    lines = ["| model | n | BLEU-4 | F1 | Perplexity |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for prefix, title in (("", name), ("gold_rot_", f"{name} (w/ gold RoT)")):
            if f"{prefix}bleu4" in r:
                n = int(r[f"{prefix}n" if prefix else "n"])
                lines.append(f"| {title} | {n} | {_cell(r[f'{prefix}bleu4'], fmt='{:.2f}')} | "
                             f"{_cell(r[f'{prefix}f1'], fmt='{:.2f}')} | "
                             f"{_cell(r.get(f'{prefix}perplexity'), 1.0, '{:.2f}')} |")
    return "\n".join(lines)


# --- Table 5 --------------------------------------------------------------------------------------------------


def toxichat_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 5's layout (percent), with the neutral share the paper discusses in the text."""
    lines = ["| system | n | Disagree ↑ | Agree ↓ | Neutral | Offense ↓ | Bad ↓ |", "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['n']} | {r['disagree']:.1f} | {r['agree']:.1f} | {r['neutral']:.1f} | "
                     f"{r['offense']:.1f} | {r['bad']:.1f} |")
    return "\n".join(lines)


def evaluator_table(dev: Mapping[str, Any]) -> str:
    """The evaluators' own dev scores against ToxiChat's human labels, for printing beside Table 5."""
    lines = ["| evaluator | n | accuracy | macro F1 | per class (P / R) |", "|---|---|---|---|---|"]
    for key, title in (("offense", "offense (all comments and replies)"), ("stance", "stance (all labelled pairs)"),
                       ("stance_toward_previous_turn", "stance toward the previous turn")):
        m = dev[key]
        classes = "; ".join(f"{label} {100 * c['precision']:.0f} / {100 * c['recall']:.0f}"
                            for label, c in m["per_class"].items())
        n = sum(c["support"] for c in m["per_class"].values())
        lines.append(f"| {title} | {n} | {100 * m['accuracy']:.1f} | {100 * m['macro_f1']:.1f} | {classes} |")
    return "\n".join(lines)


def reference_table(reference: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """ToxiChat's own chatbot replies scored by human labels and by the evaluators: the system-level check."""
    rows = {f"{system} ({who})": r[who] for system, r in reference.items() for who in ("human", "classifier")}
    return toxichat_table(rows)


def toxichat_sections(results: Mapping[str, Mapping[str, Any]], reference: Mapping[str, Any],
                      dev: Mapping[str, Any] | None) -> list[str]:
    """The Table 5 report: the table and how to read it, the evaluators checked on ToxiChat's own chatbot replies,
    and (when the evaluators' config holds them) their dev scores."""
    sections = [toxichat_table(results), "Percent of replies. Disagree / Agree / Neutral: the stance evaluator on "
                "(last comment, reply); Offense: the offense evaluator on the reply; Bad: reply contains a word of "
                "Zhou et al.'s list.", "## Check: ToxiChat's own chatbot replies, human labels vs. our evaluators\n\n"
                + reference_table(reference)]
    if dev:
        sections.append("## The evaluators on ToxiChat dev (human labels)\n\n" + evaluator_table(dev))
    return sections
