"""Commands that read the shared data folder: without it, one clear line (no traceback) before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from prosocial.cli import app
from prosocial.data import adapters

runner = CliRunner()


@pytest.fixture
def fresh_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone with no ../shared/data and no $PROSOCIAL_SHARED_DATA; returns where the folder would be."""
    repo = tmp_path / "clone"
    (repo / "src" / "prosocial" / "data").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    monkeypatch.delenv(adapters.ENV_VAR, raising=False)
    monkeypatch.setattr(adapters, "__file__", str(repo / "src" / "prosocial" / "data" / "adapters.py"))
    monkeypatch.chdir(repo)
    return tmp_path / "shared" / "data"


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr("prosocial.canary.load_detector", refuse)


def _one_error(result, *words: str) -> str:
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "Traceback" not in result.output and text.count("error:") == 1
    for word in words:
        assert word in text, (word, text)
    return text


@pytest.mark.parametrize("command", [["eval", "behaviour"], ["eval", "safety-suite"]])
def test_eval_without_the_data_is_one_error_before_any_model(command, fresh_clone, no_models, tmp_path):
    result = runner.invoke(app, [*command, "--out", str(tmp_path / "report")])
    _one_error(result, str(fresh_clone), "PROSOCIAL_SHARED_DATA")
    assert not list(tmp_path.glob("report*"))


def test_eval_with_a_data_folder_that_lacks_a_benchmark_names_it(tmp_path, no_models):
    (tmp_path / "data" / "sbic").mkdir(parents=True)
    result = runner.invoke(app, ["eval", "behaviour", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r")])
    _one_error(result, "lacks", "diasafety", "ethics_commonsense")
    missing = str(tmp_path / "nowhere")
    result = runner.invoke(app, ["eval", "behaviour", "--data", missing, "--out", str(tmp_path / "r")])
    _one_error(result, str(tmp_path / "nowhere"), "does not exist")


def test_eval_toxichat_without_the_data_is_one_error(fresh_clone, tmp_path):
    result = runner.invoke(app, ["eval", "toxichat-train", "--out", str(tmp_path / "evaluators")])
    _one_error(result, str(fresh_clone))


def test_train_canary_mini_checks_its_options_before_the_data(fresh_clone, tmp_path):
    result = runner.invoke(app, ["train", "canary-mini", "--encoder", "bogus", "--out", str(tmp_path / "out")])
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "--encoder takes minilm, mpnet or a checkpoint folder" in said
    assert "shared data" not in result.output
    result = runner.invoke(app, ["train", "canary-mini", "--out", str(tmp_path / "out")])
    _one_error(result, str(fresh_clone), "PROSOCIAL_SHARED_DATA")
    assert not (tmp_path / "out").exists()


def test_the_tests_fall_back_to_the_slices_unless_ci_requires_the_full_data(tmp_path, monkeypatch):
    from tests import conftest

    monkeypatch.setattr(conftest, "REPO", tmp_path / "clone")
    monkeypatch.delenv(conftest.ENV_VAR, raising=False)
    monkeypatch.delenv(conftest.REQUIRE_FULL, raising=False)
    assert conftest.locate_shared_data() == (conftest.SLICES, False)
    monkeypatch.setenv(conftest.REQUIRE_FULL, "1")
    with pytest.raises(FileNotFoundError, match="PROSOCIAL_REQUIRE_FULL_DATA is set"):
        conftest.locate_shared_data()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert conftest.locate_shared_data() == (tmp_path / "shared" / "data", True)
    monkeypatch.setenv(conftest.ENV_VAR, str(conftest.SLICES))  # pointing at the slices is slice mode too
    assert conftest.locate_shared_data() == (conftest.SLICES, False)
    monkeypatch.setenv(conftest.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        conftest.locate_shared_data()


def test_eval_reports_default_outside_the_shipped_reports():
    """`eval behaviour` from the repo overwrote docs/reports/behaviour; every eval default is under runs/."""
    import typer

    from prosocial.cli.eval import app as eval_app

    group = typer.main.get_command(eval_app)
    outs = {name: next(p.default for p in command.params if p.name == "out")
            for name, command in group.commands.items() if any(p.name == "out" for p in getattr(command, "params", []))}
    assert {"behaviour", "safety-suite", "canary", "prost", "toxichat"} <= set(outs)
    assert all(str(out).startswith("runs/reports/") for name, out in outs.items() if name != "toxichat-train"), outs
