"""`prosocial eval …`: the paper's evaluation protocols as commands that write traceable reports."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from prosocial.cli.errors import fail, shared_data_root
from prosocial.errors import DataError, ModelError
from prosocial.eval.report_files import (
    describe_sample,
    provenance,
    seed_everything,
    seeded_sample,
    slug,
    write_report,
)

app = typer.Typer(help="Evaluation reports (paper Tables 2–5, the safety suite).", no_args_is_help=True)
console = Console(stderr=True)

DEFAULT_DETECTORS = ["canary-mini", "keywords", "profanity-check"]


@app.command("safety-suite")
def safety_suite(
    detectors: list[str] = typer.Option(DEFAULT_DETECTORS, "--detector", "-d",
                                        help="[LABEL=]DETECTOR[:key=value,...], e.g. "
                                        "'mine=canary-mini:model_dir=runs/cm'; repeatable."),
    per_source: int = typer.Option(1000, help="Dev examples per source (seeded sample); 0 = all."),
    seed: int = typer.Option(0, help="Seed of the per-source sample."),
    data: Path | None = typer.Option(None, help="The shared data folder (default: $PROSOCIAL_SHARED_DATA or "
                                     "../shared/data)."),
    out: Path = typer.Option(Path("runs/reports/safety-suite"), help="Writes OUT.md and OUT.json."),
) -> None:
    """Every detector on every external benchmark's dev split, side by side (Markdown and JSON)."""
    from prosocial.canary import load_detector
    from prosocial.eval.safety_suite import CASUAL, LABELLED, evaluate_detector, load_suite, markdown_table

    root = shared_data_root(console, data, LABELLED + CASUAL)
    try:
        suite = load_suite(root, per_source or None, seed)
    except (DataError, OSError) as exc:
        fail(console, exc)
    results = _evaluate_each(detectors, lambda name, spec: evaluate_detector(load_detector(name, **spec), suite))
    meta = provenance(detectors=detectors, per_source=per_source, seed=seed, data=suite.description, split="dev")
    table = markdown_table(results)
    write_report(out, "Safety suite (dev splits)", [
        table, "BA = balanced accuracy of casual vs. not casual over the classes a source has."], meta, results)
    typer.echo(table)


@app.command("behaviour")
def behaviour(
    detectors: list[str] = typer.Option(["canary-mini"], "--detector", "-d",
                                        help="[LABEL=]DETECTOR[:key=value,...]; repeatable."),
    per_check: int = typer.Option(300, help="Dev cases sampled per check (seeded)."),
    seed: int = typer.Option(0, help="Seed of the case sample."),
    data: Path | None = typer.Option(None, help="The shared data folder (default: $PROSOCIAL_SHARED_DATA or "
                                     "../shared/data)."),
    out: Path = typer.Option(Path("runs/reports/behaviour"), help="Writes OUT.md and OUT.json."),
) -> None:
    """CheckList-style behaviour of detectors: small talk before, fillers after, short turns, minimal pairs."""
    from prosocial.canary import load_detector
    from prosocial.eval.behaviour import CASUAL, FLAGGED_SOURCES, build_checks, markdown_table, run_checks

    root = shared_data_root(console, data, CASUAL + FLAGGED_SOURCES)  # before any detector loads

    def evaluate(name: str, settings: dict) -> dict:
        detector = load_detector(name, **settings)
        return run_checks(detector, build_checks(detector, root, per_check, seed))

    try:
        results = _evaluate_each(detectors, evaluate)
    except (DataError, OSError) as exc:
        fail(console, exc)
    meta = provenance(detectors=detectors, per_check=per_check, seed=seed, split="dev")
    table = markdown_table(results)
    write_report(out, "Behavioural suite (dev splits and written cases)", [table], meta, results)
    typer.echo(table)


# --- Tables 2 and 3 -----------------------------------------------------------------------------------------

DataOption = typer.Option(..., help="A ProsocialDialog file or folder (either format), or BENCHMARK:SPLIT "
                                    "(e.g. toxichat:dev, diasafety:dev) of the shared data.")
RootOption = typer.Option(None, help="The shared data folder for BENCHMARK:SPLIT (default: $PROSOCIAL_SHARED_DATA "
                                     "or ../shared/data).")


