"""`prosocial check`: safety label, scores and RoTs for one context or a JSON Lines batch."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prosocial.canary import load_detector
from prosocial.canary.base import Verdict
from prosocial.canary.language import POLICY_HELP, check_policy
from prosocial.cli.batch import (
    ACTORS,
    ADDRESS,
    CORPUS_HELP,
    ENGINE,
    GPUS,
    INPUT_HELP,
    OUTPUT_FORMAT,
    OUTPUT_HELP,
    JobOptions,
    backend_spec,
    check_input_output,
    run_input,
)
from prosocial.cli.errors import fail, shared_data_root
from prosocial.cli.logs import held_warnings
from prosocial.cli.norms import NORMS_HELP, NORMS_MATCHER_HELP
from prosocial.data.labels import SafetyLabel
from prosocial.errors import DataError, ModelError
from prosocial.jobs.corpus import check_rows

console = Console(stderr=True)
LABEL_STYLE = {"casual": "green", "needs caution": "yellow", "needs intervention": "bold red"}


def check(
    text: str | None = typer.Argument(None, help="The user's latest utterance."),
    context: list[str] = typer.Option([], "--context", "-c", help="An earlier utterance, oldest first; repeatable."),
    input: str | None = typer.Option(None, "--input", "-i", help=INPUT_HELP + CORPUS_HELP),
    output: str | None = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    no_rots: bool = typer.Option(False, "--no-rots", help="Labels and scores only (faster)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad input lines and report the count."),
    backend: str = typer.Option("canary-mini", "--backend", "-b", help="Detector backend from the registry, with "
                                "settings as in `eval`: NAME[:key=value,...], e.g. 'canary-mini:rots_per_context=3'."),
    norms: list[Path] = typer.Option([], "--norms", help=NORMS_HELP),
    norms_matcher: Path | None = typer.Option(None, "--norms-matcher", help=NORMS_MATCHER_HELP),
    unsupported_language: str = typer.Option("flag", "--unsupported-language", help=POLICY_HELP),
    model_dir: Path | None = typer.Option(None, "--model", "-m", help="Model directory (default: the packaged one)."),
    batch_size: int = typer.Option(64, min=1, help="Contexts per batch."),
    engine: str = ENGINE,
    address: str | None = ADDRESS,
    actors: int | None = ACTORS,
    gpus_per_actor: float = GPUS,
    output_format: str = OUTPUT_FORMAT,
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
    reply: str | None = typer.Option(None, "--reply", "-r", help="A reply to TEXT to judge too, as the guard proxy "
                                     "judges an LLM's answer: its label, whether it sides with a flagged turn, and "
                                     "what the proxy would do (pass / replace / refuse)."),
) -> None:
    """Judge dialogue safety: the five-level label, a score per label, and rules-of-thumb."""
    if reply is not None and input is not None:
        fail(console, ValueError("--reply judges one TEXT's reply; it does not go with --input"))
    check_input_output(text, input, output, "one TEXT", "check")
    try:
        check_policy(unsupported_language)  # before any model loads: `judge` has no judge yet
    except ValueError as exc:
        fail(console, ValueError(str(exc).replace("unsupported_language:", "--unsupported-language:")))
    backend, settings = backend_spec(backend, "--backend")
    settings |= {"model_dir": model_dir} if model_dir else {}
    settings |= {"norms_matcher": norms_matcher} if norms_matcher else {}
    try:
        if input is not None:
            job = JobOptions(engine, address, actors, gpus_per_actor, batch_size, output_format, skip_invalid, "check",
                             "verdicts")
            rows = partial(check_rows, backend, not no_rots, norms, unsupported_language=unsupported_language,
                           **settings)
            run_input(input, output, rows, job, console)
            return
        with held_warnings(console):
            detector = load_detector(backend, norms=norms, unsupported_language=unsupported_language, **settings)
            verdict = detector.check([*context, text], with_rots=not no_rots)
            judged = _judge_reply(detector, [*context, text], verdict, reply) if reply is not None else None
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    if as_json:
        import json

        extra = {"reply": judged.to_dict()} if judged is not None else {}
        sys.stdout.write(json.dumps(verdict.to_dict() | extra, ensure_ascii=False) + "\n")
        return
    out = Console()
    style = LABEL_STYLE[verdict.coarse.value]
    out.print(f"[{style}]{verdict.safety_label.value}[/{style}]  ({verdict.coarse.value})")
    for reason in explain(verdict, detector):
        out.print(f"  why: {escape(reason)}", highlight=False)
    table = Table(show_header=False, box=None, padding=(0, 2))
    for label, score in sorted(verdict.scores.items(), key=lambda kv: -kv[1]):
        table.add_row(label, f"{score:.3f}", "█" * round(score * 30))
    out.print(table)
    for rot in verdict.rots:
        out.print(f"  • {rot}")
    if judged is not None:
        style = LABEL_STYLE[judged.verdict.coarse.value]
        out.print(f"reply: [{style}]{judged.verdict.safety_label.value}[/{style}]  ({judged.verdict.coarse.value}); "
                  f"sides with the turn: {'yes' if judged.sides_with else 'no'}; the proxy would "
                  f"{judged.action}" + (f" ({judged.reason})" if judged.reason else ""), highlight=False)


def _judge_reply(detector, context: list[str], verdict: Verdict, reply: str):
    """The guard proxy's judgement of `reply` to `context` (`prosocial.steer.moderation`)."""
    from prosocial.prost.agreement import AgreementJudge
    from prosocial.steer.moderation import ReplyModerator

    flagged = not verdict.safety_label.is_casual
    return ReplyModerator(detector, AgreementJudge.load()).moderate([context], [reply], [flagged])[0]


