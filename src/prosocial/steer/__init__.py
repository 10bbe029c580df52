"""Steering: Canary-guided prompting of any LM (paper §6.2, D.2) and the prosocial agent with a human hand-over."""

from prosocial.steer.agent import (
    HANDOVER_REPLY,
    AgentTurn,
    Conversation,
    EscalationEvent,
    EscalationHandler,
    ProsocialAgent,
    WebhookEscalation,
)
from prosocial.steer.steered import SteeredGenerator  # noqa: F401  (also registers the "steered" generator)

__all__ = [
    "HANDOVER_REPLY",
    "AgentTurn",
    "Conversation",
    "EscalationEvent",
    "EscalationHandler",
    "ProsocialAgent",
    "SteeredGenerator",
    "WebhookEscalation",
]
