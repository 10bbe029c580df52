"""Any OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, Ollama, hosted APIs) as a LanguageModel.

Remote servers fail in ordinary ways (restarts, overload, rate limits), so transient failures are retried
with exponential backoff; everything else, including a 200 answer that is not what the API promises,
becomes an `UpstreamError` that says what the server did.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from prosocial.errors import ModelError
from prosocial.lm.base import (
    Completion,
    LanguageModel,
    Message,
    UpstreamError,
    register_lm,
    sampling_fields,
    token_choices,
    truncate_at_stop,
)

#: how `chat_detailed` asks for JSON: OpenAI's strict json_schema (vLLM, llama.cpp's server, Ollama and hosted APIs
#: take it), json_object (valid JSON, any shape: older servers), or nothing (the caller parses free text)
RESPONSE_FORMATS = ("json_schema", "json_object", "none")


def _env(*names: str) -> str | None:
    """The first of `names` set to a non-empty value in the environment."""
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _message_text(url: str, choice: dict[str, Any]) -> str:
    """A chat choice's message text; a choice without one is the upstream's error."""
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise UpstreamError(f"{url} answered a choice without message text: {_snippet(str(choice))}", 200)
    return content


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


@register_lm("openai")
class OpenAICompatibleLM(LanguageModel):
    """Talks to `base_url` (including the version, e.g. "http://localhost:8000/v1"), as `model`.

    Unset settings come from PROSOCIAL_OPENAI_BASE_URL / PROSOCIAL_OPENAI_API_KEY / PROSOCIAL_OPENAI_MODEL,
    then OPENAI_BASE_URL / OPENAI_API_KEY. A request is tried `max_retries` more times after a connection
    error, a timeout, HTTP 429 or 5xx, waiting backoff·2^attempt seconds (or the server's Retry-After),
    at most `max_backoff`. Prompts of a batch are sent as concurrent single requests, because not every
    compatible server accepts a list of prompts. `response_format` is how `chat_detailed` asks for JSON
    (`RESPONSE_FORMATS`).
    """

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_concurrency: int = 4,
        headers: dict[str, str] | None = None,
        response_format: str = "json_schema",
    ):
        if response_format not in RESPONSE_FORMATS:
            raise ModelError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}")
        self.response_format = response_format
        base_url = base_url or _env("PROSOCIAL_OPENAI_BASE_URL", "OPENAI_BASE_URL")
        model = model or _env("PROSOCIAL_OPENAI_MODEL")
        if not base_url:
            raise ModelError(
                "no OpenAI-compatible endpoint: pass base_url= or set PROSOCIAL_OPENAI_BASE_URL "
                "(e.g. http://localhost:8000/v1)"
            )
        if not model:
            raise ModelError(
                "no model name for the OpenAI-compatible endpoint: pass model= or set PROSOCIAL_OPENAI_MODEL"
            )
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_concurrency = max(1, max_concurrency)
        api_key = api_key or _env("PROSOCIAL_OPENAI_API_KEY", "OPENAI_API_KEY")
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Creating a client opens no connection; it only holds the pool for reuse across requests.
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=auth | (headers or {}))

    def close(self) -> None:
        """Release pooled connections."""
        self._client.close()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        try:
            wait = float(retry_after) if retry_after else self.backoff * 2**attempt
        except ValueError:  # an HTTP date; rare enough to fall back to our own schedule
            wait = self.backoff * 2**attempt
        return min(max(wait, 0.0), self.max_backoff)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; returns the decoded JSON object or raises UpstreamError."""
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._client.post(path, json=body)
            except httpx.TimeoutException:
                failure = UpstreamError(f"{url} did not answer within {self.timeout:g} s")
            except httpx.TransportError as err:
                failure = UpstreamError(f"cannot reach {url}: {err or type(err).__name__}")
            else:
                status = response.status_code
                if status < 400:
                    return self._decode(url, response)
                message = f"{url} answered HTTP {status}: {_snippet(self._error_text(response))}"
                if status != 429 and status < 500:  # the request itself is wrong; repeating it cannot help
                    raise UpstreamError(message, status=status)
                failure = UpstreamError(message, status=status)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, response))
        tries = self.max_retries + 1
        raise UpstreamError(f"{failure} (gave up after {tries} attempt{'s' * (tries > 1)})", status=failure.status)

    @staticmethod
    def _error_text(response: httpx.Response) -> str:
        """The server's own error message when it sent the usual {"error": {"message": ...}}, else the body."""
        try:
            err = response.json().get("error")
            return str(err.get("message", err) if isinstance(err, dict) else err or response.text)
        except (ValueError, AttributeError):
            return response.text or "(empty body)"

    @staticmethod
    def _decode(url: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise UpstreamError(
                f"{url} answered HTTP {response.status_code} with a body that is not JSON: "
                f"{_snippet(response.text) or '(empty body)'}",
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(
                f"{url} answered JSON that is not an object: {_snippet(response.text)}", response.status_code
            )
        return data

    @staticmethod
    def _first_choice(url: str, data: dict[str, Any]) -> dict[str, Any]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamError(f"{url} answered JSON without a 'choices' list: {_snippet(str(data))}", 200)
        return choices[0]

    def _options(
        self, max_new_tokens: int, temperature: float, top_p: float, stop: list[str] | None, seed: int | None
    ) -> dict[str, Any]:
        return {"model": self.model} | sampling_fields(max_new_tokens, temperature, top_p, stop, seed)

    def _map(self, fn: Any, items: list[Any]) -> list[str]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        options = self._options(max_new_tokens, temperature, top_p, stop, seed)
        url = f"{self.base_url}/completions"

        def one(prompt: str) -> str:
            text = self._first_choice(url, self._post("/completions", options | {"prompt": prompt})).get("text")
            if not isinstance(text, str):
                raise UpstreamError(f"{url} answered a choice whose 'text' is not a string: {_snippet(str(text))}", 200)
            return truncate_at_stop(text, stop)

        return self._map(one, prompts)

    def chat(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> list[str]:
        options = self._options(max_new_tokens, temperature, top_p, stop, seed)
        url = f"{self.base_url}/chat/completions"

        def one(messages: list[Message]) -> str:
            choice = self._first_choice(url, self._post("/chat/completions", options | {"messages": messages}))
            return truncate_at_stop(_message_text(url, choice), stop)

        return self._map(one, messages_batch)

    def chat_detailed(
        self,
        messages_batch: list[list[Message]],
        max_new_tokens: int = 256,
        schema: dict[str, Any] | None = None,
        top_logprobs: int = 0,
    ) -> list[Completion]:
        """Greedy chat answers; with `schema`, asked for as `response_format` says; with `top_logprobs`, OpenAI's
        `logprobs` (a server that ignores the field simply sends none, and the answer has no tokens)."""
        body: dict[str, Any] = self._options(max_new_tokens, 0.0, 1.0, None, None)
        constrained = schema is not None and self.response_format != "none"
        if constrained and self.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
        elif constrained:
            body["response_format"] = {"type": "json_object"}
        if top_logprobs:
            body |= {"logprobs": True, "top_logprobs": top_logprobs}
        url = f"{self.base_url}/chat/completions"

        def one(messages: list[Message]) -> Completion:
            choice = self._first_choice(url, self._post("/chat/completions", body | {"messages": messages}))
            return Completion(_message_text(url, choice), token_choices(choice.get("logprobs")), constrained)

        return self._map(one, messages_batch)

