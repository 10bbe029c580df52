"""User norms: reading norm files (errors with file, line, field), matching, what a match does to a verdict,
the agent grounded in a norm added at run time, and `run_norm_tests`. Matching uses the packaged MiniLM."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from prosocial.canary import load_detector
from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.canary.baselines import KeywordDetector
from prosocial.canary.norms import (
    Norm,
    NormBank,
    NormCase,
    NormedDetector,
    load_norms,
    read_cases,
    read_norms,
    run_norm_tests,
)
from prosocial.data.labels import SafetyLabel
from prosocial.errors import DataError
from prosocial.prost.base import Reply, ResponseGenerator
from prosocial.steer.agent import ProsocialAgent

PACKS = Path(__file__).parent.parent / "docs" / "norms"
SPOILERS = {
    "id": "no-spoilers",
    "rot": "It's rude to spoil a story for people who haven't seen it.",
    "level": "caution",
    "examples": ["Bruce Willis was dead the whole time in The Sixth Sense",
                 "the ending of the movie is that the butler did it",
                 "spoiler: the main character dies in the last episode"],
    "counter_examples": ["I loved The Sixth Sense, you should watch it"],
}


def _jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class FixedDetector(SafetyDetector):
    """Gives every context the same label, so a test sees exactly what a norm changes."""

    def __init__(self, label: SafetyLabel):
        self.label = label

    def predict(self, contexts, with_rots=True):
        rots = ["base RoT"] if with_rots and not self.label.is_casual else []
        return [Verdict(self.label, {"__casual__": 0.5}, list(rots)) for _ in contexts]


def test_norm_files_read_in_both_formats(tmp_path):
    yaml_norms = read_norms(PACKS / "children.yaml")
    jsonl_norms = read_norms(PACKS / "clinic.jsonl")
    assert len(yaml_norms) == len(jsonl_norms) == 8
    assert {n.level for n in yaml_norms + jsonl_norms} == {"caution", "intervention", "allowed"}
    assert yaml_norms[0].origin.endswith("children.yaml:3")
    listed = tmp_path / "n.yml"
    listed.write_text("- id: a\n  rot: It's bad.\n  level: caution\n  examples: [x y]\n", encoding="utf-8")
    assert read_norms(listed)[0].examples == ("x y",)


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("- id: a\n  rot: r\n  level: severe\n  examples: [x]\n", 3, "level", "unknown level 'severe'"),
        ("- id: a\n  rot: r\n  level: caution\n  examples: []\n", 4, "examples", "at least one"),
        ("- id: a\n  rot: r\n  level: caution\n  exmaples: [x]\n", 4, "exmaples", "unknown field"),
        ("- id: a\n  rot: r\n  level: caution\n", 1, "examples", "missing field"),
        ("- id: a\n  rot: r\n  level: caution\n  examples: [x, '  ']\n", 4, "examples", "empty text"),
        ("- id: a\n  rot: r\n  level: caution\n  examples: [x]\n  min_similarity: 2\n", 5, "min_similarity", "-1 to 1"),
        ("- id: a b\n  rot: r\n  level: caution\n  examples: [x]\n", 1, "id", "an id is"),
        ("- id: a\n  rot: r\n  level: caution\n  examples: [x]\n  counter_examples: [x]\n", 5, "counter_examples",
         "both an example and a counter-example"),
        ("- id: a\n  rot: r\n  level: caution\n  examples: [x\n", None, None, "invalid YAML"),
        ("[]\n", None, None, "no norms"),
    ],
)
def test_bad_yaml_norms_name_file_line_and_field(tmp_path, text, line, field, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_norms(path)
    problem = error.value.problems[0]
    assert problem.path == str(path) and words in problem.message
    if line is not None:
        assert (problem.line, problem.field) == (line, field)


def test_bad_jsonl_norms_and_files(tmp_path):
    path = _jsonl(tmp_path / "n.jsonl", [SPOILERS, SPOILERS | {"id": "b", "level": "sometimes"}])
    with pytest.raises(DataError, match=r"n.jsonl, line 2, field 'level': unknown level"):
        read_norms(path)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(SPOILERS).encode() + b"\n" + b'{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl, line 2: not UTF-8"):
        read_norms(latin)
    (tmp_path / "n.txt").write_text("id: a\n", encoding="utf-8")
    with pytest.raises(DataError, match="YAML .* or JSON Lines"):
        read_norms(tmp_path / "n.txt")
    with pytest.raises(DataError, match="no such norms file"):
        read_norms(tmp_path / "missing.yaml")


BILLION_LAUGHS = "".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    + ["norms:\n- id: bomb\n  rot: r\n  level: *i\n  examples: [x]\n"]
)


@pytest.mark.timeout(5)
def test_a_yaml_alias_bomb_is_refused_at_once_and_never_expanded(tmp_path):
    """The issue's 548-byte file took 101 s and 5.7 GB before a MemoryError; `level: *i` is 9^9 strings."""
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    assert len(BILLION_LAUGHS) < 1000
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        read_norms(path)
    assert time.perf_counter() - started < 1.0
    problem = error.value.problems[0]
    assert (problem.path, problem.line) == (str(path), 1) and "anchors (&a) are not allowed" in problem.message
    assert len(str(error.value)) < 300
    alias_only = tmp_path / "alias.yaml"  # an alias to an undefined anchor is a YAML error, also quick
    alias_only.write_text("- id: a\n  rot: r\n  level: *nowhere\n  examples: [x]\n", encoding="utf-8")
    with pytest.raises(DataError, match="invalid YAML|aliases"):
        read_norms(alias_only)


