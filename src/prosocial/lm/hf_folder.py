"""A backend over a fine-tuned Hugging Face model folder: what the paper's Canary and Prost share.

The folder holds the weights and tokenizer (``save_pretrained``), ``prosocial.json`` naming the backend
(`prosocial.model_folder`) and the backend's own settings file (`settings_file`, e.g. ``canary.json``).
Weights load on first use, so building a backend is cheap; settings the constructor leaves open (None) are taken
from the folder's settings file.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

from prosocial.model_folder import read_model_config, resolve_model_dir


class HFModelFolder:
    """Loading, saving and wrapping of a fine-tuned seq2seq or causal LM; subclasses add their settings file.

    `device`: auto (CUDA when available), cuda or cpu; `batch_size` contexts per forward pass; `max_source_len`
    source tokens kept (the newest); `max_new_tokens` and `num_beams` for generation; `max_turns` keeps only the
    last N utterances of each context (None: what the folder was trained with).
    """

    #: the settings file beside the weights, and the keys it may hold
    settings_file: ClassVar[str]
    settings_keys: ClassVar[frozenset[str]]

    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        batch_size: int = 16,
        max_source_len: int = 512,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        max_turns: int | None = None,
    ):
        self.model_dir = Path(model)
        self.device = device
        self.batch_size = batch_size
        self.max_source_len = max_source_len
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.max_turns = max_turns
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **settings: Any) -> Self:
        """Wrap an already loaded model (e.g. straight after training) without a round trip through disk."""
        backend = cls(settings.pop("model_dir", "<in memory>"), **settings)
        backend._attach(model, tokenizer)
        return backend

    @classmethod
    def load(cls, path: str | Path, **settings: Any) -> Self:
        """Load the weights now rather than on first use."""
        backend = cls(path, **settings)
        backend._ensure()
        return backend

    def save(self, path: str | Path) -> Path:
        """Model, tokenizer, ``prosocial.json`` and the settings file in one folder."""
        model, tokenizer = self._ensure()
        path = Path(path)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        self._write_settings(path)
        return path

    @abstractmethod
    def _write_settings(self, path: Path) -> None:
        """Write ``prosocial.json`` and the settings file for the folder `path`."""

    def _configure(self, saved: dict[str, Any]) -> None:
        """Take what the folder saved for the settings left open."""
        if self.max_turns is None:
            self.max_turns = saved.get("max_turns")

    def _attach(self, model: Any, tokenizer: Any) -> None:
        """Hold the loaded model; subclasses check it is one of theirs first."""
        self._model, self._tokenizer = model, tokenizer

    def _ensure(self) -> tuple[Any, Any]:
        if self._model is None:
            path = resolve_model_dir(self.model_dir, ["config.json"])
            self._configure(read_model_config(path / self.settings_file, self.settings_keys))
            from prosocial.lm.inference import load_model, resolve_device

            self._attach(*load_model(path, resolve_device(self.device)))
        return self._model, self._tokenizer