def _wrapped(detector, attribute: str):
    """The first detector under `detector` (through its wrappers' `base`) that has `attribute`, or None."""
    while detector is not None and not hasattr(detector, attribute):
        detector = getattr(detector, "base", None)
    return detector


def _mini_config(detector):
    """The thresholds of the Canary-mini under `detector` (through norm wrappers), or None for other backends."""
    from prosocial.canary.mini import CanaryMini

    while detector is not None and not isinstance(detector, CanaryMini):
        detector = getattr(detector, "base", None)
    return detector.config if detector is not None else None


def explain(verdict: Verdict, detector) -> list[str]:
    """Why the label is what it is, in words: the norm that matched, the danger category, and for Canary-mini the
    threshold that decided. The score bars alone mislead: the intervention threshold is set low to catch nearly
    every emergency, so a context can need intervention while "casual" has the longest bar."""
    reasons = []
    if verdict.decoded:
        reasons.append(f"judged as decoded from {verdict.decoded}")
    if verdict.language_policy is not None:
        read = (f"the text is in a language the models cannot read ({verdict.language})" if verdict.language
                else "the text is an encoded payload that decodes to nothing readable")
        reasons.append(f"unsupported language: {read}; policy {verdict.language_policy}")
    if verdict.norm is not None:
        norms = getattr(_wrapped(detector, "bank"), "bank", None)
        norms = getattr(norms, "norms", [])
        norm = next((n for n in norms if n.id == verdict.norm), None)
        where = f" ({norm.origin})" if norm and norm.origin else ""
        level = f", level {norm.level}" if norm else ""
        reasons.append(f"your norm {verdict.norm!r} matched{where}{level}")
    if verdict.danger is not None:
        from prosocial.data.danger import BY_NAME

        category = BY_NAME.get(verdict.danger)
        reasons.append(f"danger category: {category.title if category else verdict.danger}")
    config = _mini_config(detector)
    if config is None or not verdict.scores:
        return reasons
    import numpy as np

    from prosocial.canary.mini import decide

    s = verdict.scores
    casual, intervention = s.get(SafetyLabel.CASUAL.value, 0.0), s.get(SafetyLabel.NEEDS_INTERVENTION.value, 0.0)
    caution = max(0.0, 1.0 - casual - intervention)
    share = caution / max(casual + caution, 1e-9)
    by_thresholds = decide(np.array([[casual, caution, intervention]]), config)[0]
    gate = config.intervention_gate
    t, c = config.intervention_threshold, config.casual_threshold
    if by_thresholds is SafetyLabel.NEEDS_INTERVENTION:
        rule = f"P(intervention) {intervention:.2f} is at or above the intervention threshold {t:.2f}"
        rule += f" and P(casual) {casual:.2f} below the gate {gate:.2f}" if gate is not None else ""
        rule += " (calibrated for high emergency recall, so it decides even when another score is higher)"
    else:
        rule = f"P(intervention) {intervention:.2f} is below the intervention threshold {t:.2f}"
        if gate is not None and intervention >= t:
            rule = f"P(casual) {casual:.2f} is at or above the intervention gate {gate:.2f}"
        if by_thresholds is SafetyLabel.CASUAL:
            rule += f"; the caution share {share:.2f} is below the casual threshold {c:.2f}"
        else:
            rule += (f"; the caution share {share:.2f} is at or above the casual threshold {c:.2f}: about "
                     f"{min(3, max(1, round(3 * share)))} of 3 annotators would say needs caution")
    if verdict.language_policy == "flag" and by_thresholds is not verdict.safety_label:
        reasons.append(f"the model's thresholds alone say {by_thresholds.value} ({rule}) of text it cannot read; "
                       f"the language policy made it {verdict.safety_label.value}")
    elif by_thresholds is verdict.safety_label:
        reasons.append(rule)
    elif verdict.norm is None and verdict.danger is None and by_thresholds is SafetyLabel.NEEDS_INTERVENTION:
        reasons.append(f"the model's thresholds alone say {by_thresholds.value} ({rule}), but the danger head "
                       f"sees no emergency, so it is {verdict.safety_label.value}")
    elif verdict.norm is None and verdict.danger is None:  # a caution cleared by the danger head's look-alike class
        reasons.append(f"the model's thresholds alone say {by_thresholds.value} ({rule}), but the danger head reads "
                       f"a harmless look-alike of a danger (its words, not its meaning), so it is "
                       f"{verdict.safety_label.value}")
    else:
        by = "norm" if verdict.norm is not None else "danger category"
        reasons.append(f"the model's thresholds alone say {by_thresholds.value} ({rule}); the {by} made it "
                       f"{verdict.safety_label.value}")
    return reasons


