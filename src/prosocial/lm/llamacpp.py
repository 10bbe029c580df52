"""GGUF models through llama.cpp's embedded server (xllamacpp): the fast CPU path for the offline default.

xllamacpp runs llama.cpp's own server engine in-process (no HTTP), with continuous batching over
`n_parallel` slots, so a batch of prompts is decoded together and requests from several threads are safe.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prosocial.errors import ModelError
from prosocial.lm.base import (
    Completion,
    LanguageModel,
    Message,
    UpstreamError,
    cached_resource,
    default_smollm2_gguf,
    register_lm,
    sampling_fields,
    token_choices,
    truncate_at_stop,
)


def _cpu_count() -> int:
    """Cores this process may use (a container's affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@register_lm("llamacpp")
class LlamaCppLM(LanguageModel):
    """A GGUF file (default: the packaged SmolLM2-135M-Instruct) run by llama.cpp.

    `n_ctx` is the total context shared by the `n_parallel` slots (each prompt + answer must fit in
    n_ctx / n_parallel tokens). `verbosity` 0 keeps llama.cpp's logging quiet; raise it to debug loading.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        n_ctx: int = 4096,
        n_parallel: int = 2,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        verbosity: int = 0,
        lora: str | Path | None = None,
        lora_scale: float = 1.0,
    ):
        self.model = Path(model) if model is not None else default_smollm2_gguf()
        self.n_ctx = n_ctx
        self.n_parallel = max(1, n_parallel)
        self.n_threads = n_threads or _cpu_count()
        self.n_gpu_layers = n_gpu_layers
        self.verbosity = verbosity
        self.lora = None if lora is None else Path(lora)
        self.lora_scale = lora_scale

    def _server(self) -> Any:
        key = ("llamacpp", str(self.model.resolve()), self.lora and str(self.lora.resolve()), self.lora_scale,
               self.n_ctx, self.n_parallel, self.n_threads, self.n_gpu_layers)
        return cached_resource(key, self._start)

    def _start(self) -> Any:
        import xllamacpp

        for path, what in ((self.model, "GGUF model"), (self.lora, "LoRA adapter")):
            if path is not None and not path.is_file():
                raise ModelError(f"{what} file not found: {path}")
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model)
        if self.lora is not None:
            params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(self.lora), self.lora_scale)]
        params.n_ctx = self.n_ctx
        params.n_parallel = self.n_parallel
        params.n_gpu_layers = self.n_gpu_layers
        params.cpuparams.n_threads = self.n_threads
        params.cpuparams_batch.n_threads = self.n_threads
        params.verbosity = self.verbosity
        params.warmup = False  # the first real request warms up just as well
        try:
            return xllamacpp.Server(params)
        except Exception as err:  # the binding raises plain RuntimeError/ValueError with llama.cpp's reason
            adapter = f" with adapter {self.lora}" if self.lora else ""
            raise ModelError(f"llama.cpp cannot load {self.model}{adapter}: {err}") from err

    @staticmethod
    def _choices(result: Any, expected: int) -> list[dict[str, Any]]:
        """The answer's choices in prompt order, or an UpstreamError saying what llama.cpp returned instead."""
        if isinstance(result, dict) and "error" in result:
            err = result["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            status = err.get("code") if isinstance(err, dict) and isinstance(err.get("code"), int) else None
            raise UpstreamError(f"llama.cpp refused the request: {message}", status=status)
        choices = result.get("choices") if isinstance(result, dict) else None
        if not isinstance(choices, list) or len(choices) != expected:
            raise UpstreamError(f"llama.cpp answered without {expected} choice(s): {str(result)[:300]}")
        return sorted(choices, key=lambda c: c.get("index", 0))

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
        logit_bias: dict[str, float] | None = None,
    ) -> list[str]:
        """Completions of `prompts`; `logit_bias` adds to the logits of the tokens that spell each string."""
        return [texts[0] for texts in self.sample(prompts, 1, max_new_tokens, temperature, top_p, stop, seed,
                                                  logit_bias)]

    def sample(
        self,
        prompts: list[str],
        n: int,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
        logit_bias: dict[str, float] | None = None,
    ) -> list[list[str]]:
        """`n` completions of each prompt, in one request: llama.cpp decodes a prompt's `n` draws side by side in
        as many slots, so `n` may not exceed `n_parallel`."""
        if not 1 <= n <= self.n_parallel:
            raise ValueError(f"n must be between 1 and n_parallel={self.n_parallel}, got {n}")
        if not prompts:
            return []
        body = sampling_fields(max_new_tokens, temperature, top_p, stop, seed) | {"prompt": list(prompts), "n": n}
        if logit_bias:
            body["logit_bias"] = [[text, bias] for text, bias in logit_bias.items()]
        choices = self._choices(self._server().handle_completions(body), n * len(prompts))
        texts = [truncate_at_stop(str(c.get("text", "")), stop) for c in choices]  # prompt i's draws: i*n … i*n+n-1
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    def next_token_probs(self, prompts: list[str], top: int = 20) -> list[dict[str, float]]:
        """The `top` most likely next tokens of each prompt with their probabilities: one decoding step, for a
        decision the model makes at its first token (e.g. whether to open a given line)."""
        if not prompts:
            return []
        body = {"prompt": list(prompts), "max_tokens": 1, "temperature": 0.0, "n_probs": top}
        out = []
        for choice in self._choices(self._server().handle_completions(body), len(prompts)):
            try:
                candidates = choice["logprobs"]["content"][0]["top_logprobs"]
                out.append({str(c["token"]): math.exp(float(c["logprob"])) for c in candidates})
            except (KeyError, IndexError, TypeError, ValueError) as err:
                raise UpstreamError(f"llama.cpp answered without token probabilities: {str(choice)[:300]}") from err
        return out

    def chat(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        server = self._server()
        body = sampling_fields(max_new_tokens, temperature, top_p, stop, seed)

        def one(messages: list[Message]) -> str:
            (choice,) = self._choices(server.handle_chat_completions(body | {"messages": messages}), 1)
            content = (choice.get("message") or {}).get("content")
            if not isinstance(content, str):
                raise UpstreamError(f"llama.cpp chat answer has no text content: {str(choice)[:300]}")
            return truncate_at_stop(content, stop)

        # One conversation per request (the chat endpoint takes one); the slots decode them concurrently.
        with ThreadPoolExecutor(max_workers=self.n_parallel) as pool:
            return list(pool.map(one, messages_batch))

    def chat_detailed(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 256,
        schema: dict[str, Any] | None = None,
        top_logprobs: int = 0,
    ) -> list[Completion]:
        """Greedy chat answers; with `schema`, llama.cpp turns the JSON schema into a grammar, so the answer can only
        be JSON of that shape (cut short only by `max_new_tokens`); with `top_logprobs`, each token's alternatives
        (the model's own, before the grammar chose)."""
        server = self._server()
        body: dict[str, Any] = sampling_fields(max_new_tokens, 0.0, 1.0, None, None)
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
        if top_logprobs:
            body |= {"logprobs": True, "top_logprobs": top_logprobs}

        def one(messages: list[Message]) -> Completion:
            (choice,) = self._choices(server.handle_chat_completions(body | {"messages": messages}), 1)
            content = (choice.get("message") or {}).get("content")
            if not isinstance(content, str):
                raise UpstreamError(f"llama.cpp chat answer has no text content: {str(choice)[:300]}")
            return Completion(content, token_choices(choice.get("logprobs")), schema is not None)

        with ThreadPoolExecutor(max_workers=self.n_parallel) as pool:
            return list(pool.map(one, messages_batch))
