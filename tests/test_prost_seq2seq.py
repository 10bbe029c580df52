"""Prost's two variants on tiny random models, and the `train` CLI end to end (both commands)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from prosocial.canary.generative import ROT_SEP
from prosocial.cli.train import app, parse_weights
from prosocial.data.mixture import PROST_WEIGHTS
from prosocial.eval.reports import prost_report
from prosocial.lm.finetune import TrainConfig, finetune
from prosocial.prost import Reply, load_generator
from prosocial.prost.seq2seq import (
    PROST_TOKENS,
    RESPONSE_SEP,
    ROTS_LINE,
    Prost,
    parse_prost,
    prost_pairs,
    write_config,
)
from tests.tiny_models import corpus_texts, fixture_examples, save, tiny_gpt2, tiny_t5, train_tokenizer

CONFIG = TrainConfig(lr=3e-3, batch_size=8, max_steps=60, warmup_steps=0, progress=False, device="cpu")


@pytest.fixture(scope="module")
def examples(shared_data):
    return fixture_examples(shared_data)


@pytest.fixture(scope="module")
def tokenizer(examples):
    return train_tokenizer(corpus_texts(examples))


@pytest.fixture(scope="module")
def rot_response(examples, tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("prost")
    base = save(tiny_t5(tokenizer), tokenizer, root / "base")
    finetune(base, prost_pairs(examples, "rot-response"), root / "model", CONFIG, new_tokens=PROST_TOKENS)
    write_config(root / "model", "rot-response", None, 512)
    return root / "model"


def test_targets_and_parsing():
    pairs = prost_pairs(
        [type("E", (), {"context": ["Hi"], "response": "Stop.", "rots": ["Be kind.", "Be fair."]})()], "rot-response"
    )
    assert pairs == [("Speaker 1: Hi", f"Be kind. {ROT_SEP} Be fair. {RESPONSE_SEP} Stop.")]
    reply, ok = parse_prost(pairs[0][1])
    assert ok and reply == Reply("Stop.", ["Be kind.", "Be fair."])
    assert parse_prost("just a reply") == (Reply("just a reply"), True)
    assert parse_prost(f"Be kind. {ROT_SEP} Be") == (Reply("", ["Be kind.", "Be"]), False)  # cut off in the RoTs


def test_rot_response_generates_rots_then_a_reply_and_obeys_given_rots(rot_response, examples):
    prost = load_generator("prost", model=rot_response)
    assert isinstance(prost, Prost) and prost.variant == "rot-response"
    contexts = [e.context for e in examples[:4]]
    replies = prost.generate(contexts)
    assert all(isinstance(r, Reply) and RESPONSE_SEP not in r.response for r in replies)
    assert any(r.rots for r in replies)  # it learnt to write RoTs first
    given = [["You should be kind."]] * 4
    grounded = prost.generate(contexts, given)
    assert [r.rots for r in grounded] == given and all(RESPONSE_SEP not in r.response for r in grounded)
    with pytest.raises(ValueError, match="one list per context"):
        prost.generate(contexts, given[:1])


def test_table3_evaluation_has_the_paper_rows(rot_response, examples, paper_tables_path):
    result = prost_report(Prost.load(rot_response), examples)
    assert set(result) == {"n", "bleu4", "f1", "perplexity", "gold_rot_n", "gold_rot_bleu4", "gold_rot_f1",
                           "gold_rot_perplexity"}
    for key in ("bleu4", "f1", "gold_rot_bleu4", "gold_rot_f1"):
        assert 0.0 <= result[key] <= 1.0
    assert 1.0 < result["gold_rot_perplexity"] < 10_000 and 1.0 < result["perplexity"] < 10_000
    assert prost_report(Prost.load(rot_response), examples[:3])["n"] == 3


def test_response_only_variant_on_a_causal_model(examples, tokenizer, tmp_path):
    base = save(tiny_gpt2(tokenizer), tokenizer, tmp_path / "base")
    finetune(base, prost_pairs(examples, "response"), tmp_path / "model", CONFIG)
    prost = Prost(tmp_path / "model", variant="response", max_new_tokens=12)
    assert ROTS_LINE in prost.sources([["Hi"]], [["Be kind."]])[0]  # given RoTs go into its input
    replies = prost.generate([e.context for e in examples[:3]], [["Be kind."]] * 3)
    assert all(r.rots == ["Be kind."] for r in replies)
    result = prost_report(prost, examples[:5])
    assert {"bleu4", "f1", "perplexity", "gold_rot_perplexity"} <= set(result)
    copy = Prost.load(prost.save(tmp_path / "copy"))
    assert copy.variant == "response"
    by_folder = load_generator(str(tmp_path / "copy"))  # its prosocial.json names the backend
    assert isinstance(by_folder, Prost) and by_folder.variant == "response"


def test_weights_option_parses_and_defaults():
    assert parse_weights(None, PROST_WEIGHTS) == PROST_WEIGHTS
    assert parse_weights("prosocial=4,dailydialog=1", {}) == {"prosocial": 4.0, "dailydialog": 1.0}
    for bad in ("prosocial", "prosocial=x", "dailydialog=1"):
        with pytest.raises(Exception, match="name=weight|must include"):
            parse_weights(bad, {})


@pytest.mark.parametrize("command", ["canary", "prost"])
def test_train_cli_end_to_end(command, tokenizer, shared_data, tmp_path):
    base = save(tiny_t5(tokenizer), tokenizer, tmp_path / "base")
    files = sorted(str(p) for p in (shared_data / "prosocial_dialog_examples").glob("*.json"))
    out = tmp_path / "out"
    args = [command, "--model", str(base), "--out", str(out), "--max-steps", "4", "--batch-size", "4",
            "--lr", "1e-3", "--eval-every", "2", "--dev-fraction", "0.3", "--casual-root", str(shared_data),
            "--casual-limit", "20", "--device", "cpu", "--no-progress", "--eval-limit", "6"]
    for f in files:
        args += ["--data", f]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Table 2" in result.output if command == "canary" else "Table 3" in result.output
    assert "dailydialog=" in result.output  # the casual corpora joined the mixture
    scores = json.loads((out / "dev_eval.json").read_text())
    assert scores["n"] > 0
    resumed = CliRunner().invoke(app, [*args[:6], "6", *args[7:], "--resume"])
    assert resumed.exit_code == 0, resumed.output
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 6
