"""Schemathesis against the service's own OpenAPI schema: no generated input may cause a server error, and every
error has OpenAI's shape (`test_serve_fuzz.py` adds the inputs a schema does not describe: surrogates, NaN…).

The service runs under uvicorn with a working fake upstream, so a 5xx here is the service's own fault. The
schema is taken from an app built with the same limits (building one is cheap: models load in its lifespan).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from prosocial.serve.app import create_app
from prosocial.serve.settings import ServeSettings
from tests.serve_fakes import InterventionDetector, ServerThread, fake_upstream
from tests.test_serve import _wait_ready

LIMITS = {"max_turns": 8, "max_batch": 8, "max_utterance_chars": 500}
schema = schemathesis.openapi.from_dict(create_app(ServeSettings(**LIMITS)).openapi())


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    upstream_app, _ = fake_upstream()
    with ServerThread(upstream_app) as upstream:
        app = create_app(
            ServeSettings(
                upstream_url=f"{upstream.url}/v1",
                upstream_timeout=5.0,
                escalation_webhook=f"{upstream.url}/hooks/escalation",
                generator="steered",
                generator_settings={"lm": "openai", "model": "fake-echo", "prompt_style": "chat",
                                    "lm_settings": {"base_url": f"{upstream.url}/v1", "max_retries": 0}},
                **LIMITS,
            ),
            detector=InterventionDetector(),
        )
        with ServerThread(app) as running:
            with httpx.Client(base_url=running.url) as client:
                _wait_ready(client)
            yield running.url


@schemathesis.check
def openai_error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    """Every error is OpenAI's {"error": {"message", "type", "param", "code"}}, so official clients show it."""
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert error["code"] == response.status_code


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=[schemathesis.checks.not_a_server_error, openai_error_shape])
