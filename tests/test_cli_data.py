"""`prosocial data …` end to end through the CLI."""

import json

from typer.testing import CliRunner

from prosocial.cli import app

runner = CliRunner()


def test_stats_on_files_and_benchmarks_with_plots(tmp_path, paper_tables_path, shared_data, monkeypatch):
    monkeypatch.setenv("PROSOCIAL_SHARED_DATA", str(shared_data))
    result = runner.invoke(
        app, ["data", "stats", str(paper_tables_path), "-b", "sbic:dev", "--json", "--plot-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    paper, sbic = json.loads(result.stdout)
    assert (paper["dialogues"], paper["utterances"], paper["labelled_contexts"]) == (5, 30, 15)
    assert paper["label_dynamics"]["0"]["__needs_intervention__"] == 1
    assert sbic["name"] == "sbic:dev" and sbic["rots"]["total"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "paper_tables_6_7.direct.label_dynamics.png",
        "sbic_dev.label_dynamics.png",
    ]


def test_convert_round_trips_and_validate_lists_every_problem(tmp_path, paper_tables_path):
    rows = tmp_path / "rows.parquet"
    assert runner.invoke(app, ["data", "convert", str(paper_tables_path), str(rows)]).exit_code == 0
    back = tmp_path / "back.json"
    assert runner.invoke(app, ["data", "convert", str(rows), str(back), "--to", "direct"]).exit_code == 0
    assert json.loads(back.read_text()) == json.loads(paper_tables_path.read_text())

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": 1, "dialogue_id": 0, "response_id": 0, "episode_done": true}\n{oops\n')
    result = runner.invoke(app, ["data", "validate", str(bad)])
    assert result.exit_code == 1
    assert "line 1, field 'context'" in result.output and "line 2" in result.output


def test_stats_needs_some_input():
    result = runner.invoke(app, ["data", "stats"])
    assert result.exit_code != 0
