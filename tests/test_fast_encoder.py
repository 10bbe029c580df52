"""Encoders run by ONNX Runtime: the same hidden states as PyTorch, exported once, and PyTorch where they cannot."""

import logging
import sys

import numpy as np
import pytest
import torch

from prosocial.canary import fast_encoder as fe
from prosocial.canary.fast_encoder import OnnxEncoder, fast_encoder, resolve_runtime
from prosocial.errors import ModelError


def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return BertModel(config).eval()


def batch(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random token ids, rows of the given lengths (0 is the pad id)."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, 120, (n,), generator=generator)
        mask[row, :n] = 1
    return ids, mask


@pytest.mark.parametrize("lengths", [[1], [3], [40], [5, 40, 17], [100, 2]])
def test_the_same_hidden_states_as_pytorch_at_any_batch_and_length(tmp_path, lengths):
    model = tiny_bert()
    fast = fast_encoder(model, "onnx", cache_dir=tmp_path)
    assert isinstance(fast, OnnxEncoder)
    ids, mask = batch(lengths)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    got = fast(input_ids=ids, attention_mask=mask).last_hidden_state
    assert got.dtype == torch.float32 and got.shape == expected.shape
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-4)


def test_exported_once_then_read_from_the_cache(tmp_path, monkeypatch):
    model = tiny_bert()
    first = fast_encoder(model, "onnx", cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [first.path.name]
    monkeypatch.setattr(fe, "export_bytes", lambda m: pytest.fail("exported again"))
    assert fast_encoder(model, "onnx", cache_dir=tmp_path).path == first.path
    other = tiny_bert(seed=1)  # other weights (a retrained model): a file of its own
    monkeypatch.undo()
    assert fast_encoder(other, "onnx", cache_dir=tmp_path).path != first.path


def test_export_leaves_the_model_in_eval_mode(tmp_path):
    # the exporter restores its wrapper's mode, recursively; a wrapper left in training mode turned dropout on
    model = tiny_bert()
    fast_encoder(model, "onnx", cache_dir=tmp_path)
    assert not any(m.training for m in model.modules())


def test_pytorch_where_asked_or_where_onnx_runtime_cannot_run(tmp_path, monkeypatch, caplog):
    model = tiny_bert()
    assert fast_encoder(model, "torch", cache_dir=tmp_path) is model
    monkeypatch.setenv("PROSOCIAL_RUNTIME", "torch")
    assert fast_encoder(model, cache_dir=tmp_path) is model
    assert resolve_runtime(None) == "torch" and resolve_runtime("onnx") == "onnx"
    monkeypatch.delenv("PROSOCIAL_RUNTIME")
    assert resolve_runtime(None) == "onnx"
    with pytest.raises(ModelError, match="unknown runtime 'tensorrt'"):
        fast_encoder(model, "tensorrt")
    assert fast_encoder(tiny_bert().to(torch.bfloat16), "onnx", cache_dir=tmp_path).dtype == torch.bfloat16
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    with caplog.at_level(logging.WARNING, "prosocial.canary.fast_encoder"):
        assert fast_encoder(model, "onnx", cache_dir=tmp_path) is model
    assert "onnxruntime is not installed" in caplog.text
    monkeypatch.undo()

    def broken(_):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(fe, "export_bytes", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "prosocial.canary.fast_encoder"):
        assert fast_encoder(model, "onnx", cache_dir=tmp_path / "fresh") is model
    assert "unsupported operator" in caplog.text


def test_an_unwritable_cache_still_runs(tmp_path, caplog):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    model = tiny_bert()
    with caplog.at_level(logging.WARNING, "prosocial.canary.fast_encoder"):
        fast = fast_encoder(model, "onnx", cache_dir=blocked)
    assert isinstance(fast, OnnxEncoder) and "cannot cache" in caplog.text
    ids, mask = batch([4, 9])
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    got = fast(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    assert np.allclose(got[mask.bool().numpy()], expected[mask.bool().numpy()], atol=1e-4)
