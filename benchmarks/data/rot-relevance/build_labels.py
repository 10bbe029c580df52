"""Rebuild `labels.jsonl`: the four hand-readings of Canary-mini's first RoT as one labelled set (see README.md).

    PYTHONPATH=src python benchmarks/data/rot-relevance/build_labels.py > benchmarks/data/rot-relevance/labels.jsonl

Each reading's report holds a table of its 100 items (user turn cut to ~100 characters, label, first RoT, source,
judgement, why); the items' full contexts are in the sample `benchmarks/bench_reasons.py` wrote to
`docs/reports/reasons.json` in the commit the reading was made from, item for item in the same order. Both are
read here and must agree on every item (turn prefix, label, RoT, source), else the item is dropped and named on
stderr. Each context is then found among the safety suite's dev contexts (`load_suite`, as the benchmark drew it)
for its dataset and row id. Rows from corpora whose licence does not let us pass their words on (the casual
corpora: DailyDialog and EmpatheticDialogues are non-commercial, BlendedSkillTalk names no licence) are left out.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
#: reading name -> (report, commit of reasons.json holding its sample, suite per_source the benchmark used)
READINGS = {
    "first-pipeline": ("reasons-handread-rots-first-pipeline.md", "75ae38c", 200),
    "seed0": ("reasons-handread-rots.md", "5e9fbb5", 200),
    "seed1": ("reasons-handread-rots-s19.md", "2d8821d", 150),
    "seed2": ("reasons-handread-rots-s19-precision-first.md", "22ef772", 150),
}
#: the report's name of a source -> the label set's
SOURCES = {"bank (gated or fallback)": "bank", "writer": "writer", "danger rule": "danger", "general rule": "general"}
#: datasets whose rows may be shared here, with their licences (see shared/data/README.md)
LICENCES = {"prosocial_dialog": "CC-BY-4.0", "sbic": "CC-BY-4.0", "convabuse": "CC-BY-4.0",
            "diasafety": "Apache-2.0", "ethics_commonsense": "MIT", "toxichat": "CC-BY-SA-4.0"}
_CELL = re.compile(r"(?<!\\)\|")


def table(report: Path) -> list[list[str]]:
    """The Items table's rows as cells: #, user turn, label, first RoT, source, judgement, why."""
    rows = []
    for line in report.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\| \d+ \|", line):
            cells = [c.strip().replace("\\|", "|") for c in _CELL.split(line.strip())[1:-1]]
            if len(cells) != 7:
                raise SystemExit(f"{report}: item {cells[0]} has {len(cells)} cells, expected 7")
            rows.append(cells)
    return rows


def _squash(text: str) -> str:
    """Whitespace as one space, zero-width characters gone (a report's table cannot show them)."""
    return " ".join(re.sub("[\u200b-\u200d\ufeff]", "", text).split())


def main() -> None:
    from prosocial.eval.safety_suite import load_suite

    suites = {}
    for name, (report, commit, per_source) in READINGS.items():
        if per_source not in suites:
            suite = load_suite(per_source=per_source, seed=0)
            suites[per_source] = {tuple(e.context[-3:]): (source, e.id) for source, examples in suite.by_source.items()
                                  for e in examples}
        sample = json.loads(subprocess.run(["git", "show", f"{commit}:docs/reports/reasons.json"], cwd=REPO,
                                           check=True, capture_output=True, text=True).stdout)
        sample = sample["rots"]["coverage"]["handread_sample"]
        items = table(REPO / "docs" / "reports" / report)
        if len(items) != len(sample):
            raise SystemExit(f"{report}: {len(items)} items but {len(sample)} in the sample of {commit}")
        for cells, drawn in zip(items, sample, strict=True):
            number, turn, label, rot, source, judgement, why = cells
            checks = {
                "user turn": _squash(drawn["context"][-1]).startswith(_squash(turn.rstrip("…"))),
                "label": drawn["label"].strip("_") == label,
                "first RoT": bool(drawn["rots"]) and _squash(drawn["rots"][0]) == _squash(rot),
                "source": drawn["source"] == source,
            }
            if not all(checks.values()):
                differ = [k for k, ok in checks.items() if not ok]
                print(f"{report} item {number}: dropped, the sample differs in {differ}", file=sys.stderr)
                continue
            dataset, example_id = suites[per_source].get(tuple(drawn["context"]), (None, None))
            if dataset not in LICENCES:
                print(f"{report} item {number}: left out, from {dataset} ({example_id})", file=sys.stderr)
                continue
            print(json.dumps({
                "reading": name, "report": f"docs/reports/{report}", "item": int(number),
                "dataset": dataset, "example_id": example_id, "licence": LICENCES[dataset],
                "context": drawn["context"], "label": label, "rot": drawn["rots"][0], "source": SOURCES[source],
                "off_topic": "off-topic" in judgement,
                "borderline": "borderline" in judgement or why.startswith("borderline"),
                "judgement": judgement, "why": why,
            }, ensure_ascii=False))


if __name__ == "__main__":
    main()
