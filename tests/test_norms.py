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
    CalibrationSettings,
    Norm,
    NormBank,
    NormCase,
    NormedDetector,
    calibrate,
    load_norms,
    norm_report,
    read_cases,
    read_casual,
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
    workplace = read_norms(PACKS / "workplace.yaml")  # session 21: cases written apart, from the rules alone
    cases = read_cases(PACKS / "workplace.test.jsonl")
    assert len(cases) == 48 and sum(c.norm is None for c in cases) == 12
    assert {c.norm for c in cases if c.norm} == {n.id for n in workplace}


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


# --- matchers, counter-examples, thresholds, calibration and the per-norm report (issue #35) -------------------


class VectorEmbedder:
    """Texts to the unit vectors a test chooses, so a test sets every similarity exactly."""

    model_dir = None

    def __init__(self, vectors: dict[str, Sequence[float]]):
        import numpy as np

        self.vectors = {t: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for t, v in vectors.items()}

    def encode(self, texts):
        import numpy as np

        return np.stack([self.vectors[t] for t in texts])


GUARDED = Norm("n", "rule", "caution", ("example one", "example two"), ("counter",))
GUARDED_VECTORS = {"rule": [1, 0, 0], "example one": [0.8, 0.6, 0], "example two": [0.8, -0.6, 0],
                   "counter": [0.5, 0.6, 0.62],
                   # a true case near "example one" that shares the counter-example's topic: prototype 0.62,
                   # counter-example 0.89, "example one" 0.95
                   "true case": [0.62, 0.75, 0.2],
                   # the counter-example's near neighbour: prototype 0.55, "example one" 0.71, counter-example 0.98
                   "near neighbour": [0.55, 0.45, 0.7]}


def test_a_counter_example_vetoes_what_is_closer_to_it_than_to_the_norms_examples():
    bank = NormBank([GUARDED], embedder=VectorEmbedder(GUARDED_VECTORS), min_similarity=0.5)
    found = [m and m.norm.id for m in bank.match(["true case", "near neighbour", "counter"])]
    assert found == ["n", None, None]  # comparing with the prototype alone (0.62 < 0.89) vetoed the true case
    query = bank.encode(["near neighbour"])[0]
    assert bank.vetoed_by(query, 0, bank.similarity(query, 0)) == "counter"


def test_a_near_neighbour_of_a_counter_example_does_not_match_with_minilm():
    detector = NormedDetector(KeywordDetector(), [Norm(**{k: tuple(v) if isinstance(v, list) else v
                                                          for k, v in SPOILERS.items()})])
    assert detector.check(["Bruce Willis is a ghost the whole time in The Sixth Sense"]).norm == "no-spoilers"
    assert detector.check(["have you seen The Sixth Sense? it's great, watch it"]).norm is None


def test_thresholds_come_from_the_file_then_calibration_for_this_matcher_then_the_default(tmp_path):
    path = tmp_path / "n.yaml"
    path.write_text("- id: own\n  rot: r\n  level: caution\n  examples: [x]\n  min_similarity: 0.7\n"
                    "  calibrated_similarity: {prototype: 0.5}\n"
                    "- id: fitted\n  rot: r\n  level: caution\n  examples: [x]\n"
                    "  calibrated_similarity: {prototype: 0.55, bi-encoder-abc: 0.8}\n"
                    "- id: other\n  rot: r\n  level: caution\n  examples: [x]\n"
                    "  calibrated_similarity: {bi-encoder-abc: 0.8}\n", encoding="utf-8")
    bank = NormBank(read_norms(path), embedder=HashEmbedder(), min_similarity=0.46)
    assert [bank.threshold(n) for n in bank.norms] == [(0.7, "file"), (0.55, "calibrated"), (0.46, "default")]
    for bad in ("[0.5]", "{prototype: 2}", "{prototype: yes}"):
        path.write_text(f"- id: a\n  rot: r\n  level: caution\n  examples: [x]\n  calibrated_similarity: {bad}\n",
                        encoding="utf-8")
        with pytest.raises(DataError) as error:
            read_norms(path)
        problem = error.value.problems[0]
        assert (problem.line, problem.field) == (5, "calibrated_similarity") and "matcher id" in problem.message


def test_fit_thresholds_is_the_lowest_within_the_rate_and_the_bounds():
    import numpy as np

    from prosocial.canary.norms import fit_thresholds

    # 100 turns at 1%: one may score at or above the threshold, the second highest must stay below it
    top = np.array([[0.9, 0.55, -np.inf], [0.3, 0.2, 0.1], [0.95, 0.9, 0.8]], dtype=np.float32)
    thresholds, bounds = fit_thresholds(top, 100, 0.01, 0.4, 0.85)
    assert thresholds.tolist() == pytest.approx([0.551, 0.4, 0.85]) and bounds == [None, "floor", "ceiling"]
    thresholds, _ = fit_thresholds(np.array([[0.9, 0.5]], dtype=np.float32), 100, 0.01, -1, 1)
    assert thresholds[0] > 0.5  # exactly on a step of 0.001: the next one up, so 0.5 itself stays out


