"""The paper's fine-tuning recipe around `finetune` (B.1, B.2): which data, held out how, mixed with what.

- Dev data: given files, or a share of the training *dialogues* held out, so no dialogue is on both sides.
- The mixture: ProsocialDialog's pairs plus those of each casual corpus the weights name, read from the shared data
  folder (`prosocial.data.adapters`); a corpus without a reader or without files is skipped with a warning.
- Canary's optional stage 1: pre-training on situation → RoT pairs (Social Chemistry / MIC / Delphi style JSON
  Lines) before the ProsocialDialog stage.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from prosocial.data.schema import Example
from prosocial.errors import DataError
from prosocial.io import read_jsonl

if TYPE_CHECKING:  # torch loads only when a training does
    from prosocial.lm.finetune import TrainConfig
    from prosocial.lm.inference import Pair

log = logging.getLogger(__name__)

#: The mixture's name for the ProsocialDialog data being trained on.
PROSOCIAL = "prosocial"
PRETRAIN_DIR = "pretrain"


def read_split(data: Sequence[Path], dev: Sequence[Path] | None, fraction: float, seed: int,
               limit: int | None = None) -> tuple[list[Example], list[Example]]:
    """Training and dev examples; without dev files, whole dialogues are held out so no dialogue is in both.
    `limit` keeps the first training examples (smoke runs)."""
    from prosocial.data.formats import read_dialogues

    dialogues = [d for path in data for d in read_dialogues(path)]
    if dev:
        dev_dialogues = [d for path in dev for d in read_dialogues(path)]
    else:
        random.Random(seed).shuffle(dialogues)
        held = max(1, round(fraction * len(dialogues))) if len(dialogues) > 1 else 0
        dev_dialogues, dialogues = dialogues[:held], dialogues[held:]
    train = [e for d in dialogues for e in d.examples()][:limit]
    return train, [e for d in dev_dialogues for e in d.examples()]


def casual_sources(names: Sequence[str], root: Path | None, limit: int | None,
                   warn: Callable[[str], None] = log.warning) -> dict[str, list[Example]]:
    """The casual corpora of `names` that can be read (train split); each other one is skipped with a `warn`."""
    from prosocial.data.adapters import BENCHMARKS, load_benchmark

    out = {}
    for name in names:
        if name not in BENCHMARKS:
            warn(f"no reader for casual corpus {name!r}; its weight is ignored")
            continue
        try:
            out[name] = load_benchmark(name, split="train", root=root, limit=limit)
        except (FileNotFoundError, DataError) as error:
            warn(f"casual corpus {name!r} skipped: {error}")
    return out


def training_sources(
    train: list[Example],
    to_pairs: Callable[[list[Example]], list[Pair]],
    casual_to_pairs: Callable[[list[Example]], list[Pair]],
    weights: dict[str, float],
    casual_root: Path | None = None,
    casual_limit: int | None = None,
    casual: bool = True,
    warn: Callable[[str], None] = log.warning,
) -> dict[str, list[Pair]]:
    """ProsocialDialog's pairs and, with `casual`, those of each casual corpus the weights name."""
    sources = {PROSOCIAL: to_pairs(train)}
    if casual:
        found = casual_sources([n for n in weights if n != PROSOCIAL], casual_root, casual_limit, warn)
        sources |= {name: casual_to_pairs(examples) for name, examples in found.items()}
    return sources


def read_pairs(paths: Sequence[Path]) -> list[Pair]:
    """Pre-training pairs: JSON Lines of {"source": ..., "target": ...} (e.g. Social Chemistry situation → RoT)."""
    pairs = []
    for path in paths:
        for line, row in read_jsonl(path):
            if not isinstance(row, dict) or not isinstance(row.get("source"), str) or not isinstance(
                row.get("target"), str
            ):
                raise DataError.at(path, 'expected {"source": str, "target": str}', line)
            pairs.append((row["source"], row["target"]))
    return pairs


def pretrain(model: str | Path, files: Sequence[Path], out: Path, config: TrainConfig, steps: int | None = None,
             new_tokens: Sequence[str] = (), resume: bool = False,
             announce: Callable[[str], None] = log.info) -> Path:
    """Stage 1 on the pairs of `files` into ``out/pretrain``, `steps` updates (None: the config's epochs); returns
    the folder stage 2 starts from. Once stage 2 has a checkpoint (a resumed run past stage 1), nothing is trained."""
    from prosocial.lm.finetune import CHECKPOINT_DIR, finetune

    stage = out / PRETRAIN_DIR
    if not (out / CHECKPOINT_DIR).exists():
        announce(f"stage 1: pre-training on {len(files)} file(s)")
        finetune(model, read_pairs(files), stage, replace(config, max_steps=steps), new_tokens=new_tokens,
                 resume=resume and (stage / CHECKPOINT_DIR).exists())
    return stage
