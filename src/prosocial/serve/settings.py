"""Service settings: defaults, then a TOML/JSON file, then PROSOCIAL_* environment variables, then CLI flags.

One flat set of keys keeps the three sources symmetrical: the file key `upstream_url`, the variable
`PROSOCIAL_UPSTREAM_URL` and the flag `--upstream-url` all set the same field. Plain pydantic, not
pydantic-settings: the file, variable and flag layers are a few lines here, and a settings library would add a
dependency without removing them (the flags still come from typer).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prosocial.canary.language import check_policy
from prosocial.data.danger import check_region
from prosocial.errors import ModelError
from prosocial.steer.moderation import check_actions

ENV_PREFIX = "PROSOCIAL_"


class ServeSettings(BaseModel):
    """Everything `prosocial serve` can be told; see the README for what each key does."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    detector: str = "canary-mini"
    detector_settings: dict[str, Any] = Field(default_factory=dict)
    #: user norm files (YAML / JSON Lines) applied on top of the detector; one that fails to load fails /readyz
    norms: list[str] = Field(default_factory=list)
    #: how norms are matched: a learned matcher's folder (`prosocial train norm-matcher`); None: the prototype matcher
    norms_matcher: str | None = None
    #: what the detector does with text the models cannot read (another language, an unreadable payload): flag
    #: (needs caution, the proxy guides), pass (the detector's verdict, marked) or judge (an LLM judge; none yet)
    unsupported_language: str = "flag"
    #: the languages the detector reads (ISO 639-1): English for the shipped models; more for a detector built on a
    #: multilingual encoder (`prosocial train canary-mini --encoder FOLDER`)
    detector_languages: list[str] = Field(default_factory=lambda: ["en"])
    generator: str | None = None
    generator_settings: dict[str, Any] = Field(default_factory=dict)
    upstream_url: str | None = None
    upstream_api_key: str | None = None
    #: seconds per read from the upstream
    upstream_timeout: float = Field(60.0, gt=0)
    upstream_connect_timeout: float = Field(5.0, gt=0)
    #: seconds for a whole non-streamed answer, and for each event of a stream (the first included; keep-alive
    #: comments do not count); unset: `upstream_timeout`
    upstream_deadline: float | None = Field(None, gt=0)
    #: bytes of a non-streamed upstream answer, and of one stream event, beyond which the proxy gives up (502)
    max_upstream_bytes: int = Field(10_000_000, gt=0)
    max_upstream_event_bytes: int = Field(1_000_000, gt=0)
    #: /readyz also asks the upstream (GET /models, cached for a moment), so a load balancer drains an instance
    #: whose LLM is down; unset: whenever an upstream is configured
    ready_checks_upstream: bool | None = None
    #: what GET /v1/models lists; empty: the upstream's own list
    models: list[str] = Field(default_factory=list)
    api_keys: list[str] = Field(default_factory=list)
    #: /metrics without a key even when `api_keys` are set (for a scraper inside a trusted network)
    metrics_public: bool = False
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_turns: int = Field(64, gt=0)
    max_utterance_chars: int = Field(8000, gt=0)
    max_batch: int = Field(64, gt=0)
    batch_size: int = Field(8, gt=0)
    batch_wait_ms: float = Field(5.0, ge=0)
    #: contexts that may wait for the detector (all clients together); beyond, a 429 with Retry-After
    max_queue_contexts: int = Field(256, gt=0)
    #: one hand-over text for every emergency; unset, the text fits the danger category (poison control for a
    #: poisoning, a crisis line for self-harm) with the contacts of `region`
    escalation_reply: str | None = None
    #: whose numbers the hand-over names (`prosocial.data.danger.HANDOVER_REGIONS`); an unknown one fails at start
    region: str = "international"
    escalation_webhook: str | None = None
    #: the proxy judges system and developer messages too (off: the application's own prompt is trusted)
    judge_system: bool = True
    #: the most text windows one chat request may ask the guard to judge (more is refused with 413)
    max_judged_windows: int = Field(512, gt=0)
    #: the proxy judges the upstream's reply before the client gets it (`prosocial.steer.moderation`)
    moderate_output: bool = True
    #: what to do with a reply, per reason (sides_with, needs_intervention, needs_caution): pass, replace, refuse
    output_actions: dict[str, str] = Field(default_factory=dict)
    #: a streamed reply is judged at a sentence end past `stream_min_chars` unjudged characters, or at
    #: `stream_window_chars` (the most text ever held back unjudged)
    stream_min_chars: int = Field(60, gt=0)
    stream_window_chars: int = Field(240, gt=0)
    shutdown_timeout: float = Field(30.0, ge=0)
    #: an LLM as Canary-mini's second judge (`canary-judge`): "upstream" (the proxied LLM judges, as NeMo's
    #: self-check does) or an OpenAI-compatible URL with its version path, optionally followed by the model
    #: ("http://localhost:8001/v1/meta-llama/Llama-Guard-3-8B"); unset: Canary-mini alone
    judge: str | None = None
    #: the judge's model name (unset: what `judge` ends with, else the first of `models` for "upstream")
    judge_model: str | None = None
    #: how the judge is asked: "prosocial" (the paper's schema, the norms), "llama-guard", "qwen3guard"
    judge_adapter: str = "prosocial"
    #: seconds the judge may take per context before Canary-mini's verdict stands (no retries)
    judge_timeout: float = Field(10.0, gt=0)
    judge_api_key: str | None = None
    #: more `canary-judge` settings, e.g. {"band": 0.1, "send_flagged": false}
    judge_settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("output_actions")
    @classmethod
    def _known_actions(cls, value: dict[str, str]) -> dict[str, str]:
        check_actions(value)
        return value

    @field_validator("unsupported_language")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        return check_policy(value)

    @field_validator("judge")
    @classmethod
    def _judge_target(cls, value: str | None) -> str | None:
        if value is not None and value != "upstream" and not value.startswith(("http://", "https://")):
            raise ValueError("judge must be 'upstream' or an http(s) URL with its version path (…/v1[/MODEL])")
        return value

    def judge_endpoint(self) -> tuple[str, str, str | None]:
        """The judge's base URL, model and key: "upstream" is the proxied LLM (its URL and key); a URL is split
        after its version path (/v1), the rest being the model. A missing part is a `ModelError` naming the key."""
        if self.judge == "upstream":
            if not self.upstream_url:
                raise ModelError("judge = 'upstream' needs upstream_url (the LLM that also judges)")
            base, model, key = self.upstream_url, None, self.judge_api_key or self.upstream_api_key
            model = self.judge_model or (self.models[0] if self.models else None)
        else:
            url = str(self.judge)
            head, sep, tail = url.partition("/v1/")
            base, model, key = (head + "/v1", tail.strip("/") or None, self.judge_api_key) if sep else \
                (url, None, self.judge_api_key)
            model = self.judge_model or model
        if not model:
            raise ModelError("the LLM judge needs a model name: set judge_model (or end the judge URL with it)")
        return base.rstrip("/"), model, key

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        return check_region(value)

    @classmethod
    def load(
        cls, path: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServeSettings:
        """Merge the sources in order of precedence; `overrides` left as None (unset CLI flags) are ignored."""
        values: dict[str, Any] = read_config_file(path) if path else {}
        values |= _from_env(os.environ if env is None else env)
        values |= {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ModelError(f"invalid service settings: {exc}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file (keys at the top level or under [serve]) or a JSON object, chosen by suffix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise ModelError(f"cannot read the service config {path}: {exc}") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"the service config {path} is not valid {path.suffix or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"the service config {path} must hold an object of settings")
    return dict(data.get("serve", data))


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """PROSOCIAL_<KEY> for each known key; dict and list keys take JSON, and a list also a comma-separated string."""
    values: dict[str, Any] = {}
    for name, field in ServeSettings.model_fields.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if field.annotation in (dict[str, Any], dict[str, str]):
            try:
                values[name] = json.loads(raw)
            except ValueError:
                raise ModelError(f"{ENV_PREFIX}{name.upper()} must be a JSON object") from None
        elif field.annotation == list[str]:
            values[name] = json.loads(raw) if raw.lstrip().startswith("[") else [s for s in raw.split(",") if s]
        else:
            values[name] = raw
    return values
