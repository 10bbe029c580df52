"""`norms test` and `serve` keep transformers' "Loading weights" bars off their output (models load lazily, each
drawing a bar in the middle of a table or a service log)."""

from __future__ import annotations

from pathlib import Path

from transformers.utils import logging as transformers_logging
from typer.testing import CliRunner

from prosocial.cli import app

PACKS = Path(__file__).parent.parent / "docs" / "norms"


def test_norms_test_loads_models_without_progress_bars(monkeypatch):
    from prosocial.canary import norms as norms_module

    seen = []
    real = norms_module.run_norm_tests

    def spy(*args, **kwargs):
        seen.append(transformers_logging.is_progress_bar_enabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(norms_module, "run_norm_tests", spy)
    transformers_logging.enable_progress_bar()
    result = CliRunner().invoke(app, ["norms", "test", str(PACKS / "children.yaml"), "-b", "keywords"])
    assert result.exit_code in (0, 1) and "checks passed" in result.output, result.output
    assert seen == [False] and transformers_logging.is_progress_bar_enabled()  # restored after


def test_serve_runs_without_progress_bars(monkeypatch):
    import uvicorn

    seen = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.append(
        transformers_logging.is_progress_bar_enabled()))
    transformers_logging.enable_progress_bar()
    try:
        result = CliRunner().invoke(app, ["serve", "--detector", "keywords", "--port", "0"])
        assert result.exit_code == 0, result.output
        assert seen == [False]
    finally:
        transformers_logging.enable_progress_bar()
