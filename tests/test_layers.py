"""The package's floors: every import points down (or sideways within a floor), never up.

    errors, io, model_folder, registry, scoring, resources → data → lm → canary, collect → prost → steer → eval,
    serve, jobs, testing → cli

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import prosocial

FLOORS = {
    **dict.fromkeys(["__init__", "errors", "io", "model_folder", "registry", "scoring", "heads", "resources"], 0),
    "data": 1,
    "lm": 2,
    **dict.fromkeys(["canary", "collect"], 3),
    "prost": 4,
    "steer": 5,
    **dict.fromkeys(["eval", "serve", "jobs", "testing"], 6),
    "cli": 7,
}


def _part(name: str) -> str:
    return name.removesuffix(".py")


def test_imports_only_point_down():
    root = Path(prosocial.__file__).parent
    upward, unknown = [], set()
    for file in sorted(root.rglob("*.py")):
        part = _part(file.relative_to(root).parts[0])
        if part not in FLOORS:
            unknown.add(part)
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "prosocial" and len(parts) > 1 and FLOORS.get(parts[1], -1) > FLOORS[part]:
                    upward.append(f"{file.relative_to(root)}:{node.lineno} imports {module}")
    assert not unknown, f"place these in FLOORS: {sorted(unknown)}"
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)
