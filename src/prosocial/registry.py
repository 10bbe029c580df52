"""One registry for every kind of backend (detectors, generators, language models, metrics).

A backend registers under a name with a class decorator; built-in backends are named with the module that
registers them and imported on first use, so importing a package stays light (no torch until a model is asked
for). Every registry refuses a name taken by another class and raises the same `ModelError` for an unknown one.
`load` also takes a saved model folder, whose ``prosocial.json`` names its backend (`prosocial.model_folder`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from prosocial.errors import ModelError
from prosocial.model_folder import folder_backend

T = TypeVar("T")


class Registry(Generic[T]):
    """Backends of one `kind` by name; `builtin` maps built-in names to the module that registers them."""

    def __init__(self, kind: str, builtin: Mapping[str, str] | None = None):
        self.kind = kind
        self.builtin = dict(builtin or {})
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: make the class available as `name` (and set its `name` attribute)."""

        def add(cls: type[T]) -> type[T]:
            known = self._classes.get(name)
            if known is not None and _path(known) != _path(cls):  # the same class again (a reload) is fine
                raise ModelError(f"{self.kind} backend {name!r} is already registered by {_path(known)}")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return add

    def available(self) -> list[str]:
        """Every name `create` accepts: the built-ins and whatever registered since."""
        return sorted(set(self._classes) | set(self.builtin))

    def get(self, name: str) -> type[T]:
        if name not in self._classes and name in self.builtin:
            importlib.import_module(self.builtin[name])
        if name not in self._classes:
            raise ModelError(f"unknown {self.kind} backend {name!r}; known: {', '.join(self.available())}")
        return self._classes[name]

    def create(self, name: str, **settings: Any) -> T:
        """A new backend instance (cheap: backends load weights on first use)."""
        return self._construct(name, self.get(name), (), settings)

    def _construct(self, name: str, cls: type[T], args: tuple, settings: dict[str, Any]) -> T:
        """`cls(*args, **settings)`, with a setting the backend does not take refused by name, not as a TypeError
        from deep inside (a CLI spec such as "canary-mini:modle_dir=X" gets a clear error)."""
        signature = inspect.signature(cls)
        try:
            signature.bind(*args, **settings)
        except TypeError as exc:
            variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            takes = [p.name for p in signature.parameters.values() if p.kind not in variadic]
            raise ModelError(f"{self.kind} backend {name!r}: {exc}; its settings: {', '.join(takes) or 'none'}") \
                from None
        return cls(*args, **settings)

    def load(self, name: str | Path, legacy: Sequence[tuple[str, str]] = (), **settings: Any) -> T:
        """`create` for a registry name; for a model folder (a `Path`, or a string that is no registered name but a
        folder or a path with "/"), the backend its ``prosocial.json`` names (or `legacy` recognises), given the
        folder as its first argument, as every folder backend takes it."""
        if isinstance(name, str) and (name in self or ("/" not in name and not Path(name).is_dir())):
            return self.create(name, **settings)
        backend = folder_backend(name, legacy)
        if backend not in self:
            raise ModelError(f"{name} holds a {backend!r} model, not a {self.kind}; {self.kind} backends: "
                             f"{', '.join(self.available())}")
        return self._construct(backend, self.get(backend), (Path(name),), settings)

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self.builtin


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
