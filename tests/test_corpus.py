"""Corpus jobs: shards in, one output shard per input shard, in this process and on a real local Ray (2 CPUs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from prosocial.cli.canary import check
from prosocial.cli.respond import respond
from prosocial.errors import DataError
from prosocial.jobs.corpus import check_rows, list_shards, run_corpus

app = typer.Typer()
app.command()(check)
app.command()(respond)
runner = CliRunner()

MARKER = "KILL-MARKER"
UTTERANCES = ["I'm going to punch my brother, he deserves it", "What a lovely morning, café ☕ and sun",
              "you are such an idiot", "Can you help me bake bread?", f"{MARKER} just a normal sentence"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One small local Ray for the module, shut down at its end."""
    import ray

    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _rows(start: int, count: int) -> list[dict]:
    """Rows with string and integer ids, one without an id (its line number stands in) and multi-turn contexts."""
    rows = [{"id": f"r{i}" if i % 3 else i, "context": UTTERANCES[: i % 2 + 1][::-1] + [UTTERANCES[i % 5]]}
            for i in range(start, start + count)]
    del rows[1]["id"]
    return rows


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two JSON Lines shards, a Parquet shard, an empty shard and a file that is no shard."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, rows in (("a", _rows(0, 23)), ("b", _rows(100, 17))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist([{"id": f"p{i}", "context": ["hi", UTTERANCES[i % 5]]} for i in range(9)]),
                   folder / "c.parquet")
    (folder / "empty.jsonl").write_text("")
    (folder / "notes.txt").write_text("not a shard")
    return folder


def _job(corpus: Path, out: Path, **options) -> object:
    return run_corpus(str(corpus), str(out), lambda: check_rows("keywords"), batch_size=4, **options)


def test_ray_and_local_jobs_write_the_single_file_jobs_bytes(corpus: Path, tmp_path: Path) -> None:
    single = tmp_path / "single.jsonl"
    result = runner.invoke(app, ["check", "-i", str(corpus / "a.jsonl"), "-o", str(single), "-b", "keywords"])
    assert result.exit_code == 0, result.output
    args = ["check", "-i", str(corpus), "-b", "keywords", "--batch-size", "4"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "ray"), "--engine", "ray", "--actors", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote 49 verdicts in 4 shards" in result.stderr
    local = runner.invoke(app, [*args, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    names = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert names == ["a.jsonl", "b.jsonl", "c.jsonl", "empty.jsonl"]
    assert (tmp_path / "ray" / "a.jsonl").read_bytes() == single.read_bytes()
    for name in names:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    ids = [json.loads(line)["id"] for line in (tmp_path / "ray" / "a.jsonl").read_text().splitlines()]
    assert ids[:4] == [0, 2, "r2", 3]  # the row without an id is named by its line


def test_a_worker_killed_mid_run_is_retried_and_the_output_is_complete(corpus: Path, tmp_path: Path) -> None:
    flag = tmp_path / "killed"

    def make():
        """Keywords, but the actor process dies the first time it meets the marker row (the flag file says so)."""
        process = check_rows("keywords")

        def rows(contexts: list[list[str]]) -> list[dict]:
            if any(MARKER in c[-1] for c in contexts) and not flag.exists():
                flag.touch()
                os._exit(1)
            return process(contexts)

        return rows

    report = run_corpus(str(corpus), str(tmp_path / "ray"), make, engine="ray", actors=2, batch_size=4)
    assert flag.exists()  # an actor really was killed
    expected = _job(corpus, tmp_path / "local")
    assert report.rows == expected.rows == 49
    for name in ("a.jsonl", "b.jsonl", "c.jsonl", "empty.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_a_rerun_skips_finished_shards_and_a_lost_row_is_named(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _job(corpus, out)
    assert (first.shards, first.done_before, first.rows) == (4, 0, 49)
    kept = (out / "b.jsonl").read_bytes()
    (out / "b.jsonl").unlink()
    (out / "a.jsonl").write_text("".join((out / "a.jsonl").read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataError) as error:
        _job(corpus, out)
    assert str(error.value) == f'{out / "a.jsonl"}: 1 id(s) missing: "r22"'
    assert (out / "b.jsonl").read_bytes() == kept  # redone; the other shards were skipped, not redone


def test_bad_lines_stop_a_ray_job_by_name_or_are_skipped_and_reported(corpus: Path, tmp_path: Path) -> None:
    with (corpus / "b.jsonl").open("a") as handle:
        handle.write('{"id": "bad", "context": []}\n')
    with pytest.raises(DataError, match=r"b\.jsonl, line 18, field 'context': .*empty"):
        _job(corpus, tmp_path / "ray", engine="ray")
    assert not (tmp_path / "ray" / "b.jsonl").exists()
    report = _job(corpus, tmp_path / "skip", skip_invalid=True)
    assert report.rows == 49 and [p.line for p in report.problems] == [18]


def test_respond_on_ray_writes_parquet_shards_whose_rows_fit_one_schema(corpus: Path, tmp_path: Path) -> None:
    options = ["--backend", "canned", "--detector", "keywords", "--output-format", "parquet"]
    args = ["respond", "-i", str(corpus / "c.parquet"), "-o", str(tmp_path / "out"), *options, "--engine", "ray"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out" / "c.parquet")
    assert table.column("id").to_pylist() == [f"p{i}" for i in range(9)]
    assert set(table.column_names) == {"id", "response", "rots", "safety_label", "norm", "danger"}
    result = runner.invoke(app, ["respond", "-i", str(corpus / "*.jsonl"), "-o", str(tmp_path / "out"), *options])
    assert result.exit_code == 1 and "a.parquet: the rows do not fit one Parquet schema" in result.output


def test_shards_are_listed_by_folder_glob_or_file_and_clashes_are_refused(corpus: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    assert [Path(s.source).name for s in list_shards(str(corpus), out)] == ["a.jsonl", "b.jsonl", "c.parquet",
                                                                           "empty.jsonl"]
    assert [Path(s.target).name for s in list_shards(str(corpus / "[ab].jsonl"), out, "parquet")] == [
        "a.parquet", "b.parquet"]
    assert len(list_shards(str(corpus / "c.parquet"), out)) == 1
    (corpus / "a.parquet").write_bytes((corpus / "c.parquet").read_bytes())
    with pytest.raises(DataError, match="a.parquet: has the same name as .*a.jsonl"):
        list_shards(str(corpus), out)
    with pytest.raises(DataError, match="would overwrite the input"):
        list_shards(str(corpus / "b.jsonl"), str(corpus))
    with pytest.raises(DataError, match="no such file or folder"):
        list_shards(str(tmp_path / "missing"), out)
    result = runner.invoke(app, ["check", "-i", str(corpus), "-o", "-", "-b", "keywords"])
    assert result.exit_code != 0 and "a corpus job writes a folder" in result.output
    result = runner.invoke(app, ["check", "-i", str(corpus), "-o", out, "-b", "keywords", "--actors", "2"])
    assert result.exit_code != 0 and "--gpus-per-actor need --engine ray" in result.output
