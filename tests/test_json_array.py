""".json input (a JSON array of rows or dialogues) is streamed element by element, as JSON Lines input is line by
line: memory stays near one element, and errors still name the file, the line and the element."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from typer.testing import CliRunner

from prosocial.cli import app
from prosocial.data import check_file
from prosocial.errors import DataError
from prosocial.io import read_json_array

# values whose text a chunk boundary can cut anywhere: multibyte characters, escapes, long numbers, nesting
TRICKY = [
    {"context": "caf\u00e9 \u4e2d \U0001f600", "n": 12345678901234567890, "x": -1.5e-7, "ok": [True, False, None]},
    "a \"quoted\" \\ back\nslash \U0001f600 \t",
    [[], {}, [[1, 2], {"a": [3]}]],
    0,
    "x" * 300,
]


def _hf_row(i: int, **change) -> dict:
    return {"context": f"hello {i}", "response": "hi", "rots": [], "safety_label": "__casual__",
            "safety_annotations": ["casual"] * 3, "safety_annotation_reasons": [], "source": "test", "etc": "",
            "dialogue_id": i, "response_id": 0, "episode_done": True} | change


@pytest.mark.parametrize("indent", [None, 1])
def test_every_chunk_size_reads_what_json_load_reads(tmp_path, indent):
    path = tmp_path / "a.json"
    for ascii_only in (True, False):
        path.write_text(" \n" + json.dumps(TRICKY, indent=indent, ensure_ascii=ascii_only) + "\n", encoding="utf-8")
        for chunk in (1, 2, 3, 5, 64, 1 << 20):
            assert list(read_json_array(path, chunk)) == list(enumerate(TRICKY, start=1)), (chunk, ascii_only)
    path.write_text("[]")
    assert list(read_json_array(path, 1)) == []


@pytest.mark.parametrize(("text", "message"), [
    ('[1,\n 2,\n {"a" 1}]', "line 3: invalid JSON in element 3: Expecting ':' delimiter (column 7)"),
    ("[1,\n 2 3]", "line 2: invalid JSON after element 2: expecting ',' or ']' (column 4)"),
    ("[1, 2,]", "line 1: invalid JSON in element 3: Expecting value (column 7)"),
    ('[1,\n {"a": NaN}]', "line 2: invalid JSON in element 2: NaN is not a JSON value"),
    ('[\n "\\ud800"]', "line 2: invalid JSON in element 1: lone surrogate"),
    ("[1, 2", "line 1: invalid JSON: the array ends after element 2 without ']' (column 6)"),
    ("[1] [2]", "line 1: invalid JSON: extra data after the array (column 5)"),
])
def test_errors_name_the_file_line_column_and_element_in_any_chunk_size(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    for chunk in (1, 3, 1 << 20):
        with pytest.raises(DataError) as error:
            list(read_json_array(path, chunk))
        assert str(error.value).startswith(f"{path}, {message}"), (chunk, str(error.value))


def test_a_byte_that_is_not_utf8_is_named_by_line_and_place_across_chunks(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'[1,\n "ab\xc3\xa9\xff"]')
    for chunk in (1, 2, 1 << 20):
        with pytest.raises(DataError, match=r"line 2: not UTF-8 text \(byte 0xff at byte 7\)"):
            list(read_json_array(path, chunk))


def test_validate_names_the_element_of_a_bad_row_in_a_big_array(tmp_path):
    path = tmp_path / "rows.json"
    rows = [_hf_row(i) for i in range(3000)]
    rows[1234] = _hf_row(1234, context=7)  # a field problem: the element's position, as before streaming
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}, line 1235, field 'context'" in result.output and "3,000 dialogues" in result.output

    text = path.read_text(encoding="utf-8")
    broken = text.replace('"dialogue_id": 2500,', '"dialogue_id": 2500', 1)  # a syntax error: its line
    path.write_text(broken, encoding="utf-8")
    line = broken[: broken.index('"dialogue_id": 2500')].count("\n") + 2
    result = CliRunner().invoke(app, ["data", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}, line {line}: invalid JSON in element 2501: Expecting ',' delimiter" in result.output


def test_every_json_array_format_is_read_as_before(tmp_path):
    """hf rows, direct dialogues and partial rows from a streamed array; DialogStudio's object is read whole."""
    cases = {
        "hf": [_hf_row(0), _hf_row(1)],
        "direct": [[{"text": "hi", "labels": ["hello"], "episode_done": True}]],
        "partial": [{"context": "hi", "response": "hello"}, {"context": "a", "response": "b"}],
    }
    for kind, value in cases.items():
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(value), encoding="utf-8")
        dialogues, problems = check_file(path)
        assert not problems and len(dialogues) == len(value) and all(d.turns for d in dialogues), kind
        counted, _ = check_file(path, keep_turns=False)
        assert len(counted) == len(value) and not any(d.turns for d in counted), kind
    _, problems = check_file(tmp_path / "hf.json", "dialogstudio")
    assert [p.message for p in problems] == ["expected an object of dialogues"]


def test_memory_stays_near_one_chunk_not_the_file(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[\n" + ",\n".join(json.dumps(_hf_row(i)) for i in range(12_000)) + "\n]\n")
    size = path.stat().st_size
    assert size > 3_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_json_array(path, chunk_bytes=64 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 12_000
    assert peak < 1_000_000, f"peak {peak:,} bytes for a {size:,}-byte file"