SHIPPED_CANARY = Path("src/prosocial/resources/canary-mini")


def train_canary_mini(
    out: Path = typer.Option(SHIPPED_CANARY, help="Model directory to (re)build."),
    data: Path | None = typer.Option(
        None, help="Shared data folder (default: $PROSOCIAL_SHARED_DATA or ../shared/data)."
    ),
    epochs: float = typer.Option(2.0, help="Passes over the training examples."),
    encoder_lr: float = typer.Option(5e-5, help="AdamW learning rate of the encoder (the head's stays 1e-3)."),
    casual_cap: int = typer.Option(3000, help="Examples kept per casual corpus."),
    prefix_share: float | None = typer.Option(
        None, help="Share of single utterances given casual small talk before them (default: the shipped recipe)."
    ),
    repeat: list[str] = typer.Option(
        [], help="SOURCE=N: repeat a source's examples N times, for more weight; repeatable (default: the shipped "
        "recipe, in the model card).",
    ),
    pooling: str = typer.Option(
        "mean+last", help="Head input: mean (over all tokens) or mean+last (and over the last utterance's own tokens)."
    ),
    seed: int = typer.Option(13),
    threads: int = typer.Option(1, help="Torch threads; 1 is fastest when the other core is busy."),
    min_intervention_recall: float = typer.Option(
        0.93, help="Needs-intervention recall the thresholds must keep on the calibration slice."
    ),
    gate_intervention: bool = typer.Option(
        False, "--gate-intervention", help="Also fit an intervention gate: needs intervention only where P(casual) "
        "is below it (see the model card)."
    ),
    precision: str = typer.Option(
        "bfloat16", help="Arithmetic to run and calibrate in: float32, bfloat16 (float32 on CPUs without native "
        "bfloat16) or int8 (fastest; per-token activation scales).",
    ),
    autocast: bool = typer.Option(
        True, help="Train under bfloat16 autocast where the CPU has native bfloat16 (about 3x faster steps)."
    ),
    calibrate_only: bool = typer.Option(
        False, "--calibrate-only", help="Refit temperature and thresholds of the model at --out; no training."
    ),
    rebuild_rot_bank: bool = typer.Option(
        False, "--rebuild-rot-bank", help="With --calibrate-only: rebuild the RoT bank from the data first."
    ),
    encoder: str = typer.Option(
        "minilm", help="minilm (the packaged all-MiniLM-L6-v2, the default's), mpnet (all-mpnet-base-v2 from its "
        "five part packages, `make teacher`: a teacher, about 7x slower), or the folder of any BERT-like "
        "transformers or sentence-transformers checkpoint, e.g. a download of "
        "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2 for a detector that reads 50 languages "
        "(the training data stays English; see the README's language section)."
    ),
    teacher: Path | None = typer.Option(
        None, help="A built Canary-mini-format model (e.g. --encoder mpnet's) to distil: the student learns from its "
        "probabilities blended with the labels."
    ),
    teacher_weight: float = typer.Option(
        0.5, min=0.0, max=1.0, help="With --teacher: the teacher's share of each training target."
    ),
    label_intervention: bool = typer.Option(
        False, "--label-intervention", help="With --teacher: each target's needs-intervention share stays the "
        "label's; the blend only splits the rest between casual and caution."
    ),
    pool: int = typer.Option(
        0, min=0, help="With --teacher: also distil on this many unlabelled train-split contexts that end in a reply "
        "(ProsocialDialog and DiaSafety replies, casual dialogue turns), the teacher's probabilities as targets."
    ),
    encoder_layers: int | None = typer.Option(
        None, min=1, help="Keep only the encoder's lowest N layers (default: all six of MiniLM's): a faster, "
        "smaller student, best with --teacher."
    ),
    work_dir: Path | None = typer.Option(
        None, help="Resumable checkpoint folder (default: <prosocial cache>/canary-mini-train); a killed build "
        "run again with the same settings continues from its last checkpoint."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Discard this build's checkpoint and start over."),
) -> None:
    """Rebuild the offline default detector from the public data (train splits only), with progress bars.

    --calibrate-only refits the temperature, the decision thresholds and the RoT relevance gate of a built model
    (and, with --rebuild-rot-bank, rebuilds its RoT bank from the data).
    """
    from prosocial.canary.encoders import packaged_minilm, packaged_mpnet
    from prosocial.canary.mini import MiniConfig
    from prosocial.canary.mini_train import MiniTrainSettings, default_prosocial_files, recalibrate, teacher_config
    from prosocial.canary.mini_train import train_canary_mini as build
    from prosocial.lm.hf import cache_root

    # the options are checked first, so a typo is reported before minutes of reading data (or a missing folder)
    if calibrate_only and (teacher or encoder != "minilm" or encoder_layers or pool):
        raise typer.BadParameter("--encoder, --encoder-layers, --pool and --teacher choose what to train; "
                                 "--calibrate-only trains nothing")
    encoder_folder = encoder_path(encoder)
    if encoder != "minilm" and out == SHIPPED_CANARY:
        raise typer.BadParameter(f"a build on {encoder} is not the shipped default: give it its own --out")
    recipe = MiniTrainSettings()
    try:
        repeats = {name: int(times) for name, _, times in (r.partition("=") for r in repeat)} or recipe.repeats
    except ValueError:
        raise typer.BadParameter(f"--repeat takes SOURCE=N, got {repeat}") from None
    settings = MiniTrainSettings(
        epochs=epochs,
        encoder_lr=encoder_lr,
        casual_cap=casual_cap,
        prefix_share=recipe.prefix_share if prefix_share is None else prefix_share,
        repeats=repeats,
        seed=seed,
        num_threads=threads,
        min_intervention_recall=min_intervention_recall,
        gate_intervention=gate_intervention,
        autocast=autocast,
        teacher_weight=teacher_weight,
        label_intervention=label_intervention,
        encoder_layers=encoder_layers,
        pool_size=pool,
        config=MiniConfig(precision=precision, pooling=pooling),
    )
    if teacher is not None:
        try:
            teacher_config(teacher)  # a wrong --teacher is reported before the data is looked for
        except ModelError as exc:
            fail(console, exc)
    root = shared_data_root(console, data)
    if calibrate_only:
        try:
            files = default_prosocial_files(root) if rebuild_rot_bank else None
            report = recalibrate(out, root=root, settings=settings, prosocial_files=files)
        except (DataError, ModelError, ValueError, OSError) as exc:
            fail(console, exc)
        console.print_json(data=report)
        return
    try:
        encoder_dir = encoder_folder or (packaged_mpnet() if encoder == "mpnet" else packaged_minilm())
        report = build(out, root=root, prosocial_files=default_prosocial_files(root), settings=settings,
                       encoder_dir=encoder_dir, work_dir=work_dir or cache_root() / "canary-mini-train",
                       teacher_dir=teacher, fresh=fresh)
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    console.print_json(data=report)


def encoder_path(encoder: str) -> Path | None:
    """The folder `--encoder` names (None for the packaged minilm and mpnet), checked before any data is read: a
    transformers or sentence-transformers checkpoint has its config.json and tokenizer at the top."""
    if encoder in ("minilm", "mpnet"):
        return None
    folder = Path(encoder)
    if not folder.is_dir():
        raise typer.BadParameter(f"--encoder takes minilm, mpnet or a checkpoint folder; {encoder!r} is neither "
                                 "(download a Hub model first, e.g. `huggingface-cli download "
                                 "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2 --local-dir DIR`)")
    if not (folder / "config.json").is_file():
        raise typer.BadParameter(f"--encoder {folder} has no config.json: not a transformers checkpoint folder")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model",
                                                         "tokenizer_config.json")):
        raise typer.BadParameter(f"--encoder {folder} has no tokenizer files (tokenizer.json, vocab.txt, …)")
    return folder


