"""`check` and `respond` take backend settings as `eval` does: `-b NAME[:key=value,...]`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from prosocial.cli import app

runner = CliRunner()


def test_check_passes_backend_settings_and_refuses_unknown_ones(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("basil\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "-b", f"keywords:wordlist={words}", "--json", "I grow basil"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["coarse"] != "casual"  # the given list, not the default one, decided
    assert json.loads(runner.invoke(app, ["check", "-b", "keywords", "--json", "I grow basil"]).stdout)[
        "coarse"] == "casual"
    result = runner.invoke(app, ["check", "-b", "keywords:wordlsit=x", "hi"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "'wordlsit'" in text and "its settings: wordlist" in text
    wide = {"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"}
    result = runner.invoke(app, ["check", "-b", "keywords:oops", "hi"], env=wide)
    assert result.exit_code == 2 and "expected key=value" in result.output
    result = runner.invoke(app, ["check", "-b", "mine=keywords", "hi"], env=wide)
    assert result.exit_code == 2 and "LABEL=" in result.output


def test_respond_passes_detector_and_generator_settings():
    from prosocial.cli.respond import build_agent

    agent = build_agent("canned:reply=Hello there.", None, None, "paper", "keywords:wordlist=/nowhere", None, None, [])
    # the agent's detector is the language guard around the one asked for
    assert agent.generator.reply == "Hello there." and str(agent.detector.base.wordlist) == "/nowhere"
    result = runner.invoke(app, ["respond", "-b", "canned:reply=Hi from the settings.", "-d", "keywords", "hello"])
    assert result.exit_code == 0 and "Hi from the settings." in result.output, result.output


def test_help_shows_no_type_beside_flags():
    """typer printed `<bool>` beside --no-rots and --help, flags that take no value; other options keep theirs."""
    text = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
    assert "<bool>" not in text
    assert "<str>" in text and "<int" in text  # --backend, --batch-size still say what they take
    flags = [line for line in text.splitlines() if "--no-rots" in line or "--help " in line]
    assert len(flags) == 2 and not any("<" in line for line in flags)
