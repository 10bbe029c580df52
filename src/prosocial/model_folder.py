"""Saved model folders: which backend reads one, and the small JSON settings files beside the weights.

Every folder a backend saves holds ``prosocial.json``, ``{"backend": NAME}``: the registry name of the detector or
generator that loads it (as sentence-transformers' ``modules.json`` and ParlAI's ``.opt`` name the class to build),
so ``load_detector(path)`` / ``load_generator(path)`` need no backend and no caller guesses one from the path.
The backend's own settings stay in its own file (``canary.json``, ``prost.json``, Canary-mini's ``config.json``),
next to the weights they belong to. An unknown key in any of them is an error (a typo, or a newer release's file),
never silently dropped. Folders saved before ``prosocial.json`` existed are known by the file their backend
always wrote (each registry's ``legacy`` list).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from prosocial.errors import ModelError
from prosocial.io import atomic_write

FOLDER_FILE = "prosocial.json"


def resolve_model_dir(path: str | Path, required: Sequence[str]) -> Path:
    """Check a model directory before loading it, so a wrong path fails with a message that names it."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model directory not found: {path}")
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise ModelError(f"model directory {path} is missing {missing}")
    return path


def write_model_config(file: Path, settings: dict[str, Any]) -> None:
    """Write a model folder's small JSON settings file (e.g. ``canary.json``, ``prost.json``) atomically."""
    with atomic_write(file) as handle:
        json.dump(settings, handle, indent=2)


def read_model_config(file: Path, known: Collection[str]) -> dict[str, Any]:
    """A settings file as written by `write_model_config`: {} when absent; unreadable, not an object, or holding a
    key outside `known` is an error naming the file."""
    if not file.is_file():
        return {}
    try:
        settings = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"unreadable {file}: {error}") from error
    if not isinstance(settings, dict):
        raise ModelError(f"{file}: expected a JSON object")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ModelError(f"{file}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return settings


def write_backend(path: str | Path, backend: str) -> None:
    """Name the backend that loads the model folder `path` (its ``prosocial.json``)."""
    write_model_config(Path(path) / FOLDER_FILE, {"backend": backend})


def folder_backend(path: str | Path, legacy: Sequence[tuple[str, str]] = ()) -> str:
    """The backend a model folder names; a folder without ``prosocial.json`` is the backend of the first
    (file, backend) of `legacy` whose file it holds."""
    path = resolve_model_dir(path, [])
    file = path / FOLDER_FILE
    if file.is_file():
        backend = read_model_config(file, {"backend"}).get("backend")
        if not isinstance(backend, str) or not backend:
            raise ModelError(f'{file}: expected {{"backend": NAME}}, the registry name of the backend that loads it')
        return backend
    for name, backend in legacy:
        if (path / name).exists():
            return backend
    raise ModelError(f"{path} is not a saved model folder: it has no {FOLDER_FILE}"
                     + (f" (nor any of {[name for name, _ in legacy]})" if legacy else ""))
