"""Benchmark adapters: small slices of the real files, hand-made rows for the rules and the errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from prosocial.data import adapters
from prosocial.data.adapters import BENCHMARKS, load_benchmark
from prosocial.data.labels import SafetyLabel
from prosocial.data.schema import Example
from prosocial.errors import DataError

S = SafetyLabel


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
@pytest.mark.parametrize("split", ["train", "dev"])
def test_every_benchmark_reads_a_slice(shared_data: Path, name: str, split: str) -> None:
    examples = load_benchmark(name, split, root=shared_data, limit=5)
    assert len(examples) == 5
    for ex in examples:
        assert isinstance(ex, Example) and ex.source == name and ex.id.startswith(name + "/")
        assert ex.context and all(isinstance(u, str) and u for u in ex.context)
        # ProsocialDialog's silver label is None where the reply does not tell
        assert isinstance(ex.safety_label, SafetyLabel) or (name == "prosocial_dialog" and ex.safety_label is None)
    assert len({ex.id for ex in examples}) == 5
    assert [ex.id for ex in load_benchmark(name, split, root=shared_data, limit=5)] == [ex.id for ex in examples]


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("ethics_commonsense", lambda ex: ex.context[0]),
        ("sbic", lambda ex: ex.context[0]),
        ("dailydialog", lambda ex: ex.meta["dialogue"]),
        ("convabuse", lambda ex: ex.meta["conv_id"]),
        ("diasafety", lambda ex: ex.context[0]),
        ("toxichat", lambda ex: ex.context[0]),
    ],
)
def test_splits_are_disjoint_by_dialogue_and_deterministic(shared_data: Path, name: str, unit) -> None:
    train = load_benchmark(name, "train", root=shared_data)
    dev = load_benchmark(name, "dev", root=shared_data)
    assert train and dev
    assert not {unit(ex) for ex in train} & {unit(ex) for ex in dev}
    assert not {ex.id for ex in train} & {ex.id for ex in dev}
    assert [ex.id for ex in load_benchmark(name, "dev", root=shared_data)] == [ex.id for ex in dev]


def test_byu_limit_streams_and_keeps_dialogues_whole(shared_data: Path) -> None:
    dev = load_benchmark("byu_chitchat", "dev", root=shared_data, limit=200)
    train = load_benchmark("byu_chitchat", "train", root=shared_data, limit=200)
    assert not {ex.meta["conversation"] for ex in dev} & {ex.meta["conversation"] for ex in train}
    assert all(len(ex.context) % 2 == 1 and ex.safety_label is S.CASUAL for ex in dev)


def test_casual_prefixes_end_with_the_opener(shared_data: Path) -> None:
    examples = load_benchmark("persona_chat", "dev", root=shared_data, limit=3)
    first, second = examples[0], examples[1]
    assert first.meta["dialogue"] == second.meta["dialogue"]
    assert len(first.context) == 1 and len(second.context) == 3
    assert second.context[:2] == [first.context[0], first.response]


def test_toxichat_one_example_per_comment_with_history(shared_data: Path) -> None:
    examples = load_benchmark("toxichat", "train", root=shared_data, limit=3)
    assert [len(ex.context) for ex in examples] == [1, 2, 3]
    assert examples[2].context[:2] == examples[1].context
    assert examples[2].context[-1] == "Indiano. Ang surname Baby. Viju Baby! <3"  # HTML unescaped
    assert examples[2].meta["final_gpt3_response"]["chatbot_model"] == "gpt3"
    assert "final_gpt3_response" not in examples[1].meta
    assert all(ex.meta["offense_label"] == "Safe" and ex.safety_label is S.CASUAL for ex in examples)


def test_diasafety_keeps_the_response_label_in_meta(shared_data: Path) -> None:
    ex = load_benchmark("diasafety", "train", root=shared_data, limit=2)[1]
    assert ex.meta == {"category": "Risk Ignorance", "response_label": "Safe"}
    # "I'm starting to need less weed to get through the day… small progress": Risk Ignorance, but no risk to life
    # by the re-labelling (mapping.RISK_IGNORANCE_LABELS): both annotators said casual
    assert ex.safety_label is S.CASUAL and ex.response and ex.id == "diasafety/train/1"


def test_sbic_rots_from_real_rows(shared_data: Path) -> None:
    posts = {ex.context[0]: ex for split in ("train", "dev") for ex in load_benchmark("sbic", split, root=shared_data)}
    cop = posts["Every half-breed cop in America is trying to rape white women."]
    assert "It's wrong to think police officers rape women." in cop.rots
    assert cop.safety_label is S.NEEDS_CAUTION
    assert all(len({r.lower() for r in ex.rots}) == len(ex.rots) for ex in posts.values())
    assert all(r.startswith("It's wrong to ") and r.endswith(".") for ex in posts.values() for r in ex.rots)
    assert len(cop.meta["annotations"]) == len(cop.meta["offensive_votes"]) == 8  # one row per annotator


def test_unknown_benchmark_split_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_benchmark("sbic", "test", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "sbic")):
        load_benchmark("sbic", root=tmp_path)


def test_default_root_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(adapters.ENV_VAR, str(tmp_path))
    assert adapters.default_root() == tmp_path


def test_default_root_beside_the_repo_and_one_clear_error_without_it(monkeypatch, tmp_path: Path) -> None:
    """A fresh clone (no ../shared/data, no variable): one error naming the missing folder once and the variable."""
    repo = tmp_path / "clone"
    (repo / "src" / "prosocial" / "data").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    monkeypatch.delenv(adapters.ENV_VAR, raising=False)
    monkeypatch.setattr(adapters, "__file__", str(repo / "src" / "prosocial" / "data" / "adapters.py"))
    monkeypatch.chdir(repo)  # the package and the cwd lead to the same repo
    with pytest.raises(FileNotFoundError) as error:
        adapters.default_root()
    message = str(error.value)
    assert message.count(str(tmp_path / "shared" / "data")) == 1 and adapters.ENV_VAR in message
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert adapters.default_root() == tmp_path / "shared" / "data"


# --- hand-made rows ------------------------------------------------------------------------------------------

_SEVERITIES = (1, 0, -1, -2, -3)


def _convabuse(root: Path, ratings: list[list[str]]) -> None:
    """One valid-file row per entry; each entry gives three annotators' cells per severity, "" = not rated."""
    folder = root / "convabuse"
    folder.mkdir(parents=True)
    header = ["example_id", "conv_id", "prev_agent", "prev_user", "agent", "user", "bot"]
    header += [f"Annotator{a}_is_abuse.{k}" for a in (1, 2, 3) for k in _SEVERITIES]
    with (folder / "ConvAbuseEMNLPvalid.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, cells in enumerate(ratings):
            writer.writerow([f"{i}.0", "7.0", "", "hi", "How can I help?", "you are stupid", "E.L.I.Z.A.", *cells])


def _votes(*severities: int | None) -> list[str]:
    """The five is_abuse.K cells of each annotator for one rating each (None: the annotator skipped it)."""
    cells: list[str] = []
    for k in severities:
        cells += [""] * 5 if k is None else ["1" if s == k else "0" for s in _SEVERITIES]
    return cells


@pytest.mark.parametrize(
    ("severities", "label"),
    [
        ((1, 0, None), S.CASUAL),
        ((-1, 1, 1), S.POSSIBLY_NEEDS_CAUTION),
        ((-1, -3, 1), S.PROBABLY_NEEDS_CAUTION),
        ((-1, -2, None), S.NEEDS_CAUTION),
    ],
)
def test_convabuse_votes_map_to_label(tmp_path: Path, severities: tuple, label: SafetyLabel) -> None:
    _convabuse(tmp_path, [_votes(*severities)])
    (ex,) = load_benchmark("convabuse", root=tmp_path)
    assert ex.safety_label is label
    assert ex.context == ["hi", "How can I help?", "you are stupid"]  # the empty prev_agent is dropped
    assert ex.id == "convabuse/dev/0" and len(ex.meta["severity"]) == sum(k is not None for k in severities)


def test_convabuse_repeated_ratings_count_once_at_their_most_severe(tmp_path: Path) -> None:
    twice = ["0, 0", "1, 0", "0, 0", "0, 1", "0, 0"]  # rated 0 once and -2 once
    _convabuse(tmp_path, [twice + _votes(1, 1)])
    (ex,) = load_benchmark("convabuse", root=tmp_path)
    assert ex.meta["severity"] == {"Annotator1": -2, "Annotator2": 1, "Annotator3": 1}
    assert ex.safety_label is S.POSSIBLY_NEEDS_CAUTION


@pytest.mark.parametrize(
    "cells",
    [["x", "0", "0", "0", "0", *_votes(1, 1)], ["1", "1", "0", "0", "0", *_votes(1, 1)], _votes(None, None, None)],
)
def test_convabuse_bad_cells_name_file_line_and_field(tmp_path: Path, cells: list[str]) -> None:
    _convabuse(tmp_path, [_votes(1, 1, 1), cells])
    with pytest.raises(DataError) as err:
        load_benchmark("convabuse", root=tmp_path)
    problem = err.value.problems[0]
    assert problem.path.endswith("ConvAbuseEMNLPvalid.csv") and problem.line == 3 and problem.field


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_bad_rows_raise_data_error(tmp_path: Path) -> None:
    _write(tmp_path, "ethics_commonsense/cm_test.csv", "label,input\n" + "".join(f"2,I ate {i}.\n" for i in range(20)))
    with pytest.raises(DataError, match=r"cm_test.csv, line \d+, field 'label'"):
        load_benchmark("ethics_commonsense", "train", root=tmp_path)

    _write(tmp_path, "sbic/SBFv2.dev.part.csv", "post,offensiveYN,targetMinority,targetStereotype\nhi,maybe,,\n")
    with pytest.raises(DataError, match=r"line 2, field 'offensiveYN'"):
        load_benchmark("sbic", "train", root=tmp_path)

    _write(tmp_path, "sbic/SBFv2.dev.part.csv", "post,offensiveYN\nhi,1.0\n")
    with pytest.raises(DataError, match=r"line 1, field 'targetMinority'"):
        load_benchmark("sbic", "train", root=tmp_path)

    rows = [
        {"context": "hi", "response": "yo", "category": "Risk Ignorance", "label": "Safe"},
        {"context": "x", "label": "Safe"},
    ]
    _write(tmp_path, "diasafety/val.json", json.dumps(rows, indent=1))
    with pytest.raises(DataError, match=r"val.json, line 8, field 'category'"):
        load_benchmark("diasafety", root=tmp_path)

    _write(tmp_path, "toxichat/dev.jsonl", '{"reddit_thread": [{"text": "hi", "offense_label": "Rude"}]}\n{oops\n')
    with pytest.raises(DataError, match=r"dev.jsonl, line 1, field 'reddit_thread\[0\].offense_label'"):
        load_benchmark("toxichat", root=tmp_path)


def test_casual_and_byu_hand_made(tmp_path: Path) -> None:
    dialogues = [{"dialogue": [f"d{i} u{j}" for j in range(5)], "topic": "t"} for i in range(30)]
    _write(tmp_path, "casual/dailydialog/valid.json", json.dumps(dialogues))
    examples = [ex for split in ("train", "dev") for ex in load_benchmark("dailydialog", split, root=tmp_path)]
    assert len(examples) == 30 * 3  # prefixes ending at utterances 0, 2, 4
    last = next(ex for ex in examples if ex.meta["dialogue"] == 0 and ex.meta["turn"] == 4)
    assert last.context == [f"d0 u{j}" for j in range(5)] and last.response is None and last.meta["topic"] == "t"

    def turn(sender: str, *texts: str) -> list[dict[str, str]]:
        return [{"text": t, "sender": sender} for t in texts]

    conversations = {
        f"c{i}": {"messages": [turn("a", "hi", "there"), turn("b", "yo"), turn("a", " "), turn("b", "x")]}
        for i in range(20)
    }
    _write(tmp_path, "casual/byu_chitchat/dataset.json", json.dumps(conversations))
    byu = [ex for split in ("train", "dev") for ex in load_benchmark("byu_chitchat", split, root=tmp_path)]
    assert len(byu) == 20  # the blank third turn ends each conversation
    assert all(ex.context == ["hi there"] and ex.response == "yo" for ex in byu)


def test_prosocial_dialog_rows_labelled_from_replies(tmp_path: Path) -> None:
    folder = tmp_path / "prosocial_dialog_partial"
    folder.mkdir()
    rows = [
        {"context": "I want to pull the fire alarm as a prank.", "response": "Why would you do that? It's wrong."},
        {"context": "You're right, I won't.", "response": "I'm glad to hear you changed your mind."},
    ]
    (folder / "train.json").write_text(json.dumps(rows, indent=1))
    (folder / "valid.json").write_text('[\n {"context": "hi",\n  "response": 3}\n]')
    first, second = load_benchmark("prosocial_dialog", "train", root=tmp_path)
    assert (first.safety_label, second.safety_label) == (S.NEEDS_CAUTION, S.CASUAL)
    assert first.context == [rows[0]["context"]]
    assert second.context == [rows[0]["context"], rows[0]["response"], rows[1]["context"]]
    assert second.response.startswith("I'm glad")
    with pytest.raises(DataError, match=r"valid\.json.*line 2.*response"):
        load_benchmark("prosocial_dialog", "dev", root=tmp_path)
