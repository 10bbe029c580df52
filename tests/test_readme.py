"""The README's table of what the shipped Canary-mini says must stay true of the shipped model."""

from __future__ import annotations

import re

from prosocial.canary import load_detector
from tests.conftest import REPO

TABLE_INTRO = "What it says today (shipped model; coarse label, and the category the danger head names):"


def readme_examples() -> list[tuple[list[str], str, str, str]]:
    """(context, coarse label, danger cell, RoT cell) per row; earlier turns are written "[turn / turn] last"."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = text[text.index(TABLE_INTRO) :].splitlines()[4:]  # past the intro, a blank line, header and rule
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        context, label, danger, rot = (cell.strip() for cell in line.strip("|").split("|"))
        earlier = re.match(r"\[(.*?)\] (.*)", context)
        turns = [*earlier.group(1).split(" / "), earlier.group(2)] if earlier else [context]
        rows.append((turns, label, danger, rot))
    return rows


def test_the_readme_examples_are_what_the_shipped_model_says() -> None:
    rows = readme_examples()
    assert len(rows) >= 10
    verdicts = load_detector("canary-mini").predict([turns for turns, _, _, _ in rows])
    wrong = [
        (turns[-1], label, verdict.coarse.value, verdict.danger, verdict.rots[:1])
        for (turns, label, danger, rot), verdict in zip(rows, verdicts, strict=True)
        if verdict.coarse.value != label or (verdict.rots[0] if verdict.rots else "–") != rot
        or (verdict.danger or "–") != danger
    ]
    # bfloat16 on another CPU may move a borderline score: one row may differ, more means the README is stale
    assert len(wrong) <= 1, wrong


def test_the_readme_names_every_example_the_shipped_packs_fail() -> None:
    """What the README names must be what `prosocial norms test` finds on the shipped model (children, gaming,
    spoilers: none; the clinic: two symptoms, while the danger head keeps its medication questions casual)."""
    from prosocial.canary.norms import run_norm_tests

    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    detector = load_detector("canary-mini")
    failed = {}
    for pack in ("children.yaml", "gaming.yaml", "spoilers.yaml", "clinic.jsonl"):
        normed = load_detector("canary-mini", norms=[REPO / "docs" / "norms" / pack])
        normed.base = detector  # one model for the four packs
        failed[pack] = [(r.case.norm, r.case.text) for r in run_norm_tests(normed) if not r.passed]
    assert failed["children.yaml"] == failed["gaming.yaml"] == failed["spoilers.yaml"] == []
    clinic = failed["clinic.jsonl"]
    assert "the clinic's fails two symptoms" in text and len(clinic) == 2, clinic
    assert all(f'("{t}")' in text for _, t in clinic), clinic
