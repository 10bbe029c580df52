"""What every evaluation report states and how it is written (`prosocial.eval.report_files`)."""

from __future__ import annotations

import json
import random

import numpy as np

from prosocial import __version__
from prosocial.eval.report_files import (
    describe_sample,
    provenance,
    seed_everything,
    seeded_sample,
    slug,
    write_report,
)


def test_provenance_states_version_machine_time_and_the_callers_details():
    meta = provenance(command="eval canary", seed=3)
    assert meta["prosocial_version"] == __version__ and meta["seed"] == 3 and meta["command"] == "eval canary"
    assert {"python", "machine", "date"} <= set(meta)


def test_seeding_and_samples_are_reproducible():
    seed_everything(5)
    first = (random.random(), float(np.random.rand()))
    seed_everything(5)
    assert (random.random(), float(np.random.rand())) == first
    items = list(range(100))
    sample = seeded_sample(items, 10, seed=1)
    assert sample == sorted(sample) and len(set(sample)) == 10 and sample == seeded_sample(items, 10, seed=1)
    assert seeded_sample(items, None, 1) == items and seeded_sample(items, 200, 1) == items
    assert describe_sample("dev.jsonl", 10, 100, 1, "threads") == "dev.jsonl: 10 of 100 threads (seeded sample, seed 1)"
    assert describe_sample("dev.jsonl", 5, 5, 1) == "dev.jsonl: 5 of 5 examples"


def test_a_report_is_markdown_then_provenance_beside_json(tmp_path):
    out = tmp_path / "reports" / "canary"
    write_report(out, "Table 2", ["| a |", "note"], {"seed": 0, "data": "café"}, {"m": {"accuracy": 0.5}})
    text = out.with_suffix(".md").read_text()
    assert text.startswith("# Table 2\n\n| a |\n\nnote\n\n## Provenance\n\n```json\n") and "café" in text
    assert json.loads(out.with_suffix(".json").read_text()) == {
        "meta": {"seed": 0, "data": "café"}, "results": {"m": {"accuracy": 0.5}}}
    assert slug("SmolLM2-135M, P0") == "smollm2-135m--p0"
