"""LoRA adapters for the packaged SmolLM2 GGUF: train one with `prosocial.lm.finetune`, export it for llama.cpp.

Prost-mini (`prosocial.prost.mini`) and Canary-mini's RoT writer (`prosocial.canary.rotwriter`) are both such
adapters. The choices they share:
- LoRA only on v_proj, o_proj and the MLP of the top `TOP_LAYERS` layers: llama.cpp permutes the Q/K rows of
  llama models, so q/k adapters would need the same permutation, and with frozen lower layers backpropagation
  stops early, which roughly halves the training cost on CPU.
- The base for training is the de-quantized Q4_1 GGUF (what `TransformersLM` caches), so the adapter is
  learnt on the very weights llama.cpp runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prosocial.errors import ModelError

TOP_LAYERS = 16
LORA_MODULES = ("self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
#: peft module name -> llama.cpp tensor name (LLaMA architecture).
GGUF_NAMES = {
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def lora_targets(num_layers: int, top_layers: int = TOP_LAYERS) -> list[str]:
    """peft target names (matched as suffixes) for `LORA_MODULES` of the top `top_layers` decoder layers."""
    first = max(0, num_layers - top_layers)
    return [f"layers.{i}.{m}" for i in range(first, num_layers) for m in LORA_MODULES]


def base_model_dir() -> Path:
    """The packaged GGUF de-quantized to a transformers folder (converted once, then cached by TransformersLM)."""
    from prosocial.lm.hf import TransformersLM, _gguf_cache_key, cache_root

    lm = TransformersLM()
    folder = cache_root() / "gguf" / _gguf_cache_key(lm.model, lm.gguf_file or "")
    if not (folder / "config.json").is_file():
        lm._convert_gguf(folder)
    return folder


@dataclass
class AdapterRun:
    """A finished LoRA run: the peft adapter folder, steps done and the dev perplexity history."""

    adapter_dir: Path
    steps: int
    history: list[dict[str, float]]


def train_adapter(
    base: str | Path,
    sources: dict[str, list[tuple[str, str]]],
    dev: Sequence[tuple[str, str]],
    work_dir: str | Path,
    steps: int = 60,
    batch_size: int = 8,
    lr: float = 1e-3,
    warmup: int = 3,
    decay: str = "constant",
    weights: Mapping[str, float] | None = None,
    rank: int = 16,
    alpha: int = 32,
    top_layers: int = TOP_LAYERS,
    eval_every: int = 10,
    max_source_len: int = 128,
    max_target_len: int = 72,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> AdapterRun:
    """LoRA-tune a causal LM on the mixture through `prosocial.lm.finetune` (resumable at every evaluation).

    `weights` are the sources' mixture weights (1 where not given; Prost-mini passes the paper's B.2); `decay`
    is the learning-rate schedule after warm-up (`TrainConfig.decay`). The adapter kept is the LAST one
    (`work_dir/checkpoint`), not the best-by-dev one: finetune saves the best only merged into the base, which
    cannot be exported as a llama.cpp LoRA; with a linear decay the last one is where the run settles. The dev
    perplexity history is returned so a non-decreasing tail is visible (and reported in the model card).
    """
    from transformers import AutoConfig

    from prosocial.data.mixture import MixtureSampler
    from prosocial.lm.finetune import CHECKPOINT_DIR, TrainConfig, finetune

    layers = AutoConfig.from_pretrained(base).num_hidden_layers
    config = TrainConfig(
        lr=lr, batch_size=batch_size, max_steps=steps, warmup_steps=warmup, decay=decay, eval_every=eval_every,
        eval_batch_size=16, patience=None, seed=seed, lora_rank=rank, lora_alpha=alpha, lora_dropout=0.0,
        lora_targets=lora_targets(layers, top_layers), device="cpu", progress=progress,
        max_source_len=max_source_len, max_target_len=max_target_len,
    )
    weights = {n: 1.0 for n in sources} | {n: w for n, w in (weights or {}).items() if n in sources}
    sampler = MixtureSampler(sources, weights, seed=seed)
    work_dir = Path(work_dir)
    result = finetune(str(base), sampler, work_dir, config, dev=list(dev), resume=resume)
    return AdapterRun(work_dir / CHECKPOINT_DIR, result.steps, result.history)


def export_lora_gguf(adapter_dir: str | Path, out: str | Path, float16: bool = True) -> Path:
    """Write a peft LoRA adapter (llama architecture) as a llama.cpp LoRA GGUF.

    llama.cpp's layout: `general.type`="adapter", `adapter.type`="lora", `adapter.lora.alpha`, and for each
    adapted weight `blk.N.<name>.weight.lora_a` (rank x in) and `.lora_b` (out x rank), so llama.cpp computes
    W x + alpha/rank * B (A x), as peft does. Q/K adapters are refused (llama.cpp permutes their rows).
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, out = Path(adapter_dir), Path(out)
    config_file, weights = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise ModelError(f"{adapter_dir} is not a peft LoRA adapter folder (adapter_config.json, *.safetensors)")
    config = json.loads(config_file.read_text())
    if config.get("use_rslora") or config.get("use_dora"):
        raise ModelError("rsLoRA/DoRA adapters are not supported by this exporter")
    pattern = re.compile(r"layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight$")
    tensors: dict[str, Any] = {}
    for key, value in load_file(str(weights)).items():
        match = pattern.search(key)
        if not match or match.group(2) not in GGUF_NAMES:
            raise ModelError(f"cannot map adapter tensor {key!r} to llama.cpp (supported: {sorted(GGUF_NAMES)})")
        layer, module, ab = match.groups()
        name = f"blk.{layer}.{GGUF_NAMES[module]}.weight.lora_{ab.lower()}"
        tensors[name] = value.astype(np.float16 if float16 else np.float32)
    writer = gguf.GGUFWriter(str(out), arch="llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config["lora_alpha"]))
    for name in sorted(tensors, key=_tensor_order):
        writer.add_tensor(name, tensors[name])
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _tensor_order(name: str) -> tuple[int, str]:
    return int(name.split(".")[1]), name
