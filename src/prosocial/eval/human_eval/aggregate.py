"""Table 4 from stored judgments: win / tie / lose per dimension, bootstrap intervals, rater agreement.

Percentages are over all judgments (every rater's answer counts once), as a share of A wins, ties and B wins.
Intervals come from a bootstrap over items, not judgments, because several raters of one item are not
independent samples. Agreement is Krippendorff's alpha (Krippendorff 2011) over items as units and raters as
coders: nominal (a / tie / b as unordered categories) and interval (a = -1, tie = 0, b = 1, so "a" vs "tie"
is a smaller disagreement than "a" vs "b").
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prosocial.collect.agreement import krippendorff_alpha
from prosocial.eval.human_eval.store import Judgment, Store
from prosocial.eval.human_eval.tasks import DIMENSIONS
from prosocial.io import atomic_write

OUTCOMES: tuple[str, ...] = ("a", "tie", "b")
_POSITION = {"a": -1.0, "tie": 0.0, "b": 1.0}


def _shares(winners: Sequence[str]) -> dict[str, float]:
    counts = Counter(winners)
    return {o: 100.0 * counts[o] / len(winners) for o in OUTCOMES}


def aggregate(judgments: Sequence[Judgment], bootstrap: int = 1000, seed: int = 0,
              confidence: float = 0.95) -> dict[str, Any]:
    """Per dimension: shares of a / tie / b (percent), their bootstrap intervals, alpha, and counts.

    The bootstrap resamples items with all their judgments together (a cluster bootstrap), which
    `scipy.stats.bootstrap` does not offer: it resamples observations independently.
    """
    by_dim: dict[str, dict[str, list[str]]] = {d: defaultdict(list) for d in DIMENSIONS}
    for j in judgments:
        by_dim.setdefault(j.dimension, defaultdict(list))[j.item_id].append(j.winner)
    rng = random.Random(seed)
    low, high = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    out: dict[str, Any] = {}
    for dimension, items in by_dim.items():
        keys = sorted(items)
        winners = [w for k in keys for w in items[k]]
        if not winners:
            out[dimension] = {"judgments": 0, "items": 0}
            continue
        samples = []
        for _ in range(bootstrap):
            drawn = [w for k in rng.choices(keys, k=len(keys)) for w in items[k]]
            samples.append([_shares(drawn)[o] for o in OUTCOMES])
        bounds = np.percentile(np.array(samples), [low, high], axis=0) if bootstrap else None
        units = [items[k] for k in keys]
        out[dimension] = {
            "share": _shares(winners),
            "ci": {o: [float(bounds[0][i]), float(bounds[1][i])] for i, o in enumerate(OUTCOMES)} if bootstrap else {},
            "alpha_nominal": krippendorff_alpha(units),
            "alpha_interval": krippendorff_alpha([[_POSITION[w] for w in u] for u in units], "interval"),
            "judgments": len(winners),
            "items": len(keys),
            "raters": len({j.rater for j in judgments if j.dimension == dimension}),
        }
    return out


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def table(result: dict[str, Any], system_a: str, system_b: str) -> str:
    """Table 4's layout: a row per system and one for ties, a column per dimension; CIs in brackets."""
    dims = [d for d in DIMENSIONS if result.get(d, {}).get("judgments")]
    lines = ["| | " + " | ".join(d.capitalize() for d in dims) + " |", "|---|" + "---|" * len(dims)]
    for outcome, title in (("a", system_a), ("tie", "Tie"), ("b", system_b)):
        cells = []
        for d in dims:
            r = result[d]
            ci = r["ci"].get(outcome)
            cells.append(f"{r['share'][outcome]:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append("| Krippendorff's α (nominal / interval) | "
                 + " | ".join(f"{_fmt(result[d]['alpha_nominal'])} / {_fmt(result[d]['alpha_interval'])}"
                              for d in dims) + " |")
    lines.append("| judgments (items, raters) | " + " | ".join(
        f"{result[d]['judgments']} ({result[d]['items']}, {result[d]['raters']})" for d in dims) + " |")
    return "\n".join(lines)


def export_csv(store: Store, path: str | Path) -> int:
    """Every judgment, de-blinded (system names and which was shown left), one row each; returns the count."""
    study = store.study()
    names = {"a": study["system_a"], "b": study["system_b"], "tie": "tie"}
    left = {t.item_id: t.left for t in store.tasks()}
    judgments = store.judgments()
    with atomic_write(Path(path)) as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "rater", "dimension", "choice", "winner", "winner_system", "left_system",
                         "system_a", "system_b", "created"])
        for j in judgments:
            writer.writerow([j.item_id, j.rater, j.dimension, j.choice, j.winner, names[j.winner],
                             names[left[j.item_id]], study["system_a"], study["system_b"], j.created])
    return len(judgments)