def test_calibrate_holds_each_norm_to_the_rate_and_a_file_threshold_wins(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(3, 16))
    vectors = {f"rule {i}": d for i, d in enumerate(directions)} | {f"ex {i}": d + rng.normal(size=16) * 0.3
                                                                   for i, d in enumerate(directions)}
    turns = [f"turn {j}" for j in range(400)]
    vectors |= {t: rng.normal(size=16) + directions[j % 3] * rng.uniform(0, 1.5) for j, t in enumerate(turns)}
    vectors["counter 2"] = vectors["turn 2"] + rng.normal(size=16) * 0.01  # vetoes the turns right beside it
    norms = [Norm("a", "rule 0", "caution", ("ex 0",)), Norm("b", "rule 1", "caution", ("ex 1",), (), 0.9),
             Norm("c", "rule 2", "caution", ("ex 2",), ("counter 2",))]
    bank = NormBank(norms, embedder=VectorEmbedder(vectors))
    report = calibrate(bank, turns, CalibrationSettings(max_false_match=0.02, floor=-1.0, ceiling=1.0))
    assert report.matcher == "prototype" and report.turns == 400
    by_id = {n.id: n for n in report.norms}
    assert by_id["b"].source == "file" and by_id["b"].threshold == 0.9
    for norm in ("a", "c"):
        assert by_id[norm].casual_false_match <= 0.02 and by_id[norm].threshold == by_id[norm].calibrated
        lower = NormBank([n for n in norms if n.id == norm], embedder=VectorEmbedder(vectors),
                         min_similarity=by_id[norm].calibrated - 0.001)
        assert sum(m is not None for m in lower.match(turns)) > 0.02 * 400  # the lowest that keeps to the rate
    assert bank.match(["turn 2"])[0] is None or bank.match(["turn 2"])[0].norm.id != "c"
    floored = calibrate(bank, turns, CalibrationSettings(max_false_match=0.02, floor=0.95, ceiling=0.99))
    assert {n.bound for n in floored.norms} == {"floor"}
    with pytest.raises(ValueError, match="above the ceiling"):
        calibrate(bank, turns, CalibrationSettings(floor=0.8, ceiling=0.5))


def test_write_calibrated_round_trips_and_keeps_other_matchers(tmp_path):
    from prosocial.canary.norms import Calibration, NormCalibration, write_calibrated

    source = tmp_path / "n.yaml"
    source.write_text("# my pack\n- id: a\n  rot: It's a rule.\n  level: caution\n  examples: [x y]\n"
                      "  counter_examples: [z]\n  calibrated_similarity: {bi-encoder-1: 0.8}\n"
                      "- id: b\n  rot: Another.\n  level: allowed\n  examples: [w]\n  min_similarity: 0.6\n",
                      encoding="utf-8")
    report = Calibration("prototype", 100, 0.01, 0.4, 0.7, [NormCalibration("a", 0.52, 0.52, "calibrated", 0.0),
                                                              NormCalibration("b", 0.41, 0.6, "file", 0.0)])
    for out in (tmp_path / "out.yaml", tmp_path / "out.jsonl"):
        assert write_calibrated(source, out, report) == 2
        a, b = read_norms(out)
        assert dict(a.calibrated) == {"bi-encoder-1": 0.8, "prototype": 0.52} and a.counter_examples == ("z",)
        assert b.min_similarity == 0.6 and dict(b.calibrated) == {"prototype": 0.41}
    assert (tmp_path / "out.yaml").read_text(encoding="utf-8").startswith("# n.yaml, calibrated by")
    with pytest.raises(DataError, match="YAML .* or JSON Lines"):
        write_calibrated(source, tmp_path / "out.txt", report)


def test_casual_turns_ship_with_the_package_and_files_are_checked(tmp_path):
    turns = read_casual()
    assert len(turns) == 3000 and all(turns)
    (tmp_path / "chat.txt").write_text("hello there\n\n  how   are you\n", encoding="utf-8")
    assert read_casual(tmp_path / "chat.txt") == ["hello there", "how are you"]
    bad = _jsonl(tmp_path / "chat.jsonl", [{"text": "fine"}, {"txt": "oops"}, "nope"])
    with pytest.raises(DataError) as error:
        read_casual(bad)
    assert [(p.line, p.field) for p in error.value.problems] == [(2, "text"), (3, "text")]


