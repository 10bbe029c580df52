"""Language-model backends behind one interface: local transformers, llama.cpp (xllamacpp), OpenAI-compatible HTTP."""

from prosocial.lm.base import LanguageModel, UpstreamError, available_lms, default_smollm2_gguf, load_lm, register_lm

__all__ = ["LanguageModel", "UpstreamError", "available_lms", "default_smollm2_gguf", "load_lm", "register_lm"]
