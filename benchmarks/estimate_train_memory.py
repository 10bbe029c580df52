"""Memory per GPU for training the paper's models (T5-large Canary, 2.7B Prost) with DDP, FSDP and ZeRO-2, offline.

    python benchmarks/estimate_train_memory.py [--gpus 8] [--out docs/reports/train-memory.json]

`accelerate estimate-memory` reads the model's config from the Hub; offline, this script builds the same empty
(meta-device) model from the hub's config values written below and calls accelerate's own `calculate_maximum_sizes`
and `estimate_training_usage`, so its "accelerate" column is what `accelerate estimate-memory <hub id>` prints.
That estimate is for one GPU holding everything (DDP). The sharded columns follow the ZeRO paper's accounting for
Adam (Rajbhandari et al. 2020) over P parameters on N GPUs, model states only (activations, buffers and the CUDA
context come on top):
    DDP, fp32 states (bf16 autocast keeps no second copy):  4P params + 4P grads + 8P Adam        = 16P
    FSDP FULL_SHARD, fp32 states:                         16P / N + one gathered block (largest layer, params+grads)
    DeepSpeed ZeRO-2, bf16 params and grads:               2P params + (2P grads + 4P master + 8P Adam) / N
"""

from __future__ import annotations

import argparse

from prosocial.io import write_json

GIB = 2**30

# Values from each model's config.json on the Hugging Face Hub.
MODELS = {
    "Canary: T5-large (google-t5/t5-large)": ("t5", dict(
        vocab_size=32128, d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_decoder_layers=24, num_heads=16,
        relative_attention_num_buckets=32, feed_forward_proj="relu", tie_word_embeddings=True)),
    "Prost: BlenderBot 2.7B (facebook/blenderbot-3B)": ("blenderbot", dict(
        vocab_size=8008, d_model=2560, encoder_layers=2, decoder_layers=24, encoder_attention_heads=32,
        decoder_attention_heads=32, encoder_ffn_dim=10240, decoder_ffn_dim=10240, max_position_embeddings=128,
        scale_embedding=True)),
}


def estimate(model_type: str, settings: dict, gpus: int) -> dict:
    """Parameter count, accelerate's single-GPU training estimate and model-state GiB per GPU per strategy."""
    from accelerate import init_empty_weights
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    with init_empty_weights():
        model = AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model(model_type, **settings))
    model.tie_weights()  # as loading a checkpoint does; untied, the shared embeddings would count three times
    total_bytes, (largest_bytes, _) = calculate_maximum_sizes(model)  # float32 bytes
    params = total_bytes / 4
    accelerate_gib = {dtype: max(estimate_training_usage(total_bytes, dtype).values()) / GIB
                      for dtype in ("float32", "bfloat16")}
    return {
        "parameters": int(params),
        "largest_layer_gib": round(largest_bytes / GIB, 2),
        "accelerate_estimate_memory_training_gib": {k: round(v, 2) for k, v in accelerate_gib.items()},
        f"model_states_gib_per_gpu_on_{gpus}": {
            "ddp": round(16 * params / GIB, 2),
            "fsdp_full_shard": round((16 * params / gpus + 2 * largest_bytes) / GIB, 2),
            "deepspeed_zero2": round((2 * params + 14 * params / gpus) / GIB, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--out", default="docs/reports/train-memory.json")
    args = parser.parse_args()
    report = {name: estimate(kind, settings, args.gpus) for name, (kind, settings) in MODELS.items()}
    write_json(args.out, report)
    key = f"model_states_gib_per_gpu_on_{args.gpus}"
    print(f"| model | parameters | accelerate (fp32 / bf16) | DDP | FSDP | ZeRO-2 ({args.gpus} GPUs) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in report.items():
        acc, per = row["accelerate_estimate_memory_training_gib"], row[key]
        print(f"| {name} | {row['parameters'] / 1e9:.2f}B | {acc['float32']:.1f} / {acc['bfloat16']:.1f} GiB "
              f"| {per['ddp']:.1f} GiB | {per['fsdp_full_shard']:.1f} GiB | {per['deepspeed_zero2']:.1f} GiB |")


if __name__ == "__main__":
    main()
