import json
from pathlib import Path

import pytest

from prosocial.data import SafetyLabel, check_file, read_dialogues, write_dialogues
from prosocial.errors import DataError


@pytest.fixture(scope="module")
def hf_examples(shared_data):
    return read_dialogues(shared_data / "prosocial_dialog_examples" / "hf_rows_examples.json")


@pytest.fixture(scope="module")
def paper_tables(paper_tables_path):
    return read_dialogues(paper_tables_path)


def test_hf_rows_are_grouped_by_dialogue_and_ordered(hf_examples):
    assert [d.dialogue_id for d in hf_examples] == [0, 1]
    first = hf_examples[0]
    assert first.source == "socialchemistry" and first.etc == "reddit/amitheasshole/b6k7hd"
    assert [t.response_id for t in first.turns] == [0, 1, 2]
    assert first.turns[0].context.startswith("I'm going to shut down an all girls club")
    assert first.turns[0].safety_label is SafetyLabel.NEEDS_CAUTION
    assert first.turns[0].safety_annotations == ["needs caution"] * 3
    assert first.turns[-1].episode_done and not first.turns[0].episode_done


def test_dialogstudio_and_hf_agree_on_the_shared_examples(shared_data):
    studio = read_dialogues(shared_data / "prosocial_dialog_examples" / "dialogstudio_converted_examples.json")
    assert len(studio) == 5
    assert studio[0].turns[0].rots == ["It's not right to think black people deserve to be hit"]
    assert studio[0].turns[1].safety_label is SafetyLabel.CASUAL


def test_rows_out_of_order_are_sorted_by_response_id(tmp_path):
    rows = [
        {"context": "b", "response": "B", "dialogue_id": 7, "response_id": 1, "episode_done": True},
        {"context": "a", "response": "A", "dialogue_id": 7, "response_id": 0, "episode_done": False},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    (dialogue,) = read_dialogues(path)
    assert [t.context for t in dialogue.turns] == ["a", "b"]
    assert dialogue.utterances() == ["a", "A", "b"]
    assert [e.context for e in dialogue.examples()] == [["a"], ["a", "A", "b"]]


@pytest.mark.parametrize("target", ["rows.json", "rows.jsonl", "rows.parquet", "rows.csv", "direct.json"])
@pytest.mark.parametrize("source", ["hf_examples", "paper_tables"])
def test_lossless_round_trip(tmp_path, request, source, target):
    dialogues = request.getfixturevalue(source)
    path = tmp_path / target
    fmt = "direct" if target.startswith("direct") else "hf"
    write_dialogues(dialogues, path, fmt)
    again = read_dialogues(path)
    assert again == dialogues
    # and on through the other format, back again
    other = tmp_path / ("back.json" if fmt == "direct" else "back_direct.json")
    write_dialogues(again, other, "hf" if fmt == "direct" else "direct")
    assert read_dialogues(other) == dialogues


def test_direct_format_keeps_ids_that_positions_cannot_restore(tmp_path, hf_examples):
    shifted = [type(d)(d.dialogue_id + 10, d.turns, d.source, d.etc) for d in hf_examples]
    write_dialogues(shifted, tmp_path / "d.json", "direct")
    assert [d.dialogue_id for d in read_dialogues(tmp_path / "d.json")] == [10, 11]


def test_partial_rows_become_single_turn_dialogues(shared_data):
    path = shared_data / "prosocial_dialog_partial" / "valid.json"
    dialogues = read_dialogues(path)
    assert len(dialogues) == len(json.loads(path.read_text())) > 0  # 4,000 in the real file
    assert all(len(d.turns) == 1 and d.turns[0].safety_label is None for d in dialogues)
    assert dialogues[0].examples()[0].response


def test_datasets_folder(tmp_path, hf_examples):
    from datasets import Dataset, DatasetDict

    from prosocial.data.formats import dialogue_to_rows

    rows = [r for d in hf_examples for r in dialogue_to_rows(d)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "ds"))
    assert read_dialogues(tmp_path / "ds", split="train") == [
        type(d)(d.dialogue_id, d.turns, d.source, d.etc, "train") for d in hf_examples
    ]


def test_every_problem_is_listed_with_file_line_and_field(tmp_path):
    lines = [
        json.dumps({"context": "ok", "response": "r", "dialogue_id": 0, "response_id": 0, "episode_done": True}),
        "{not json",
        json.dumps({"context": 5, "response": "r", "dialogue_id": 1, "response_id": 0, "episode_done": True}),
        json.dumps({"context": "c", "response": "r", "dialogue_id": 2, "response_id": "x", "episode_done": True,
                    "safety_label": "__scary__"}),
        json.dumps({"context": "c", "response": "r", "dialogue_id": 3, "response_id": 0, "episode_done": "maybe",
                    "safety_annotations": ["casual", "casual", "meh"]}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _, problems = check_file(path)
    where = {(p.line, p.field) for p in problems}
    assert {(2, None), (3, "context"), (4, "response_id"), (4, "safety_label"), (5, "episode_done"),
            (5, "safety_annotations")} <= where
    with pytest.raises(DataError) as info:
        read_dialogues(path)
    assert f"{path}, line 3, field 'context': expected a string, got int" in str(info.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dialogues(tmp_path / "nope.json")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        read_dialogues(tmp_path / "x.txt")
    with pytest.raises(DataError, match="cannot write format 'dialogstudio'"):
        write_dialogues([], tmp_path / "y.json", "dialogstudio")


def test_failed_write_leaves_no_partial_file(tmp_path, hf_examples):
    target = tmp_path / "out.xml"
    with pytest.raises(DataError):
        write_dialogues(hf_examples, target)
    assert list(tmp_path.iterdir()) == []
    good = tmp_path / "out.json"
    write_dialogues(hf_examples, good)
    before = good.read_text()
    broken = [type(hf_examples[0])(object(), hf_examples[0].turns)]  # an id JSON cannot encode
    with pytest.raises(TypeError):
        write_dialogues(broken, good)
    assert good.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_paper_tables_fixture(paper_tables):
    assert len(paper_tables) == 5 and all(len(d.turns) == 3 for d in paper_tables)
    labels = [t.safety_label for t in paper_tables[4].turns]
    assert labels == [SafetyLabel.POSSIBLY_NEEDS_CAUTION, SafetyLabel.PROBABLY_NEEDS_CAUTION,
                      SafetyLabel.POSSIBLY_NEEDS_CAUTION]
    assert Path(paper_tables[0].etc).name == "Table 6, dialogue 1"


def test_validation_streams_json_lines_and_holds_no_turns(tmp_path, hf_examples):
    """`data validate` on a 200 MB file peaked at 844 MB: every row was read into a list, then every turn kept."""
    import tracemalloc

    from prosocial.data.formats import dialogue_to_rows

    rows = [r for d in hf_examples for r in dialogue_to_rows(d)]
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for copy in range(600):
            for row in rows:
                f.write(json.dumps(row | {"dialogue_id": row["dialogue_id"] + 10 * copy}) + "\n")
        f.write('{"dialogue_id": 1, "response_id": "x"}\n')  # a bad last line is still found

    def peak(keep_turns: bool):
        tracemalloc.start()
        try:
            result = check_file(path, keep_turns=keep_turns)
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    (kept, problems), full = peak(True)
    (counted, same_problems), lean = peak(False)
    assert [d.dialogue_id for d in counted] == [d.dialogue_id for d in kept] and len(kept) == 1200
    assert all(d.turns for d in kept) and not any(d.turns for d in counted)
    assert problems == same_problems and problems and problems[0].line == 600 * len(rows) + 1
    assert lean < full / 3, (lean, full)
