"""`prosocial serve`: the HTTP API and the OpenAI-compatible guard proxy under uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from prosocial.canary.language import POLICY_HELP
from prosocial.canary.norms import load_matcher, load_norms
from prosocial.cli.errors import fail
from prosocial.cli.norms import NORMS_HELP, NORMS_MATCHER_HELP
from prosocial.errors import DataError, ModelError

console = Console(stderr=True)


def serve(
    host: str | None = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Settings file (TOML, keys at the top or under \\[serve]; or JSON)."
    ),
    detector: str | None = typer.Option(None, "--detector", "-d", help="Detector backend (default canary-mini)."),
    norms: list[str] = typer.Option([], "--norms", help=NORMS_HELP + " Checked before the service starts."),
    norms_matcher: str | None = typer.Option(None, "--norms-matcher", help=NORMS_MATCHER_HELP),
    unsupported_language: str | None = typer.Option(
        None, "--unsupported-language", help=POLICY_HELP + " Checked before the service starts."
    ),
    upstream_url: str | None = typer.Option(
        None, help="OpenAI-compatible LLM to guard, with its version path, e.g. http://localhost:8080/v1."
    ),
    upstream_timeout: float | None = typer.Option(None, help="Seconds to wait for the upstream (default 60)."),
    generator: str | None = typer.Option(None, help="Generator backend for /v1/respond (e.g. steered, prost)."),
    escalation_webhook: str | None = typer.Option(None, help="URL that receives escalation events as JSON."),
    api_key: list[str] = typer.Option([], "--api-key", help="Accepted API key; repeatable (default: no keys)."),
    shutdown_timeout: float | None = typer.Option(
        None, help="Seconds in-flight requests get to finish on shutdown (default 30)."
    ),
    moderate_output: bool | None = typer.Option(
        None, "--moderate-output/--no-moderate-output",
        help="Judge the upstream's replies before the client gets them (default on).", show_default=False,
    ),
    judge_system: bool | None = typer.Option(
        None, "--judge-system/--trust-system",
        help="Judge system and developer messages too, or trust them (default: judge).", show_default=False,
    ),
    judge: str | None = typer.Option(
        None, "--judge",
        help="An LLM as Canary-mini's second judge: 'upstream' (the proxied LLM) or URL/v1/MODEL of an "
        "OpenAI-compatible server (a guard model: add --judge-adapter). Failures leave Canary-mini's verdict.",
    ),
    judge_model: str | None = typer.Option(None, help="The judge's model name (default: from --judge or models)."),
    judge_adapter: str | None = typer.Option(
        None, help="How the judge is asked: prosocial (default), llama-guard, qwen3guard."
    ),
    judge_timeout: float | None = typer.Option(None, help="Seconds per judged context before falling back (10)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve /v1/safety, /v1/respond and the guard proxy /v1/chat/completions (settings: flags > PROSOCIAL_* > file)."""
    import uvicorn

    from prosocial.serve.app import create_app
    from prosocial.serve.settings import ServeSettings

    try:
        settings = ServeSettings.load(
            config,
            host=host,
            port=port,
            detector=detector,
            norms=norms or None,
            norms_matcher=norms_matcher,
            unsupported_language=unsupported_language,
            upstream_url=upstream_url,
            upstream_timeout=upstream_timeout,
            generator=generator,
            escalation_webhook=escalation_webhook,
            api_keys=api_key or None,
            shutdown_timeout=shutdown_timeout,
            moderate_output=moderate_output,
            judge_system=judge_system,
            judge=judge,
            judge_model=judge_model,
            judge_adapter=judge_adapter,
            judge_timeout=judge_timeout,
        )
        load_norms(settings.norms)  # a bad norms file stops here, before the port opens
        if settings.norms_matcher is not None:
            load_matcher(settings.norms_matcher)  # reads its settings only; the weights load with the detector
        if settings.judge:
            settings.judge_endpoint()  # so does a judge without a model or an upstream
    except (ModelError, DataError) as exc:
        fail(console, exc)
    upstream = settings.upstream_url or "none (the proxy answers 503)"
    judged = f" + LLM judge {settings.judge_endpoint()[1]} ({settings.judge_adapter})" if settings.judge else ""
    console.print(f"detector {settings.detector}{judged}; upstream {upstream}; "
                  f"http://{settings.host}:{settings.port}/docs")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a service's log gets no "Loading weights" bars, models load lazily
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )
