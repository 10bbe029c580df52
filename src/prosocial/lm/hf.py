"""Hugging Face causal LMs (hub id or local folder, or a GGUF file) run in-process with transformers.

This is the backend for users' own checkpoints and for the paper-size recipes on a GPU. GGUF files are
de-quantized by transformers, which is slow (about 20 s for SmolLM2-135M on 2 cores), so the result is
written once as safetensors under the cache folder and every later load reads that instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from prosocial.errors import ModelError
from prosocial.lm.base import (
    LanguageModel,
    Message,
    cached_resource,
    default_smollm2_gguf,
    register_lm,
    truncate_at_stop,
)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where converted models live: `cache_dir`, else $PROSOCIAL_CACHE, else ~/.cache/prosocial."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PROSOCIAL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "prosocial"


def _gguf_cache_key(model: str, gguf_file: str) -> str:
    """Name the converted copy after the source; a local file's size and mtime make an edited file reconvert."""
    source = Path(model) / gguf_file
    ident = f"{model}|{gguf_file}"
    if source.is_file():
        st = source.stat()
        ident = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return f"{Path(gguf_file).stem}-{digest}"


class _StopStrings:
    """Stop each sequence once its decoded answer contains a stop string.

    transformers' own `stop_strings` needs to map every vocabulary entry to text, which fails for some
    tokenizers (word-level ones, for instance); decoding the answer so far works for all of them.
    """

    def __init__(self, tokenizer: Any, stop: list[str], prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, [s for s in stop if s], prompt_length

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


@register_lm("transformers")
class TransformersLM(LanguageModel):
    """A causal LM through transformers: batched generation with left padding, chat via the chat template.

    `model` is a hub id or folder, or a path to a `.gguf` file (same as folder + `gguf_file=`); None means
    the packaged SmolLM2 GGUF. `dtype` is a torch dtype name or "auto" (None keeps float32, safest on CPU).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        gguf_file: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int = 8,
        cache_dir: str | Path | None = None,
        trust_remote_code: bool = False,
    ):
        if model is None:
            path = default_smollm2_gguf()
            model, gguf_file = path.parent, path.name
        elif gguf_file is None and str(model).endswith(".gguf") and Path(model).is_file():
            model, gguf_file = Path(model).parent, Path(model).name
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        self.model = str(model)
        self.gguf_file = gguf_file
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.trust_remote_code = trust_remote_code

    def _load(self) -> tuple[Any, Any]:
        key = ("transformers", self.model, self.gguf_file, self.device, self.dtype, self.trust_remote_code)
        return cached_resource(key, self._load_uncached)

    def _load_uncached(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = self.model
        if self.gguf_file:
            converted = cache_root(self.cache_dir) / "gguf" / _gguf_cache_key(self.model, self.gguf_file)
            if not (converted / "config.json").is_file():
                self._convert_gguf(converted)
            source = str(converted)
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=self.dtype, **kwargs)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load causal LM {source!r}: {err}") from err
        model.to(self.device).eval()
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow each prompt directly
        tokenizer.truncation_side = "left"  # over-long dialogues lose their oldest turns, not the latest
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelError(f"tokenizer of {source!r} has neither a pad nor an eos token; cannot batch")
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    def _convert_gguf(self, target: Path) -> None:
        """De-quantize the GGUF once and save it as safetensors, atomically (a crash leaves no half copy)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model, gguf_file=self.gguf_file)
            model = AutoModelForCausalLM.from_pretrained(self.model, gguf_file=self.gguf_file)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot read GGUF {self.gguf_file!r} from {self.model!r}: {err}") from err
        # The weights are plain float tensors now; only the quantizer marker blocks save_pretrained.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not merely beaten to it by another process
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        return self._complete(prompts, True, max_new_tokens, temperature, top_p, stop, seed)

    def chat(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        _, tokenizer = self._load()
        if not tokenizer.chat_template:
            raise ModelError(f"{self.model!r} has no chat template; use generate() with a plain prompt instead")
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages_batch]
        # The template already holds any BOS token; adding special tokens again would double it.
        return self._complete(texts, False, max_new_tokens, temperature, top_p, stop, seed)

    def _complete(
        self,
        texts: list[str],
        add_special_tokens: bool,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str] | None,
        seed: int | None,
    ) -> list[str]:
        import torch

        if not texts:
            return []
        model, tokenizer = self._load()
        window = getattr(model.config, "max_position_embeddings", None)
        max_length = window - max_new_tokens if window and window > max_new_tokens else None
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        cuda = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        outputs: list[str] = []
        # A seed must not reset the caller's global RNG, so sampling runs on a forked one.
        with torch.random.fork_rng(devices=cuda) if seed is not None else nullcontext(), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=max_length is not None,
                    max_length=max_length,
                    add_special_tokens=add_special_tokens,
                ).to(self.device)
                prompt_length = batch["input_ids"].shape[1]
                criteria = [_StopStrings(tokenizer, stop, prompt_length)] if stop else None
                generated = model.generate(**batch, **options, stopping_criteria=criteria)
                new = generated[:, prompt_length:]
                outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
        return [truncate_at_stop(text, stop) for text in outputs]
