"""How an evaluation report is made traceable and written: provenance, seeding, seeded samples, OUT.md + OUT.json.

Every `prosocial eval …` report states the package version, the machine, the time and the caller's details (data,
models, seed), seeds every RNG a model may draw from, and is written as Markdown for reading and JSON for
re-plotting, side by side.
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from prosocial import __version__
from prosocial.io import atomic_write, write_json

T = TypeVar("T")


def provenance(**extra: Any) -> dict[str, Any]:
    """What every report states so a figure can be traced: version, machine, time, and the caller's details."""
    return {
        "prosocial_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **extra,
    }


def seed_everything(seed: int) -> None:
    """Seed every RNG a model may draw from, so a report's numbers can be reproduced."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def seeded_sample(items: Sequence[T], limit: int | None, seed: int) -> list[T]:
    """`limit` of `items` drawn with `seed`, in their original order; all of them without a limit or when fewer."""
    if not limit or limit >= len(items):
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]


def describe_sample(what: str, kept: int, total: int, seed: int, unit: str = "examples") -> str:
    """"WHAT: KEPT of TOTAL UNIT", marked as a seeded sample when some were left out."""
    return f"{what}: {kept} of {total} {unit}" + (f" (seeded sample, seed {seed})" if kept < total else "")


def slug(label: str) -> str:
    """A file-name part from a report label ("SmolLM2-135M, P0" → "smollm2-135m--p0")."""
    return "".join(ch if ch.isalnum() else "-" for ch in label).strip("-").lower()


def write_report(out: Path, title: str, sections: list[str], meta: dict[str, Any], results: Any) -> None:
    """OUT.md (the title, the sections, then the provenance) and OUT.json (everything, for re-plotting)."""
    with atomic_write(out.with_suffix(".md")) as handle:
        handle.write(f"# {title}\n\n" + "\n\n".join(sections) + "\n\n## Provenance\n\n```json\n"
                     + json.dumps(meta, indent=2, ensure_ascii=False) + "\n```\n")
    write_json(out.with_suffix(".json"), {"meta": meta, "results": results})