def train_danger(
    model: Path = typer.Option(SHIPPED_CANARY, help="Canary-mini folder whose danger/ module is (re)built."),
    data: Path | None = typer.Option(
        None, help="Shared data folder (default: $PROSOCIAL_SHARED_DATA or ../shared/data)."
    ),
    corpus: Path | None = typer.Option(None, help="Danger corpus (default: the shipped one, datasheet beside it)."),
    epochs: float = typer.Option(2.0, min=0.1, help="Passes over the training rows."),
    layers: int | None = typer.Option(None, min=1, help="Encoder layers kept (default: all; fewer: faster checks)."),
    max_length: int = typer.Option(96, min=8, max=512, help="Tokens of the latest turn read."),
    described_head: bool = typer.Option(
        False, help="Score categories by their sub-categories' descriptions instead of a linear head (measured, not "
        "shipped: see the model card)."),
    max_benign_flagged: float = typer.Option(
        0.05, min=0.0, max=1.0, help="At most this share of dev look-alikes flagged by the act threshold."),
    advice_as_lookalike: bool = typer.Option(
        False, help="Train DiaSafety's advice questions as look-alikes (the veto then clears the safety head's "
        "hand-overs of them) instead of as no danger."),
    max_benign_handover: float | None = typer.Option(
        None, min=0.0, max=1.0, help="At most this share of dev look-alikes handed over by the whole rule (default: "
        "no bound): the emergency threshold stops there, even short of the recall."),
    min_emergency_recall: float = typer.Option(
        0.95, min=0.0, max=1.0, help="Share of dev emergencies the rule must hand over (the emergency threshold is "
        "the highest that does)."),
    refit_thresholds: bool = typer.Option(
        False, help="Keep the trained head and fit only its thresholds again on dev rows (a few minutes)."),
    seed: int = typer.Option(0),
) -> None:
    """Fine-tune the danger head (emergencies, dangerous acts and their look-alikes) and fit its thresholds on dev
    rows; about 25 minutes on 2 cores. The corpus's held-out split is never read."""
    from prosocial.canary import danger_train
    from prosocial.data.adapters import default_root

    if not (model / "config.json").exists():
        raise typer.BadParameter(f"{model} is not a Canary-mini folder (no config.json)", param_hint="--model")
    settings = danger_train.DangerTrainSettings(
        layers=layers, max_length=max_length, epochs=epochs, described=described_head,
        advice_as_lookalike=advice_as_lookalike, max_benign_flagged=max_benign_flagged,
        max_benign_handover=max_benign_handover,
        min_emergency_recall=min_emergency_recall, seed=seed)
    try:
        fit = danger_train.refit_thresholds if refit_thresholds else danger_train.train_danger_head
        report = fit(model, root=data or default_root(), corpus=corpus or danger_train.CORPUS, settings=settings)
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    console.print_json(data=report)