@pytest.mark.timeout(5)
@pytest.mark.parametrize("nest", [lambda n: "[" * n + "]" * n, lambda n: "".join(f"{'  ' * i}k:\n" for i in range(n))])
def test_yaml_nested_too_deep_is_one_error_not_a_recursion_error(tmp_path, nest):
    import time

    path = tmp_path / "deep.yaml"
    path.write_text("- id: a\n  rot: r\n  level: caution\n  examples: [x]\n  counter_examples: " + nest(50_000)
                    if nest(1).startswith("[") else "norms:\n" + nest(100), encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(DataError, match="nested more than 16 levels deep") as error:
        read_norms(path)
    assert time.perf_counter() - started < 1.0
    assert len(str(error.value)) < 300


def test_a_huge_value_is_cut_short_in_the_message(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("- id: a\n  rot: r\n  level: " + "x" * 100_000 + "\n  examples: [x]\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown level 'xxx") as error:
        read_norms(path)
    assert len(str(error.value)) < 300


def test_duplicate_ids_across_files_are_an_error_naming_both(tmp_path):
    one = _jsonl(tmp_path / "one.jsonl", [SPOILERS])
    two = _jsonl(tmp_path / "two.jsonl", [SPOILERS | {"id": "other"}, SPOILERS])
    with pytest.raises(DataError) as error:
        load_norms([one, two])
    problem = error.value.problems[0]
    assert (problem.path, problem.line, problem.field) == (str(two), 2, "id")
    assert "duplicate id 'no-spoilers'" in problem.message and f"{one}:1" in problem.message


def test_a_norm_added_at_run_time_changes_verdict_and_reply_without_touching_a_model(tmp_path):
    from prosocial.canary.mini import DEFAULT_DIR

    def fingerprint() -> str:
        digest = hashlib.sha256()
        for file in sorted(Path(DEFAULT_DIR).rglob("*")):
            if file.is_file():
                digest.update(file.name.encode() + file.read_bytes())
        return digest.hexdigest()

    before = fingerprint()
    situation = ["Have you seen it yet?", "No, not yet.", "Bruce Willis is a ghost the whole time in The Sixth Sense"]
    base = load_detector("canary-mini")
    assert base.check(situation).coarse.value == "casual"  # the base model has no such norm
    normed = load_detector("canary-mini", norms=[_jsonl(tmp_path / "spoilers.jsonl", [SPOILERS])])
    verdict = normed.check(situation)
    assert verdict.coarse.value == "needs caution" and verdict.norm == "no-spoilers"
    assert verdict.rots[0] == SPOILERS["rot"]
    assert normed.check(["I loved The Sixth Sense, you should watch it"]).norm is None  # its counter-example
    assert normed.check(["What a lovely day for a walk!"]).coarse.value == "casual"

    class GroundedEcho(ResponseGenerator):
        def generate(self, contexts, rots=None):
            return [Reply(f"I hear you, but {r[0][0].lower()}{r[0][1:]}" if r else "Sure!") for r in rots]

    turn = ProsocialAgent(normed, GroundedEcho()).respond(situation)
    assert "spoil a story" in turn.response
    assert fingerprint() == before


@pytest.mark.parametrize(
    ("level", "base", "expected"),
    [
        ("caution", SafetyLabel.CASUAL, SafetyLabel.NEEDS_CAUTION),
        ("caution", SafetyLabel.NEEDS_INTERVENTION, SafetyLabel.NEEDS_INTERVENTION),
        ("intervention", SafetyLabel.CASUAL, SafetyLabel.NEEDS_INTERVENTION),
        ("allowed", SafetyLabel.PROBABLY_NEEDS_CAUTION, SafetyLabel.CASUAL),
        ("allowed", SafetyLabel.NEEDS_INTERVENTION, SafetyLabel.NEEDS_INTERVENTION),  # never lowered
    ],
)
def test_what_a_match_does(level, base, expected):
    norm = Norm("n", "It's a rule.", level, ("we blew up the enemy base in the game last night",))
    detector = NormedDetector(FixedDetector(base), [norm])
    matched, unmatched = detector.predict([["we blew up the enemy base in the game last night"],
                                           ["my grandma bakes the best apple pie"]])
    assert matched.safety_label is expected and unmatched.safety_label is base
    if expected is not base:
        assert matched.norm == "n"
    if not expected.is_casual and level != "allowed":
        assert matched.rots == ["It's a rule."] + (["base RoT"] if not base.is_casual else [])
    assert detector.predict([["we blew up the enemy base in the game last night"]], with_rots=False)[0].rots == []


def test_norm_tests_report_examples_and_cases(tmp_path):
    detector = NormedDetector(KeywordDetector(), [PACKS / "gaming.yaml"])
    cases = [NormCase("where can I download an aimbot for this game?", "gaming.cheats"),
             NormCase("what graphics card do you have?", None),
             NormCase("what graphics card do you have?", "gaming.cheats")]
    results = run_norm_tests(detector, cases)
    examples = [r for r in results if r.kind == "example"]
    assert len(examples) == 24 and all(r.passed for r in examples)  # in-sample: each example near its prototype
    assert [r.passed for r in results if r.kind == "case"] == [True, True, False]
    held_out = run_norm_tests(detector, leave_one_out=True)
    assert {r.kind for r in held_out} == {"held-out example"} and not all(r.passed for r in held_out)
    with pytest.raises(DataError, match="no norm 'gaming.nope'"):
        run_norm_tests(detector, [NormCase("x", "gaming.nope", "c.jsonl:3")])
    bad = _jsonl(tmp_path / "cases.jsonl", [{"text": "ok", "norm": None}, {"norm": "a"}])
    with pytest.raises(DataError, match=r"cases.jsonl, line 2, field 'text'"):
        read_cases(bad)


def test_packs_held_out_cases_load():
    for pack in ("children.test.jsonl", "gaming.test.jsonl", "clinic.test.jsonl"):
        cases = read_cases(PACKS / pack)
        assert len(cases) == 32 and sum(c.norm is None for c in cases) == 8


def test_large_banks_cache_their_embeddings(tmp_path):
    norms = [Norm(f"n{i}", f"Rule number {i}.", "caution", (f"situation {i}",)) for i in range(3)]
    first = NormedDetector(KeywordDetector(), norms, cache_dir=tmp_path).load()
    assert len(list(tmp_path.glob("norms-*.npy"))) == 1
    again = NormedDetector(KeywordDetector(), norms, cache_dir=tmp_path).load()
    assert (again.bank._index["prototypes"] == first.bank._index["prototypes"]).all()


def test_cli_norms_test_check_and_serve(tmp_path):
    from typer.testing import CliRunner

    from prosocial.cli import app

    runner = CliRunner()
    pack = str(PACKS / "gaming.yaml")
    result = runner.invoke(app, ["norms", "test", pack, "--backend", "keywords"])
    assert result.exit_code == 0 and "24 of 24 checks passed" in result.output
    result = runner.invoke(app, ["norms", "test", pack, "--backend", "keywords",
                                 "--cases", str(PACKS / "gaming.test.jsonl")])
    assert result.exit_code == 1 and "FAIL" in result.output and "of 56 checks passed" in result.output
    norms = _jsonl(tmp_path / "spoilers.jsonl", [SPOILERS])
    result = runner.invoke(app, ["check", "--backend", "keywords", "--norms", str(norms), "--json",
                                 "the ending of the film is that the butler did it"])
    verdict = json.loads(result.stdout)
    assert verdict["norm"] == "no-spoilers" and verdict["rots"] == [SPOILERS["rot"]]
    bad = _jsonl(tmp_path / "bad.jsonl", [SPOILERS | {"level": "severe"}])
    for command in (["check", "--backend", "keywords", "--norms", str(bad), "hi"], ["serve", "--norms", str(bad)],
                    ["norms", "test", str(bad)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "bad.jsonl, line 1, field 'level'" in result.output, command


class HashEmbedder:
    """Deterministic unit vectors per text (a stand-in for MiniLM where only the search is under test)."""

    model_dir = None

    def encode(self, texts):
        import numpy as np

        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        vectors = np.stack([np.random.default_rng(seed).normal(size=384) for seed in seeds])
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_large_banks_search_an_hnsw_index_with_the_same_answers(tmp_path):
    norms = [Norm(f"n{i}", f"rule {i}", "caution", (f"case {i} a", f"case {i} b")) for i in range(400)]
    queries = [f"case {i} a" for i in range(0, 400, 7)] + ["nothing like it"]
    settings = {"embedder": HashEmbedder(), "min_similarity": 0.3, "cache_dir": tmp_path}
    exact, approximate = NormBank(norms, **settings), NormBank(norms, ann_from=100, **settings)
    assert exact._ann is None and approximate._ann is not None
    found = [m and m.norm.id for m in approximate.match(queries)]
    assert found == [m and m.norm.id for m in exact.match(queries)]
    assert found[:-1] == [f"n{i}" for i in range(0, 400, 7)] and found[-1] is None
