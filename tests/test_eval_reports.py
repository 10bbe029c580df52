"""Table 2 / Table 3 reports and their commands, on the real-schema fixtures with stub and tiny models."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from typer.testing import CliRunner

from prosocial.canary.base import SafetyDetector, Verdict, register_detector
from prosocial.canary.generative import CANARY_TOKENS, GenerativeCanary
from prosocial.cli.eval import app
from prosocial.data.labels import SafetyLabel
from prosocial.eval.reports import (
    canary_report,
    canary_table,
    load_examples,
    parse_spec,
    plot_confusion,
    prost_report,
    prost_table,
)
from prosocial.lm.inference import add_special_tokens
from prosocial.prost.canned import CANNED_REPLY, CannedGenerator
from prosocial.resources import RESOURCES
from tests.tiny_models import corpus_texts, fixture_examples, tiny_gpt2, train_tokenizer


@register_detector("test-always-caution")
class AlwaysCaution(SafetyDetector):
    """Says needs caution with one fixed RoT, whatever the context."""

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        return [Verdict(SafetyLabel.NEEDS_CAUTION, rots=["It's wrong to hurt people."] if with_rots else [])
                for _ in contexts]


@pytest.fixture(scope="module")
def examples(shared_data):
    return fixture_examples(shared_data)


def test_parse_spec_labels_backends_and_json_settings():
    assert parse_spec("canary-mini") == ("canary-mini", "canary-mini", {})
    assert parse_spec("Mine=generative:model=runs/c,batch_size=4") == ("Mine", "generative",
                                                                       {"model": "runs/c", "batch_size": 4})
    assert parse_spec("A=steered:lm=llamacpp,rots=canary-mini")[2] == {"lm": "llamacpp", "rots": "canary-mini"}
    assert parse_spec('s:lm_settings={"n_ctx": 8192, "n_parallel": 4},x=[1, 2]')[2] == {
        "lm_settings": {"n_ctx": 8192, "n_parallel": 4}, "x": [1, 2]}
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("x:oops")


def test_canary_report_counts_against_gold_and_plots(examples, tmp_path):
    result = canary_report(AlwaysCaution(), examples)
    gold = [e.safety_label for e in examples]
    assert result["n"] == len(examples)
    assert result["accuracy"] == pytest.approx(gold.count(SafetyLabel.NEEDS_CAUTION) / len(gold))
    caution_col = result["fine"]["labels"].index(SafetyLabel.NEEDS_CAUTION.value)
    matrix = result["fine"]["confusion_matrix"]
    assert sum(row[caution_col] for row in matrix) == len(examples)  # every prediction in one column
    assert result["rot_n"] == sum(bool(e.rots) for e in examples) and result["rot_perplexity"] is None
    assert 0 < result["rot_f1"] < 1 and result["rot_coverage"] == 1.0
    assert "| –" in canary_table({"stub": result})  # no perplexity for a non-LM detector
    png = plot_confusion(result, tmp_path / "cm.png", "stub")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_canary_report_gives_gold_rot_perplexity_for_a_language_model(examples):
    tokenizer = train_tokenizer(corpus_texts(examples))
    model = tiny_gpt2(tokenizer, seed=1)
    add_special_tokens(model, tokenizer, CANARY_TOKENS)
    result = canary_report(GenerativeCanary.from_model(model, tokenizer, max_new_tokens=6), examples[:6])
    assert result["n"] == 6 and 1.0 < result["rot_perplexity"] < 1e6


def test_prost_report_for_a_generator_without_token_probabilities(examples):
    result = prost_report(CannedGenerator(), examples)
    assert result["n"] == len(examples) and result["gold_rot_n"] == sum(bool(e.rots) for e in examples)
    assert 0 <= result["bleu4"] < 0.1 and 0 <= result["f1"] < 1 and "perplexity" not in result
    table = prost_table({"canned": result})
    assert "canned (w/ gold RoT)" in table and table.count("| – |") == 2


def test_load_examples_from_files_and_benchmarks_with_seeded_samples(shared_data):
    path = shared_data / "prosocial_dialog_examples" / "hf_rows_examples.json"
    examples, what = load_examples(str(path))
    assert len(examples) == 5 and "5 of 5" in what
    a, what = load_examples("toxichat:dev", shared_data, limit=7, seed=3)
    b, _ = load_examples("toxichat:dev", shared_data, limit=7, seed=3)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 7 and "seed 3" in what


def test_eval_canary_and_prost_commands_write_traceable_reports(shared_data, tmp_path):
    data = str(shared_data / "prosocial_dialog_examples" / "dialogstudio_converted_examples.json")
    out = tmp_path / "t2"
    folder = f"mini={RESOURCES / 'canary-mini'}"  # a model folder: its prosocial.json names the backend
    result = CliRunner().invoke(app, ["canary", "--data", data, "-m", "Stub=test-always-caution", "-m", "keywords",
                                      "-m", folder, "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["seed"] == 5 and data in report["meta"]["data"] and "prosocial_version" in report["meta"]
    assert set(report["results"]) == {"Stub", "keywords", "mini"}
    assert (tmp_path / "t2-stub.png").is_file() and "t2-stub.png" in out.with_suffix(".md").read_text()

    out = tmp_path / "t3"
    result = CliRunner().invoke(app, ["prost", "--data", data, "-m", "canned", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["results"]["canned"]["n"] == 12
    assert CANNED_REPLY not in out.with_suffix(".md").read_text()  # the report holds scores, not replies


def test_safety_suite_compares_labelled_detector_specs(tmp_path, shared_data):
    """Two settings of one backend get their own columns (labels), as `eval canary` specs do."""
    from typer.testing import CliRunner

    from prosocial.cli import app

    out = tmp_path / "suite"
    result = CliRunner().invoke(app, ["eval", "safety-suite", "-d", "keywords", "-d", "again=keywords",
                                      "-d", "broken=canary-mini:model_dir=" + str(tmp_path / "nowhere"),
                                      "--per-source", "20", "--data", str(shared_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipping" in result.output and "model directory not found" in " ".join(result.output.split())
    header = out.with_suffix(".md").read_text().splitlines()[2]
    assert header == "| source | keywords BA | again BA |"


def test_a_malformed_model_spec_is_a_usage_error(tmp_path, shared_data):
    from typer.testing import CliRunner

    from prosocial.cli import app

    result = CliRunner().invoke(app, ["eval", "safety-suite", "-d", "keywords:oops", "--per-source", "5",
                                      "--data", str(shared_data), "--out", str(tmp_path / "suite")])
    assert result.exit_code == 2 and "expected key=value" in result.output
    assert not (tmp_path / "suite.md").exists()