def _evaluate_each(specs: list[str], evaluate: Callable[[str, dict], Any], where: str = "") -> dict[str, Any]:
    """`evaluate(backend or model folder, settings)` for every model spec, keyed by its label, in order; a model that
    cannot be loaded is skipped with the reason, and none left is an error (exit 1). A malformed spec is a usage error.
    """
    from prosocial.eval.reports import parse_spec

    results = {}
    for spec in specs:
        try:
            label, name, settings = parse_spec(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        console.print(escape(f"evaluating {label}{where} …"), soft_wrap=True)
        try:
            results[label] = evaluate(name, settings)
        except ModelError as exc:
            console.print(f"[yellow]skipping {escape(spec)}:[/yellow] {escape(str(exc))}", soft_wrap=True)
    if not results:
        raise typer.Exit(1)
    return results


@app.command("canary")
def canary(
    data: str = DataOption,
    models: list[str] = typer.Option(["canary-mini"], "--model", "-m", help="[LABEL=]DETECTOR[:key=value,...] or "
                                     "a Canary model folder; repeat to compare side by side."),
    limit: int = typer.Option(0, help="Evaluate a seeded sample of this many examples (0 = all)."),
    seed: int = typer.Option(0, help="Seed of the sample and of the models."),
    root: Path | None = RootOption,
    out: Path = typer.Option(Path("runs/reports/canary"), help="Writes OUT.md, OUT.json and OUT-<model>.png."),
) -> None:
    """Table 2: safety accuracy (5-way, 3-way), per-class P/R/F1, confusion matrices, RoT BLEU-4 / F1 / PPL."""
    from prosocial.canary import load_detector
    from prosocial.eval.reports import canary_report, canary_sections, canary_table, load_examples

    seed_everything(seed)
    examples, described = load_examples(data, root, limit or None, seed)
    results = _evaluate_each(models, lambda name, settings: canary_report(load_detector(name, **settings), examples),
                             f" on {described}")
    sections, figures = canary_sections(results, out, described)
    table = canary_table(results)
    meta = provenance(command="eval canary", data=described, models=models, seed=seed, limit=limit, figures=figures)
    write_report(out, "Safety classification and RoT generation (paper Table 2)",
                 [table, "Accuracy and F1 ×100; RoT BLEU-4 and F1 ×100 on examples with gold RoTs; RoT PPL is the "
                  "perplexity of the gold RoTs after the gold label (language-model detectors only).", *sections],
                 meta, results)
    typer.echo(table)


@app.command("prost")
def prost(
    data: str = DataOption,
    models: list[str] = typer.Option(["prost-mini"], "--model", "-m", help="[LABEL=]GENERATOR[:key=value,...] or a "
                                     "Prost model folder; repeat to compare side by side."),
    limit: int = typer.Option(0, help="Evaluate a seeded sample of this many examples (0 = all)."),
    seed: int = typer.Option(0, help="Seed of the sample and of the models."),
    root: Path | None = RootOption,
    out: Path = typer.Option(Path("runs/reports/prost"), help="Writes OUT.md and OUT.json."),
) -> None:
    """Table 3: BLEU-4, F1 and perplexity of replies; again with the gold RoTs given when the data has them."""
    from prosocial.eval.reports import load_examples, prost_report, prost_table

    seed_everything(seed)
    examples, described = load_examples(data, root, limit or None, seed)
    results = _evaluate_each(models, lambda name, settings: prost_report(_generator(name, settings), examples),
                             f" on {described}")
    table = prost_table(results)
    meta = provenance(command="eval prost", data=described, models=models, seed=seed, limit=limit)
    write_report(out, "Response generation (paper Table 3)",
                 [table, "BLEU-4 and F1 ×100 against the gold reply. Perplexity of the gold reply needs token "
                  "probabilities, so only fine-tuned Prost models have it."], meta, results)
    typer.echo(table)


def _generator(name: str, settings: dict):
    """A generator by registry name, with the optional backends registered first."""
    import prosocial.steer  # noqa: F401  (registers "steered")
    from prosocial.prost import load_generator

    return load_generator(name, **settings)


# --- Table 5 ------------------------------------------------------------------------------------------------

DEFAULT_SYSTEMS = [
    "Prosocial agent (canary-mini + prost-mini)=agent",
    "SmolLM2-135M, P0=steered:lm=llamacpp",
    "SmolLM2-135M + canary-mini RoTs, Pr=steered:lm=llamacpp,rots=canary-mini",
    "Canned evasive reply=canned",
]


@app.command("toxichat")
def toxichat(
    systems: list[str] = typer.Option(DEFAULT_SYSTEMS, "--system", "-s", help="LABEL=GENERATOR[:key=value,...]; "
                                      "`agent` is the ProsocialAgent, `rots=DETECTOR` grounds replies in its RoTs."),
    split: str = typer.Option("dev", help="ToxiChat split: dev or train."),
    limit: int = typer.Option(0, help="A seeded sample of this many threads (0 = all)."),
    seed: int = typer.Option(0, help="Seed of the sample and of the systems."),
    evaluators: Path | None = typer.Option(None, help="Stance/offense evaluator folder (default: the shipped one)."),
    badwords: Path | None = typer.Option(None, help="Bad-word list CSV (default: Zhou et al.'s, shipped)."),
    root: Path | None = RootOption,
    batch_size: int = typer.Option(16, help="Threads per generation batch."),
    replies_dir: Path | None = typer.Option(None, help="Also write each system's replies as JSONL (the input of "
                                            "`eval human build`)."),
    out: Path = typer.Option(Path("runs/reports/toxichat"), help="Writes OUT.md and OUT.json."),
) -> None:
    """Table 5: stance (disagree / agree), offense and bad-word rates of replies to ToxiChat threads."""
    from prosocial.data.toxichat import read_threads
    from prosocial.eval import toxichat as tc
    from prosocial.eval.reports import toxichat_sections
    from prosocial.eval.systems import build_system
    from prosocial.eval.toxichat_evaluators import EVALUATORS_DIR, Evaluators
    from prosocial.io import write_jsonl

    seed_everything(seed)
    path = shared_data_root(console, root, ("toxichat",)) / "toxichat" / f"{split}.jsonl"
    try:
        every = read_threads(path)
    except (DataError, OSError) as exc:
        fail(console, exc)
    total, threads = len(every), seeded_sample(every, limit, seed)
    scorer = Evaluators.load(evaluators)
    has_badword = tc.badword_matcher(tc.load_badwords(badwords))
    built = _evaluate_each(systems, build_system)
    started = time.perf_counter()
    results = tc.evaluate_toxichat(built, threads, scorer, has_badword, batch_size,
                                   progress=lambda s, i, n: console.print(f"{s}: {i}/{n}", highlight=False))
    seconds = time.perf_counter() - started
    if replies_dir:
        for label, result in results.items():
            write_jsonl(replies_dir / f"{slug(label)}.jsonl", tc.reply_rows(threads, result))
    reference = tc.reference_rows(threads, scorer, has_badword)
    sections = toxichat_sections(results, reference, scorer.config.get("dev"))
    meta = provenance(command="eval toxichat", data=describe_sample(str(path), len(threads), total, seed, "threads"),
                      systems=systems, seed=seed, evaluators=str(evaluators or EVALUATORS_DIR),
                      badwords=str(badwords or tc.BADWORDS_FILE), seconds=round(seconds, 1))
    write_report(out, "ToxiChat zero-shot (paper Table 5)", sections, meta,
                 {"systems": results, "reference": reference})
    typer.echo(sections[0])


@app.command("toxichat-train")
def toxichat_train(
    hidden: int = typer.Option(0, help="Hidden units of the heads (0 = logistic regression)."),
    balance: float = typer.Option(0.0, help="Class weights ∝ count^-BALANCE (0 = the data's priors, 1 = balanced)."),
    seed: int = typer.Option(0),
    root: Path | None = RootOption,
    out: Path = typer.Option(Path("src/prosocial/resources/toxichat-evaluators"), help="Evaluator folder to write."),
) -> None:
    """Rebuild the ToxiChat stance and offense evaluators from ToxiChat's training threads."""
    from prosocial.data.toxichat import read_threads
    from prosocial.eval.reports import evaluator_table
    from prosocial.eval.toxichat_evaluators import train_evaluators

    folder = shared_data_root(console, root, ("toxichat",)) / "toxichat"
    try:
        train, dev = read_threads(folder / "train.jsonl"), read_threads(folder / "dev.jsonl")
    except (DataError, OSError) as exc:
        fail(console, exc)
    evaluators = train_evaluators(train, dev, hidden=hidden, balance=balance, seed=seed)
    evaluators.config["provenance"] = provenance(command="eval toxichat-train", hidden=hidden, balance=balance,
                                                 seed=seed)
    evaluators.save(out)
    typer.echo(evaluator_table(evaluators.config["dev"]))


# --- Table 4 ------------------------------------------------------------------------------------------------

human = typer.Typer(help="Head-to-head human evaluation (paper Table 4).", no_args_is_help=True)
app.add_typer(human, name="human")


@human.command("build")
def human_build(
    a: str = typer.Option(..., help="LABEL=outputs.jsonl of system A (rows: id, context, response)."),
    b: str = typer.Option(..., help="LABEL=outputs.jsonl of system B."),
    db: Path = typer.Option(Path("runs/human-eval.sqlite"), help="The new study file."),
    raters_per_item: int = typer.Option(3, help="Raters wanted per item."),
    limit: int = typer.Option(0, help="Items to rate (seeded sample; 0 = all shared ids)."),
    seed: int = typer.Option(0, help="Seed of the order, the sample and the left/right sides."),
) -> None:
    """Blind pairwise tasks from two systems' outputs on the same contexts."""
    from prosocial.eval.human_eval.store import Store
    from prosocial.eval.human_eval.tasks import build_tasks, read_outputs

    (label_a, path_a), (label_b, path_b) = (s.partition("=")[::2] if "=" in s else (Path(s).stem, s) for s in (a, b))
    tasks = build_tasks(read_outputs(path_a), read_outputs(path_b), seed, limit or None)
    Store(db).create(tasks, label_a, label_b, raters_per_item, seed)
    typer.echo(f"{len(tasks)} tasks ({label_a} vs {label_b}), {raters_per_item} raters each → {db}")


@human.command("serve")
def human_serve(
    db: Path = typer.Option(Path("runs/human-eval.sqlite"), help="The study file."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8765),
) -> None:
    """The rater web page (one task per page, keyboard shortcuts)."""
    import uvicorn

    from prosocial.eval.human_eval.app import create_app

    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


@human.command("aggregate")
def human_aggregate(
    db: Path = typer.Option(Path("runs/human-eval.sqlite"), help="The study file."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples (over items) for the 95% intervals."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    note: str = typer.Option("", help="A paragraph for the report, e.g. who the raters were."),
    out: Path = typer.Option(Path("runs/reports/human-eval"), help="Writes OUT.md and OUT.json."),
) -> None:
    """Table 4: win / tie / lose per dimension with bootstrap CIs and Krippendorff's alpha."""
    from prosocial.eval.human_eval.aggregate import aggregate, table
    from prosocial.eval.human_eval.store import Store

    store = Store(db)
    study = store.study()
    result = aggregate(store.judgments(), bootstrap, seed)
    rendered = table(result, study["system_a"], study["system_b"])
    done, total = store.progress()
    meta = provenance(command="eval human aggregate", db=str(db), study=study, bootstrap=bootstrap, seed=seed,
                      judged=f"{done} of {total} task-rater pairs", note=note)
    write_report(out, f"Head-to-head human evaluation: {study['system_a']} vs {study['system_b']} (paper Table 4)",
                 [rendered, "Percent of judgments; 95% bootstrap intervals over items in brackets.",
                  *([note] if note else [])], meta, result)
    typer.echo(rendered)


@human.command("export")
def human_export(
    db: Path = typer.Option(Path("runs/human-eval.sqlite"), help="The study file."),
    out: Path = typer.Option(Path("runs/human-eval.csv"), help="CSV of every judgment, de-blinded."),
) -> None:
    """Every judgment as CSV (rater, item, dimension, screen choice, winning system)."""
    from prosocial.eval.human_eval.aggregate import export_csv
    from prosocial.eval.human_eval.store import Store

    typer.echo(f"{export_csv(Store(db), out)} judgments → {out}")
