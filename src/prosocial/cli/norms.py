"""`prosocial norms test|calibrate` and `prosocial train norm-matcher`: a norms file checked like unit tests for a
policy (usable in a user's CI), its thresholds calibrated on casual chat, and the learned matcher trained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prosocial.cli.batch import backend_spec
from prosocial.cli.errors import fail
from prosocial.cli.logs import held_warnings
from prosocial.errors import DataError, ModelError

console = Console(stderr=True)
app = typer.Typer(help="Your own norms (rules-of-thumb) applied at run time; see the README's norms section.",
                  no_args_is_help=True)

NORMS_HELP = "Norms file (YAML or JSON Lines, see the README); repeatable."
NORMS_MATCHER_HELP = ("How norms are matched: a learned matcher folder (`prosocial train norm-matcher`); "
                      "default: the prototype matcher (the packaged MiniLM).")
MATCHER = typer.Option(None, "--matcher", help=NORMS_MATCHER_HELP)
CASUAL_FILE_HELP = 'Casual chat turns: JSON Lines of {"text": …} or one turn per line'


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _print_report(stats, results, top: int) -> None:
    """The per-norm table, then the near misses a policy author acts on, closest first."""
    out = Console(width=None if sys.stdout.isatty() else 160)
    casual = any(s.casual_turns for s in stats)
    table = Table(title="per norm")
    for column in ("norm", "level", "threshold", "checks", "decided", "precision", "recall",
                   *(["casual matched"] if casual else [])):
        table.add_column(column, overflow="fold", justify="left" if column in ("norm", "level") else "right")
    for s in stats:
        table.add_row(s.id, s.level, f"{s.threshold:.3f} ({s.threshold_from})", str(s.expected), str(s.decided),
                      _ratio(s.precision), _ratio(s.recall),
                      *([f"{s.casual_matched} of {s.casual_turns}"] if casual else []))
    out.print(table)
    misses = Table(title=f"near misses (the closest {top} per norm and kind)")
    for column in ("norm", "kind", "score / threshold", "situation", "why"):
        misses.add_column(column, overflow="fold")
    for s in stats:
        for kind, rows in (("missed", s.missed), ("false match", s.false_matches), ("casual", s.casual_examples)):
            for miss in rows[:top]:
                score = "–" if miss.score is None else f"{miss.score:.3f} / {miss.threshold:.3f}"
                misses.add_row(s.id, kind, score, escape(miss.text), escape(miss.why))
    if misses.row_count:
        out.print(misses)


@app.command()
def test(
    norms: list[Path] = typer.Argument(..., help="Norms files (YAML or JSON Lines)."),
    cases: list[Path] = typer.Option(
        [], "--cases", help='Test situations, JSON Lines of {"text": …, "norm": id or null}; repeatable.'
    ),
    leave_one_out: bool = typer.Option(
        False, "--leave-one-out", help="Match each example with itself taken out of its norm (does it generalise?)."
    ),
    backend: str = typer.Option("canary-mini", "--backend", "-b", help="Detector the norms apply on top of "
                                "(NAME[:key=value,...], as `check -b`)."),
    matcher: Path | None = MATCHER,
    casual: bool = typer.Option(False, "--casual", help="Also match the packaged casual chat turns (or "
                                "--casual-file) and report how many each norm catches."),
    casual_file: Path | None = typer.Option(None, "--casual-file", help=CASUAL_FILE_HELP + " (implies --casual)."),
    top: int = typer.Option(3, min=1, help="Near misses shown per norm and kind."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (checks, per-norm precision, "
                                 "recall and near misses) instead of tables."),
    show_passed: bool = typer.Option(False, "--show-passed", help="List passing checks too."),
) -> None:
    """Run each norm's examples (and the --cases) through the detector: every example must be decided by its
    norm, every case by the norm it names or by none. Reports precision and recall per norm with the near misses:
    its own checks it missed (score and threshold, and why) and the checks it took from others. Exits 1 when any
    check fails."""
    from prosocial.canary import load_detector
    from prosocial.canary.norms import NormedDetector, norm_report, read_cases, read_casual, run_norm_tests

    name, settings = backend_spec(backend, "--backend")
    try:
        with held_warnings(console):  # no "Loading weights" bars between the command and its table
            detector = NormedDetector(load_detector(name, **settings), norms, matcher=matcher)
            results = run_norm_tests(detector, [c for path in cases for c in read_cases(path)], leave_one_out)
            turns = read_casual(casual_file) if casual or casual_file else None
            stats = norm_report(detector.bank, results, turns)
    except (DataError, ModelError, OSError) as exc:
        fail(console, exc)
    failed = [r for r in results if not r.passed]
    if as_json:
        checks = [{"kind": r.kind, "text": r.case.text, "origin": r.case.origin, "expected": r.case.norm,
                   "got": r.got, "verdict": r.verdict, "passed": r.passed, "score": r.score,
                   "threshold": r.threshold, "vetoed_by": r.vetoed_by, "matched": r.matched,
                   "matched_score": r.matched_score, "why": r.why}
                  for r in results if show_passed or not r.passed]
        report = {"matcher": detector.bank.matcher.id, "checks": len(results), "failed": len(failed),
                  "results": checks, "norms": [s.to_dict(top) for s in stats]}
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        shown = [r for r in results if show_passed or not r.passed]
        if shown:
            table = Table(show_lines=False)
            for column in ("", "check", "situation", "expected", "got", "why"):
                table.add_column(column, overflow="fold")
            for r in shown:
                table.add_row("[green]ok[/green]" if r.passed else "[red]FAIL[/red]", r.kind, escape(r.case.text),
                              r.case.norm or "no norm", f"{r.got or 'no norm'} ({r.verdict})", escape(r.why))
            Console().print(table)
        _print_report(stats, results, top)
    console.print(f"{len(results) - len(failed)} of {len(results)} checks passed", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def calibrate(
    norms: Path = typer.Argument(..., help="The norms file to calibrate (YAML or JSON Lines)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the calibrated norms (YAML or JSON Lines by "
                             "suffix; it may be NORMS itself, whose YAML comments are then lost)."),
    max_false_match: float = typer.Option(0.01, min=0.0, max=0.5, help="The share of casual turns each norm may "
                                          "match."),
    floor: float | None = typer.Option(None, min=-1.0, max=1.0, help="Lowest threshold calibration may set "
                                       "(default: 0.06 under the matcher's default)."),
    ceiling: float | None = typer.Option(None, min=-1.0, max=1.0, help="Highest threshold calibration may set "
                                         "(default: 0.24 over the matcher's default)."),
    casual_file: Path | None = typer.Option(None, "--casual-file", help=CASUAL_FILE_HELP + "; default: the "
                                            "packaged casual turns (BYU Chit-Chat). A platform's own chat is best."),
    matcher: Path | None = MATCHER,
    as_json: bool = typer.Option(False, "--json", help="Print the calibration report as JSON."),
) -> None:
    """Set each norm's threshold so that it matches at most --max-false-match of casual chat turns (within the
    floor and ceiling), for the matcher in use; writes the norms with their `calibrated_similarity`. A norm's own
    `min_similarity` still wins. Each norm is held to the rate on its own: the report says how many turns the
    whole file matches."""
    from dataclasses import asdict

    from prosocial.canary.norms import (
        CalibrationSettings,
        NormBank,
        calibrate,
        load_norms,
        read_casual,
        write_calibrated,
    )

    try:
        with held_warnings(console):
            bank = NormBank(load_norms([norms]), matcher=matcher)
            report = calibrate(bank, read_casual(casual_file), CalibrationSettings(max_false_match, floor, ceiling))
            write_calibrated(norms, out, report)
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    if as_json:
        sys.stdout.write(json.dumps(asdict(report), ensure_ascii=False) + "\n")
    else:
        table = Table(title=f"thresholds for matcher {report.matcher} on {report.turns} casual turns "
                      f"(at most {report.max_false_match:.1%} each, within {report.floor:.2f}-{report.ceiling:.2f})")
        for column in ("norm", "calibrated", "used", "casual matched"):
            table.add_column(column, justify="left" if column == "norm" else "right")
        for n in report.norms:
            bound = f" ({n.bound})" if n.bound else ""
            used = f"{n.threshold:.3f}" + (" (file)" if n.source == "file" else "")
            table.add_row(n.id, f"{n.calibrated:.3f}{bound}", used, f"{n.casual_false_match:.2%}")
        Console().print(table)
    console.print(f"{len(report.norms)} norms written to {out}; together they match "
                  f"{report.any_norm_false_match:.2%} of the casual turns", highlight=False, soft_wrap=True)


def train_norm_matcher(
    out: Path = typer.Option(..., "--out", "-o", help="The matcher folder to write (replaced when it is one)."),
    data: Path | None = typer.Option(
        None, help="Shared data folder (default: $PROSOCIAL_SHARED_DATA or ../shared/data)."
    ),
    corpus: Path | None = typer.Option(None, help="Danger corpus (default: the shipped one; train rows only)."),
    epochs: float = typer.Option(1.0, min=0.01, help="Passes over the training pairs."),
    max_steps: int | None = typer.Option(None, min=1, help="Updates (wins over --epochs)."),
    batch_size: int = typer.Option(32, min=2, help="Pairs per update (each one's rule is the others' negative)."),
    lr: float = typer.Option(2e-5, min=0.0, help="AdamW learning rate."),
    hard_negatives: bool = typer.Option(True, help="Mine a near rule that does not apply, per pair."),
    device: str = typer.Option("auto", help="auto (CUDA when available), cuda or cpu."),
    threads: int = typer.Option(2, min=1, help="CPU threads for torch."),
    seed: int = typer.Option(0),
) -> None:
    """Fine-tune MiniLM as a situation–rule bi-encoder for norms (SBIC, ProsocialDialog, DialogStudio and
    danger-corpus train pairs; in-batch and hard negatives) and save a matcher folder for `--matcher`. Dev
    rows of SBIC and the danger corpus's dev and held-out rows are never read."""
    from prosocial.canary.danger_train import CORPUS
    from prosocial.canary.norm_matcher_train import MatcherTrainSettings
    from prosocial.canary.norm_matcher_train import train_norm_matcher as train
    from prosocial.cli.errors import shared_data_root

    if device not in ("auto", "cuda", "cpu"):
        raise typer.BadParameter(f"--device takes auto, cuda or cpu, got {device!r}")
    root = shared_data_root(console, data, needs=("sbic",))
    settings = MatcherTrainSettings(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                                    hard_negatives=hard_negatives, device=device, threads=threads, seed=seed)
    try:
        report = train(out, root=root, corpus=corpus or CORPUS, settings=settings)
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    Console().print_json(data={k: v for k, v in report.items() if k != "settings"})
    console.print(f"norm matcher written to {out}", highlight=False, soft_wrap=True)
