"""Escalation events: when a conversation needs a person, tell the application (a callback) and/or a webhook.

Delivery runs in the background so the user's hand-over reply is never held up by a slow receiver, and a
failing receiver is logged and counted rather than turned into a failed request.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from prosocial.canary.base import Verdict
from prosocial.steer.agent import EscalationEvent

log = logging.getLogger(__name__)

EscalationCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


def escalation_event(route: str, context: list[str], verdict: Verdict) -> dict[str, Any]:
    """The agent's `EscalationEvent` (one shape for every receiver), plus the route that raised it."""
    event = EscalationEvent(f"esc-{uuid.uuid4().hex}", context, verdict, datetime.now(UTC).isoformat())
    return event.to_dict() | {"route": route}


class EscalationNotifier:
    """Delivers each event to `callback` (sync or async) and POSTs it as JSON to `webhook`, if set."""

    def __init__(
        self,
        webhook: str | None = None,
        callback: EscalationCallback | None = None,
        timeout: float = 10.0,
        on_failure: Callable[[], None] | None = None,
    ):
        self.webhook = webhook
        self.callback = callback
        self.on_failure = on_failure
        self._client = httpx.AsyncClient(timeout=timeout) if webhook else None
        self._pending: set[asyncio.Task[None]] = set()

    def notify(self, event: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, event: dict[str, Any]) -> None:
        try:
            if self.callback is not None:
                result = self.callback(event)
                if inspect.isawaitable(result):
                    await result
            if self._client is not None and self.webhook:
                response = await self._client.post(self.webhook, json=event)
                response.raise_for_status()
        except Exception:  # a receiver's failure must not reach the user, but it must be visible
            log.exception("escalation event for conversation %s was not delivered", event["conversation_id"])
            if self.on_failure:
                self.on_failure()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for events still being delivered, so a shutdown does not drop them."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)
        if self._client is not None:
            await self._client.aclose()
