"""Krippendorff's alpha (Krippendorff 2011), for the collection admin page and the human evaluation (no extra
dependency for one formula; the `krippendorff` package would add a dependency for what is 30 lines here)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], metric: str = "nominal") -> float:
    """Krippendorff's alpha from the values each unit received (missing ratings simply absent).

    Builds the coincidence matrix over units with at least two values; `metric` is "nominal" (δ = 1 when
    values differ) or "interval" (δ = squared difference; values must be numbers). NaN when undefined: fewer
    than two pairable values, or no variation at all (every value the same).
    """
    if metric not in ("nominal", "interval"):
        raise ValueError(f"metric must be 'nominal' or 'interval', got {metric!r}")
    pairable = [list(u) for u in units if len(u) >= 2]
    values = sorted({v for u in pairable for v in u}, key=repr)
    if not values:
        return math.nan
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((len(values), len(values)))
    for unit in pairable:
        counts = Counter(unit)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                coincidence[index[c], index[k]] += n_c * (n_k - (c == k)) / (len(unit) - 1)
    if metric == "nominal":
        delta = 1.0 - np.eye(len(values))
    else:
        x = np.array(values, dtype=float)
        delta = (x[:, None] - x[None, :]) ** 2
    marginals = coincidence.sum(axis=1)
    n = marginals.sum()
    expected = (np.outer(marginals, marginals) * delta).sum() / (n - 1) if n > 1 else 0.0
    if expected == 0:
        return math.nan
    return float(1.0 - (coincidence * delta).sum() / expected)


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Nominal alpha as the admin page shows it: None where alpha is undefined."""
    alpha = krippendorff_alpha([list(u) for u in units])
    return None if math.isnan(alpha) else alpha
