"""Head-to-head human evaluation: tasks, the SQLite store, the rater app, aggregation and the commands."""

from __future__ import annotations

import csv
import json
import math

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from prosocial.cli.eval import app as cli
from prosocial.errors import DataError
from prosocial.eval.human_eval.aggregate import aggregate, export_csv, krippendorff_alpha, table
from prosocial.eval.human_eval.app import create_app
from prosocial.eval.human_eval.store import Judgment, Store
from prosocial.eval.human_eval.tasks import DIMENSIONS, build_tasks, read_outputs

ALL_LEFT = dict.fromkeys(DIMENSIONS, "left")


def outputs(tmp_path, name: str, replies: list[str]):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "context": [f"context {i} <b>&"], "response": r}) + "\n"
                            for i, r in enumerate(replies)))
    return path


@pytest.fixture
def study(tmp_path):
    a = read_outputs(outputs(tmp_path, "a", [f"A says {i}" for i in range(6)]))
    b = read_outputs(outputs(tmp_path, "b", [f"B <script>alert({i})</script>" for i in range(6)]))
    store = Store(tmp_path / "study.sqlite")
    store.create(build_tasks(a, b, seed=1), "Sys A", "Sys B", raters_per_item=2)
    return store


def test_krippendorff_alpha_on_krippendorffs_own_example():
    """Krippendorff (2011), 4 coders x 12 units with missing values: nominal 0.743, interval 0.849."""
    rows = ["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3", ". 3 3 3 2 3 4 2 2 5 1 .", "1 2 3 3 2 4 4 1 2 5 1 ."]
    units = [[int(v) for v in column if v != "."] for column in zip(*(r.split() for r in rows), strict=True)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert math.isnan(krippendorff_alpha([["a", "a"], ["a"]]))  # no variation: undefined


def test_tasks_are_blind_and_randomised(tmp_path):
    a = read_outputs(outputs(tmp_path, "a", [f"a{i}" for i in range(40)]))
    b = read_outputs(outputs(tmp_path, "b", [f"b{i}" for i in range(40)]))
    tasks = build_tasks(a, b, seed=0)
    assert 10 < sum(t.left == "a" for t in tasks) < 30
    assert [t.item_id for t in tasks] != sorted(t.item_id for t in tasks)
    assert [t.item_id for t in tasks] == [t.item_id for t in build_tasks(a, b, seed=0)]
    task = tasks[0]
    left_reply = task.shown[0]
    assert task.unblind("left") == ("a" if left_reply == task.reply_a else "b") and task.unblind("tie") == "tie"
    assert len(build_tasks(a, b, seed=0, limit=5)) == 5
    b["0"] = (["another context"], "x")
    with pytest.raises(DataError, match="different contexts"):
        build_tasks(a, b)


def test_store_assigns_each_item_to_enough_distinct_raters(study):
    seen = []
    for rater in ("r1", "r2", "r3"):
        while (task := study.next_task(rater)) is not None:
            study.record(task.item_id, rater, ALL_LEFT)
            seen.append((rater, task.item_id))
    assert len(seen) == 12 and {r for r, _ in seen} == {"r1", "r2"}  # 6 items x 2 raters; r3 has nothing left
    assert study.progress() == (12, 12)
    with pytest.raises(ValueError, match="exactly"):
        study.record(seen[0][1], "r1", {"overall": "left"})
    with pytest.raises(ValueError, match="choices"):
        study.record(seen[0][1], "r1", dict.fromkeys(DIMENSIONS, "A"))
    with pytest.raises(DataError, match="already exists"):
        study.create([], "x", "y")


def test_aggregate_shares_intervals_alpha_and_csv(study, tmp_path):
    tasks = study.tasks()
    for task in tasks:  # both raters always prefer system A, whichever side it was shown on
        for rater in ("r1", "r2"):
            study.record(task.item_id, rater, dict.fromkeys(DIMENSIONS, "left" if task.left == "a" else "right"))
    result = aggregate(study.judgments(), bootstrap=200)
    assert result["overall"]["share"] == {"a": 100.0, "tie": 0.0, "b": 0.0}
    assert result["overall"]["ci"]["a"] == [100.0, 100.0] and math.isnan(result["overall"]["alpha_nominal"])
    mixed = [Judgment(str(i), r, "overall", "left", w, "") for i in range(20)
             for r, w in (("r1", "a"), ("r2", "a" if i % 4 else "tie"))]
    mixed_result = aggregate(mixed, bootstrap=300)["overall"]
    assert mixed_result["share"]["a"] == pytest.approx(87.5)
    low, high = mixed_result["ci"]["a"]
    assert low < 87.5 < high and -1 <= mixed_result["alpha_nominal"] < 1
    assert "Sys A" in table(result, "Sys A", "Sys B")
    assert export_csv(study, tmp_path / "j.csv") == 60
    rows = list(csv.DictReader((tmp_path / "j.csv").open()))
    assert {r["winner_system"] for r in rows} == {"Sys A"} and {r["system_b"] for r in rows} == {"Sys B"}


def test_rater_app_escapes_text_and_records_judgments(study):
    client = TestClient(create_app(study.path))
    assert "rater name" in client.get("/").text
    page = client.get("/task", params={"rater": "<i>eve</i>"}).text
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page and "&lt;b&gt;&amp;" in page
    assert "&lt;i&gt;eve&lt;/i&gt;" in page and all(q.split(",")[0] in page for q in DIMENSIONS.values())
    item = study.next_task("<i>eve</i>").item_id
    response = client.post("/judge", data={"item_id": item, "rater": "<i>eve</i>", **ALL_LEFT}, follow_redirects=False)
    assert response.status_code == 303 and len(study.judgments()) == 5
    bad = client.post("/judge", data={"item_id": item, "rater": "eve", "overall": "left"})
    assert bad.status_code == 400 and "Not saved" in bad.text


def test_human_commands_build_aggregate_export(tmp_path):
    a, b = outputs(tmp_path, "a", ["x", "y", "z"]), outputs(tmp_path, "b", ["p", "q", "r"])
    db = tmp_path / "s.sqlite"
    runner = CliRunner()
    result = runner.invoke(cli, ["human", "build", "--a", f"Prost={a}", "--b", f"GPT={b}", "--db", str(db),
                                 "--raters-per-item", "1"])
    assert result.exit_code == 0 and "3 tasks" in result.output
    store = Store(db)
    for task in store.tasks():
        store.record(task.item_id, "r", dict.fromkeys(DIMENSIONS, "tie"))
    result = runner.invoke(cli, ["human", "aggregate", "--db", str(db), "--out", str(tmp_path / "t4"),
                                 "--bootstrap", "50"])
    assert result.exit_code == 0 and "| Tie | 100.0" in result.output
    assert json.loads((tmp_path / "t4.json").read_text())["meta"]["study"]["system_a"] == "Prost"
    result = runner.invoke(cli, ["human", "export", "--db", str(db), "--out", str(tmp_path / "j.csv")])
    assert result.exit_code == 0 and "15 judgments" in result.output


def test_outputs_files_are_read_strictly_with_file_and_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "1", "context": ["hi"], "response": "hello"}\n{"id": "2", "context": ["hi"], '
                    '"response": NaN}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"out\.jsonl, line 2: invalid JSON"):
        read_outputs(path)
    path.write_bytes(b'{"id": "1", "context": ["hi"], "response": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"out\.jsonl, line 1"):
        read_outputs(path)
