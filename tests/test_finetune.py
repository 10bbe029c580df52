"""The fine-tuning loop on tiny random models: loss goes down, truncation and masking, checkpoints resume exactly."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
import torch

from prosocial.canary.generative import CANARY_TOKENS, canary_pairs
from prosocial.errors import ModelError
from prosocial.lm.finetune import CHECKPOINT_DIR, STATE_FILE, TrainConfig, _lr_factor, finetune
from prosocial.lm.inference import encode_pairs, load_model, token_nlls
from prosocial.scoring import perplexity
from tests.tiny_models import corpus_texts, fixture_examples, save, tiny_gpt2, tiny_t5, train_tokenizer

FAST = dict(lr=3e-3, batch_size=8, warmup_steps=0, progress=False, device="cpu")


@pytest.fixture(scope="module")
def examples(shared_data):
    return fixture_examples(shared_data)


@pytest.fixture(scope="module")
def tokenizer(examples):
    return train_tokenizer(corpus_texts(examples))


@pytest.fixture(scope="module")
def pairs(examples):
    return canary_pairs(examples)


def _mean_nll(model, tokenizer, pairs) -> float:
    nlls = token_nlls(model, tokenizer, [s for s, _ in pairs], [t for _, t in pairs], batch_size=8)
    return sum(map(sum, nlls)) / sum(map(len, nlls))


@pytest.mark.parametrize("build", [tiny_t5, tiny_gpt2], ids=["seq2seq", "causal"])
def test_training_lowers_the_loss_on_the_training_pairs(build, tokenizer, pairs, tmp_path):
    base = save(build(tokenizer), tokenizer, tmp_path / "base")
    model, tok = load_model(base)
    tok.add_tokens(list(CANARY_TOKENS), special_tokens=True)
    model.resize_token_embeddings(max(len(tok), model.get_input_embeddings().num_embeddings))
    before = _mean_nll(model, tok, pairs)
    result = finetune(base, pairs, tmp_path / "out", TrainConfig(max_steps=30, **FAST), new_tokens=CANARY_TOKENS)
    trained, trained_tok = load_model(result.model_dir)
    after = _mean_nll(trained, trained_tok, pairs)
    assert result.steps == 30
    assert after < 0.6 * before, (before, after)


def test_sources_are_truncated_from_the_left_and_causal_loss_skips_the_source(tokenizer):
    source, target = "one two three four five six seven eight nine ten", "the end"
    full = tokenizer(source)["input_ids"]
    seq = encode_pairs(tokenizer, True, [source], [target], max_source_len=4, max_target_len=16)
    assert seq["input_ids"][0].tolist() == full[-4:]  # the newest words survive
    assert seq["labels"][0].tolist()[-1] == tokenizer.eos_token_id
    causal = encode_pairs(tokenizer, False, [source], [target], max_source_len=4, max_target_len=16)
    labels = causal["labels"][0].tolist()
    assert labels[:4] == [-100] * 4 and all(x != -100 for x in labels[4:])
    assert causal["input_ids"][0].tolist()[:4] == full[-4:]


def test_token_nlls_score_targets_only_and_skip_prefixes(tokenizer):
    model = tiny_t5(tokenizer)
    nll = token_nlls(model, tokenizer, ["a b c", "d e"], ["hello there", "yes"], batch_size=2)
    assert [len(x) for x in nll] == [len(tokenizer("hello there")["input_ids"]) + 1, 2]  # + EOS
    assert all(v >= 0 for row in nll for v in row) and perplexity(nll) > 1
    skipped = token_nlls(model, tokenizer, ["a b c"], [" there"], prefixes=["hello"])
    assert len(skipped[0]) == len(tokenizer(" there")["input_ids"]) + 1


def test_checkpoint_resume_continues_exactly_where_it_stopped(tokenizer, pairs, tmp_path):
    base = save(tiny_t5(tokenizer), tokenizer, tmp_path / "base")
    dev = pairs[:4]
    config = dict(eval_every=3, patience=None, **FAST)
    straight = finetune(base, pairs, tmp_path / "a", TrainConfig(max_steps=6, **config), dev=dev)
    finetune(base, pairs, tmp_path / "b", TrainConfig(max_steps=3, **config), dev=dev)
    state = json.loads((tmp_path / "b" / CHECKPOINT_DIR / STATE_FILE).read_text())
    assert state["step"] == 3 and (tmp_path / "b" / CHECKPOINT_DIR / "config.json").is_file()
    resumed = finetune(base, pairs, tmp_path / "b", TrainConfig(max_steps=6, **config), dev=dev, resume=True)
    assert resumed.steps == 6
    assert resumed.history[-1]["dev_perplexity"] == pytest.approx(straight.history[-1]["dev_perplexity"], rel=1e-5)
    a, _ = load_model(tmp_path / "a" / CHECKPOINT_DIR)
    b, _ = load_model(tmp_path / "b" / CHECKPOINT_DIR)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_linear_decay_warms_up_then_falls_to_zero_at_the_last_step():
    factors = [_lr_factor(2, 10, "linear", step) for step in range(10)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in pairwise(factors[2:])) and factors[-1] == pytest.approx(1 / 8)
    assert _lr_factor(2, 10, "linear", 10) == 0.0
    assert [_lr_factor(2, 10, "constant", step) for step in (2, 9)] == [1.0, 1.0]
    with pytest.raises(ValueError, match="decay"):
        TrainConfig(decay="cosine")


def test_early_stopping_on_dev_perplexity(tokenizer, pairs, tmp_path):
    base = save(tiny_t5(tokenizer), tokenizer, tmp_path / "base")
    config = TrainConfig(max_steps=50, eval_every=1, patience=2, **{**FAST, "lr": 0.0})  # dev ppl cannot improve
    result = finetune(base, pairs, tmp_path / "out", config, dev=pairs[:4])
    assert result.stopped_early and result.steps == 3
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_lora_trains_new_tokens_and_saves_a_plain_model(tokenizer, pairs, tmp_path):
    base = save(tiny_gpt2(tokenizer), tokenizer, tmp_path / "base")
    config = TrainConfig(max_steps=5, lora_rank=4, lora_targets=["c_attn"], **FAST)
    finetune(base, pairs, tmp_path / "out", config, new_tokens=CANARY_TOKENS)
    model, tok = load_model(tmp_path / "out")  # merged: loads without peft
    assert not any("lora" in name for name in model.state_dict())
    assert tok.convert_tokens_to_ids(CANARY_TOKENS[0]) != tok.unk_token_id


def test_resume_without_a_checkpoint_and_bad_paths_are_model_errors(tokenizer, pairs, tmp_path):
    with pytest.raises(ModelError, match="nothing to resume"):
        finetune(tmp_path / "missing", pairs, tmp_path / "out", TrainConfig(max_steps=1, **FAST), resume=True)
    with pytest.raises(ModelError, match="cannot load"):
        load_model(tmp_path / "missing")
