"""Rebuild `src/prosocial/resources/norms/`: the casual chat turns that norm thresholds are calibrated on.

    .venv/bin/python scripts/make_casual_turns.py [/path/to/shared/data]     # a few seconds

`prosocial norms calibrate` must work wherever the package is installed, with no shared data folder, so a sample of
casual turns ships inside the package. Only BYU Chit-Chat's licence (MIT) allows that among the casual corpora
(DailyDialog and EmpatheticDialogues are non-commercial), so the sample is BYU Chit-Chat's: the latest turn of
`COUNT` contexts of its *train* split (`mapping.hash_split` by conversation, as every reader here splits it), drawn
with a fixed seed. The dev split stays unseen for the benchmarks' casual false-alarm figures.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

from prosocial.data.adapters import default_root, load_benchmark
from prosocial.io import write_jsonl
from prosocial.resources import RESOURCES

OUT = RESOURCES / "norms"
COUNT = 3000
SEED = 0

DATASHEET = """# Casual turns for calibrating norm thresholds

`casual_turns.jsonl`: {count:,} turns (`{{"text": ...}}`, one per line) of casual chit-chat, the latest turn of
contexts drawn with seed {seed} from the **train** split of BYU Chit-Chat (`prosocial.data.mapping.hash_split` by
conversation; the dev split is left for the benchmarks). `prosocial norms calibrate` sets each norm's threshold so
that at most a target share of these turns match it (`prosocial.canary.norms.calibrate`).

Only BYU Chit-Chat among the casual corpora may be redistributed (MIT, `LICENSE` beside this file; Perception,
Control and Cognition Lab, BYU; PyPI `chitchat-dataset`). Rebuilt by `scripts/make_casual_turns.py`. Give a
platform's own chat with `--casual FILE` to calibrate on what its users really write.
"""


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default_root()
    turns = [e.context[-1] for e in load_benchmark("byu_chitchat", "train", root=root)]
    sample = random.Random(SEED).sample(turns, COUNT)
    OUT.mkdir(parents=True, exist_ok=True)
    write_jsonl(OUT / "casual_turns.jsonl", ({"text": t} for t in sample))
    shutil.copyfile(root / "casual" / "byu_chitchat" / "LICENSE", OUT / "LICENSE")
    (OUT / "README.md").write_text(DATASHEET.format(count=COUNT, seed=SEED), encoding="utf-8")
    print(f"{COUNT} turns of {len(turns):,} written to {OUT}")


if __name__ == "__main__":
    main()
