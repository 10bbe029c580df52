"""Add a writer's rows to the danger corpus: validated, de-duplicated, numbered, split by the corpus's rule.

    python scripts/add_danger_writer.py /tmp/danger-writers/J.jsonl [--corpus CORPUS]

Every row is checked as the corpus reader checks it (`prosocial.data.danger.read_corpus`: fields, kinds, the
taxonomy's categories and sub-categories) and a bad one stops the run naming the writer's file, line and field; a
row whose text is already in the corpus (case and spacing aside) is left out and listed, never silently, and so is
one that nearly repeats a row on the other side of the held-out line (token Jaccard ≥ `NEAR`: a training row
close to a held-out one, or the reverse, would let the benchmark measure memory). The rows
get the next ids (`danger-NNNN`) and the split `split_of` gives them — so a new held-out or dev writer must be
named in `HELD_OUT_WRITERS` / `DEV_WRITERS` first. The corpus is rewritten atomically; the writer's file is only
read. Prints the counts per split and kind.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

from prosocial.canary.danger_train import CORPUS
from prosocial.data.danger import read_corpus
from prosocial.io import read_jsonl, write_jsonl

#: token Jaccard at which a new row counts as a near repeat of a row across the held-out line
NEAR = 0.7
FIELDS = ("text", "prefix", "kind", "category", "subcategory", "person", "form", "tone", "writer")


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9']+", text.lower()))


def near_repeat(text: str, others: list[frozenset[str]]) -> bool:
    mine = words(text)
    return any(len(mine & other) >= NEAR * len(mine | other) for other in others if other)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, help="the writer's JSON Lines file")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()

    existing = [row for _, row in read_jsonl(args.corpus)]
    new = [{key: row.get(key, [] if key == "prefix" else "") for key in FIELDS} for _, row in read_jsonl(args.rows)]
    with tempfile.TemporaryDirectory() as scratch:  # the reader's checks, with the writer's own line numbers
        check = Path(scratch) / args.rows.name
        write_jsonl(check, new)
        try:
            cases = read_corpus(check)
        except ValueError as error:
            raise SystemExit(str(error).replace(str(check), str(args.rows))) from None
    seen = {normalised(row["text"]) for row in existing}
    side = {True: [], False: []}  # held out or not → the rows' words
    for r in existing:
        side[r["split"] == "heldout"].append(words(r["text"]))
    number = 1 + max(int(row["id"].rsplit("-", 1)[1]) for row in existing)
    added, dropped, near = [], [], []
    for row, case in zip(new, cases, strict=True):  # the reader gave each case its split (`split_of`)
        key = normalised(case.text)
        if key in seen:
            dropped.append(case.text)
            continue
        held_out = case.split == "heldout"
        if near_repeat(case.text, side[not held_out]):  # a row on the other side of the held-out line
            near.append(case.text)
            continue
        seen.add(key)
        side[held_out].append(words(case.text))
        added.append({"id": f"danger-{number:04d}", **row, "text": case.text, "prefix": list(case.prefix),
                      "split": case.split})
        number += 1
    write_jsonl(args.corpus, [*existing, *added])
    read_corpus(args.corpus)  # the whole corpus still reads
    counts = Counter(f"{row['split']}:{row['kind']}" for row in added)
    print(json.dumps({"added": len(added), "left_out_as_duplicates": dropped,
                      "left_out_as_near_repeats_across_the_held_out_line": near, "by_split_and_kind": dict(counts)},
                     indent=1))


if __name__ == "__main__":
    main()