def test_bad_case_files_name_every_problem_with_file_line_and_field(tmp_path):
    bad = _jsonl(tmp_path / "cases.jsonl", [{"text": "ok", "norm": None}, ["a list"], {"text": "x", "label": "a"},
                                            {"text": " ", "norm": "a"}, {"text": "y", "norm": 3}])
    with pytest.raises(DataError) as error:
        read_cases(bad)
    assert [(p.path, p.line, p.field) for p in error.value.problems] == [
        (str(bad), 2, None), (str(bad), 3, "label"), (str(bad), 4, "text"), (str(bad), 5, "norm")]
    assert "unknown field" in error.value.problems[1].message
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no cases"):
        read_cases(empty)
    unknown = _jsonl(tmp_path / "unknown.jsonl", [{"text": "a", "norm": "gaming.nope"}, {"text": "b", "norm": None},
                                                  {"text": "c", "norm": "gaming.nah"}])
    detector = NormedDetector(KeywordDetector(), [PACKS / "gaming.yaml"])
    with pytest.raises(DataError) as error:
        run_norm_tests(detector, read_cases(unknown))
    assert [(p.line, p.field) for p in error.value.problems] == [(1, "norm"), (3, "norm")]


def test_the_report_gives_precision_recall_and_near_misses_per_norm():
    detector = NormedDetector(KeywordDetector(), [PACKS / "gaming.yaml"])
    results = run_norm_tests(detector, read_cases(PACKS / "gaming.test.jsonl"))
    stats = {s.id: s for s in norm_report(detector.bank, results, ["what a lovely day", "let's trade cards"])}
    assert len(stats) == 8 and all(s.threshold_from == "default" for s in stats.values())
    assert sum(s.correct for s in stats.values()) == sum(r.passed for r in results if r.case.norm)
    assert sum(s.expected for s in stats.values()) == sum(r.case.norm is not None for r in results)
    for s in stats.values():
        assert s.recall == s.correct / s.expected and len(s.missed) == s.expected - s.correct
        assert all(m.score is not None and m.threshold == s.threshold and m.why for m in s.missed)
        assert [m.score for m in s.missed] == sorted((m.score for m in s.missed), reverse=True)  # closest first
        assert s.casual_turns == 2
    false = [(s.id, m.why) for s in stats.values() for m in s.false_matches]
    assert false and all(why.startswith("expected ") for _, why in false)
    assert sum(len(s.false_matches) for s in stats.values()) == sum(s.decided - s.correct for s in stats.values())
    failed = [r for r in results if not r.passed and r.case.norm]
    assert all(r.why for r in failed) and any("< threshold" in r.why for r in failed)


def test_cli_norms_test_json_and_calibrate(tmp_path):
    from typer.testing import CliRunner

    from prosocial.cli import app

    runner = CliRunner()
    pack = str(PACKS / "gaming.yaml")
    result = runner.invoke(app, ["norms", "test", pack, "--backend", "keywords", "--cases",
                                 str(PACKS / "gaming.test.jsonl"), "--json", "--top", "1"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["matcher"] == "prototype" and report["checks"] == 56 and report["failed"] == len(report["results"])
    norms = {n["id"]: n for n in report["norms"]}
    assert set(norms["gaming.banter"]) >= {"precision", "recall", "missed", "false_matches", "threshold"}
    assert all(len(n["missed"]) <= 1 and n["missed_total"] >= len(n["missed"]) for n in norms.values())
    result = runner.invoke(app, ["norms", "test", pack, "--backend", "keywords", "--cases",
                                 str(PACKS / "gaming.test.jsonl")])
    assert "per norm" in result.output and "near misses" in result.output and "precision" in result.output
    chat = tmp_path / "chat.txt"
    chat.write_text("hello there\nwhat did you have for lunch?\nI love my new game console\n", encoding="utf-8")
    out = tmp_path / "gaming.calibrated.yaml"
    result = runner.invoke(app, ["norms", "calibrate", pack, "--out", str(out), "--casual-file", str(chat), "--json"])
    assert result.exit_code == 0, result.output
    calibration = json.loads(result.stdout)
    assert calibration["matcher"] == "prototype" and calibration["turns"] == 3
    assert all(dict(n.calibrated)["prototype"] >= 0.4 for n in read_norms(out))  # the floor, 0.06 under 0.46
    result = runner.invoke(app, ["norms", "calibrate", pack, "--out", str(out), "--floor", "0.6", "--ceiling", "0.5",
                                 "--casual-file", str(chat)])
    assert result.exit_code == 1 and "above the ceiling" in result.output