def train_rot_writer(
    model: Path = typer.Option(SHIPPED_CANARY, help="Canary-mini folder whose rot_writer/ module is (re)built."),
    data: Path | None = typer.Option(
        None, help="Shared data folder (default: $PROSOCIAL_SHARED_DATA or ../shared/data)."
    ),
    steps: int = typer.Option(300, min=1, help="LoRA updates of 8 pairs."),
    work_dir: Path | None = typer.Option(None, help="Resumable checkpoint folder (default: the prosocial cache)."),
    fresh: bool = typer.Option(False, help="Start over instead of continuing a killed run's checkpoint."),
) -> None:
    """LoRA-train the RoT writer on SBIC, ProsocialDialog and danger-corpus reasons; about 25 minutes on 2 cores.
    SBIC dev, the ProsocialDialog validation file and the danger corpus's dev and held-out rows are never read."""
    from prosocial.canary.rotwriter_train import train_rot_writer as train

    if not (model / "config.json").exists():
        raise typer.BadParameter(f"{model} is not a Canary-mini folder (no config.json)", param_hint="--model")
    try:
        adapter = train(model, work_dir=work_dir, steps=steps, resume=False if fresh else None, root=data)
    except (DataError, ModelError, ValueError, OSError) as exc:
        fail(console, exc)
    console.print(f"RoT writer written to {adapter}")
