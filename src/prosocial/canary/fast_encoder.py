"""Transformer encoders run by ONNX Runtime instead of PyTorch, for inference on CPUs.

Canary-mini's classifier, its danger head and the RoT/agreement embedder are small BERT encoders (MiniLM) that
read one to a few dozen short texts at a time. On such inputs PyTorch spends as long in Python around the
operators (transformers' mask building, module calls) as in the matrix products: on 2 cores, one 40-token
context took 24 ms in PyTorch and 15 ms in ONNX Runtime (one thread each; 8 ms against 15 ms for 14 tokens),
with the same outputs to about 1e-5. So inference runs the encoder as an ONNX graph; training keeps PyTorch.

`fast_encoder(model)` exports a loaded encoder once (about 4 s for MiniLM) to the cache folder
(`$PROSOCIAL_CACHE/onnx`, named by a hash of its weights and configuration, so a retrained model exports
again) and gives back a module with the encoder's call signature. Where ONNX Runtime or the exporter is not
installed, or the export fails, it logs why and gives back the PyTorch encoder: slower, same results.
`runtime="torch"` (or `PROSOCIAL_RUNTIME=torch`) keeps PyTorch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from prosocial.errors import ModelError

log = logging.getLogger(__name__)

RUNTIMES = ("onnx", "torch")
#: bump when the exported graph changes, so older cached files are not reused
EXPORT_VERSION = 1
_EXPORT_LOCK = threading.Lock()


def resolve_runtime(runtime: str | None) -> str:
    """`runtime`, else $PROSOCIAL_RUNTIME, else "onnx"; an unknown name is an error."""
    name = runtime or os.environ.get("PROSOCIAL_RUNTIME") or "onnx"
    if name not in RUNTIMES:
        raise ModelError(f"unknown runtime {name!r}; known: {list(RUNTIMES)}")
    return name


class OnnxEncoder(torch.nn.Module):
    """An ONNX Runtime session behind a transformers encoder's call: `encoder(input_ids=…, attention_mask=…)`
    gives an object whose `last_hidden_state` is a float32 torch tensor. `config` is the original one. A module
    (without parameters), so it can take the encoder's place inside a model."""

    def __init__(self, session: Any, config: Any, path: Path | None = None):
        super().__init__()
        self.session = session
        self.config = config
        self.path = path

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> SimpleNamespace:
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        (hidden,) = self.session.run(None, feed)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))

    def extra_repr(self) -> str:
        return str(self.path or "in memory")


def fast_encoder(model: Any, runtime: str | None = None, threads: int = 1, cache_dir: str | Path | None = None) -> Any:
    """`model` (a transformers encoder in eval mode) as an `OnnxEncoder`, or `model` itself when the runtime is
    "torch", the model is not float32, or ONNX Runtime cannot run it here (logged). `threads` is ONNX Runtime's
    intra-op thread count: 1 where the caller already runs batches on every core at once."""
    if resolve_runtime(runtime) == "torch":
        return model
    if any(t.dtype not in (torch.float32, torch.int64) for t in [*model.parameters(), *model.buffers()]):
        return model  # bfloat16 / int8 variants keep their own PyTorch kernels
    try:
        import onnxruntime
    except ImportError:
        log.warning("onnxruntime is not installed: encoders run in PyTorch (slower); pip install onnxruntime onnx")
        return model
    try:
        graph = _exported(model, cache_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the optimiser's notes are not the user's business
        source = str(graph) if isinstance(graph, Path) else graph
        session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # an exporter or runtime without support for this model: PyTorch still works
        log.warning("this encoder cannot run in ONNX Runtime (%s): it runs in PyTorch (slower)", exc)
        return model
    return OnnxEncoder(session, model.config, graph if isinstance(graph, Path) else None)


def weights_key(model: Any) -> str:
    """A hash of the model's class, configuration, weights and the exporter's versions (32 hex digits)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{EXPORT_VERSION}|{type(model).__name__}|{torch.__version__}|".encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def _exported(model: Any, cache_dir: str | Path | None) -> Path | bytes:
    """The cached ONNX file of `model`, exported first if missing (written atomically: concurrent processes
    either find a whole file or write their own); the graph itself where the cache cannot be written."""
    from prosocial.lm.hf import cache_root

    folder = cache_root(cache_dir) / "onnx"
    path = folder / f"{type(model).__name__.lower()}-{weights_key(model)}.onnx"
    if path.is_file():
        return path
    with _EXPORT_LOCK:
        if path.is_file():
            return path
        data = export_bytes(model)
        part: str | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as handle:
                part = handle.name
                handle.write(data)
            os.replace(part, path)
        except OSError as exc:
            if part is not None:
                Path(part).unlink(missing_ok=True)  # a read-only home: run from memory, export again next time
            log.warning("cannot cache the ONNX encoder in %s (%s); it will be exported again next time", folder, exc)
            return data
    log.info("exported the encoder to ONNX once: %s", path)
    return path


def export_bytes(model: Any) -> bytes:
    """The encoder as an ONNX graph (opset 17, any batch size and length), taking input_ids and attention_mask
    and giving the last hidden state."""
    class LastHidden(torch.nn.Module):
        def __init__(self, encoder: Any):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0  # a padded row, so the export traces the masked path
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "hidden": {0: "batch", 1: "tokens"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow it records as constants
        # the wrapper must be in eval mode too: the exporter restores its mode afterwards, recursively, and a new
        # module is in training mode (dropout on)
        torch.onnx.export(LastHidden(model).eval(), (ids, mask), buffer, input_names=["input_ids", "attention_mask"],
                          output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return buffer.getvalue()
