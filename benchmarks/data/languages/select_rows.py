"""Pick the English rows of the language test set (run once; the translations were written for its output).

200 dev contexts' last turns, 100 casual and 100 flagged, 4 to 30 words each, from sources whose licences allow a
CC-BY-4.0 derivative: the danger corpus's dev rows (this project, CC-BY-4.0), ETHICS commonsense (MIT), DiaSafety
(Apache-2.0), ConvAbuse (CC-BY-4.0) and BYU Chit-Chat (MIT). Seeded, so the same data gives the same rows.

    python benchmarks/data/languages/select_rows.py > benchmarks/data/languages/english.jsonl
"""

import json
import random
import re
import sys

from prosocial.canary.danger_train import CORPUS
from prosocial.data.adapters import load_benchmark

#: (source, coarse, how many)
PLAN = [("danger:emergency", "flagged", 40), ("danger:act", "flagged", 20), ("ethics_commonsense", "flagged", 20),
        ("diasafety", "flagged", 20), ("byu_chitchat", "casual", 40), ("danger:benign", "casual", 20),
        ("ethics_commonsense", "casual", 20), ("convabuse", "casual", 20)]


#: slurs and explicit sexual text are left out: the set tests reading a language, not what a translator will write
EXCLUDE = re.compile(r"nigg|fag|pussy|cunt|retard", re.IGNORECASE)


def candidates(source: str, coarse: str) -> list[tuple[str, str]]:
    """(id, text) of the dev rows of `source` with the wanted coarse label."""
    if source.startswith("danger:"):
        kind = source.split(":")[1]
        rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["id"], r["text"]) for r in rows if r["split"] == "dev" and r["kind"] == kind]
    rows = []
    for i, example in enumerate(load_benchmark(source, "dev")):
        if example.safety_label is not None and example.safety_label.is_casual == (coarse == "casual"):
            rows.append((f"{source}:dev:{i}", example.context[-1]))
    return rows


def main() -> None:
    seen = set()
    for source, coarse, count in PLAN:
        rng = random.Random(f"languages:{source}:{coarse}")
        pool = [(i, t) for i, t in candidates(source, coarse) if 4 <= len(t.split()) <= 30 and t not in seen
                and not EXCLUDE.search(t)]
        for row_id, text in rng.sample(pool, count):
            seen.add(text)
            row = {"id": row_id, "source": source, "coarse": coarse, "en": " ".join(text.split())}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
