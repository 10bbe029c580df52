"""Check that llama.cpp + the exported LoRA GGUF behaves like transformers + the peft adapter it came from.

    .venv/bin/python benchmarks/verify_prost_lora.py ~/.cache/prosocial/prost-mini-train/checkpoint \
        src/prosocial/resources/prost-mini/prost-mini-lora.gguf      # the checkpoint's own export

Greedy replies of both stacks are compared on a few prompts, with and without the adapter (the base pair shows
how far Q4_1 llama.cpp and de-quantized float32 transformers drift anyway), plus each stack's first-token
top-5 probabilities.
"""

from __future__ import annotations

import json
import math
import sys

import torch

from prosocial.prost.mini import STOPS, ProstMini, base_model_dir, parse_generation, render_prompt

PROMPTS = [["I'm going to key my ex's car tonight, she deserves it."], ["Women are too emotional to lead."],
           ["I told my little brother he was adopted just to watch him cry."], ["My dog learned a new trick today."],
           ["What do you like to do on weekends?"], ["I want to skip my insulin to lose weight."]]


def transformers_side(adapter_dir: str | None) -> tuple[list[str], list[dict[str, float]]]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter_dir:
        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    replies, tops = [], []
    with torch.inference_mode():
        for context in PROMPTS:
            ids = tokenizer(render_prompt(context), return_tensors="pt")
            probs = model(**ids).logits[0, -1].softmax(-1)
            values, index = probs.topk(5)
            tops.append({tokenizer.decode([int(i)]): round(float(v), 4) for v, i in zip(values, index, strict=True)})
            out = model.generate(**ids, max_new_tokens=60, do_sample=False, pad_token_id=tokenizer.eos_token_id)
            replies.append(parse_generation(tokenizer.decode(out[0, ids["input_ids"].shape[1]:]))[1])
    return replies, tops


def llamacpp_side(adapter_gguf: str, scale: float) -> tuple[list[str], list[dict[str, float]]]:
    generator = ProstMini(adapter=adapter_gguf, lora_scale=scale, max_new_tokens=60, n_parallel=1)
    server = generator.lm._server()
    replies, tops = [], []
    for context in PROMPTS:
        body = {"prompt": render_prompt(context), "max_tokens": 60, "temperature": 0.0, "stop": STOPS, "n_probs": 5}
        result = server.handle_completions(body)
        text = result["choices"][0]["text"] if "choices" in result else result["content"]
        replies.append(parse_generation(text)[1])
        first = (result.get("completion_probabilities") or result["choices"][0]["logprobs"]["content"])[0]
        tops.append({t["token"]: round(math.exp(t["logprob"]), 4) for t in first["top_logprobs"]})
    return replies, tops


def main() -> None:
    adapter_dir, adapter_gguf = sys.argv[1], sys.argv[2]
    report = {}
    for label, hf_adapter, scale in (("base", None, 0.0), ("lora", adapter_dir, 1.0)):
        hf, hf_top = transformers_side(hf_adapter)
        cpp, cpp_top = llamacpp_side(adapter_gguf, scale)
        report[label] = {"identical_replies": sum(a == b for a, b in zip(hf, cpp, strict=True)), "of": len(hf),
                         "pairs": [{"transformers": a, "llamacpp": b, "top5_transformers": ta, "top5_llamacpp": tb}
                                   for a, b, ta, tb in zip(hf, cpp, hf_top, cpp_top, strict=True)]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
