"""Prometheus metrics, in a registry per app so several apps (tests, embedding) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: the methods counted by name; a client can send any token as a method, and each label set lives forever
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the route label of a request no route matched (its path is the client's, so never a label)
UNMATCHED_ROUTE = "(unmatched)"


def method_label(method: str) -> str:
    """The method as a metrics label: a known one, or OTHER, so clients cannot grow the label set."""
    return method if method in KNOWN_METHODS else "OTHER"


class Metrics:
    """Requests, latencies, verdict labels, escalations, upstream failures and detector batch sizes.

    Every label takes a bounded set of values (route templates, known methods, statuses, labels, error kinds),
    so no client can make the registry, or /metrics, grow without end.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "prosocial_requests", "HTTP requests by route and status.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "prosocial_request_seconds", "HTTP request latency by route.", ["route"], buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            "prosocial_verdicts", "Safety labels given, by route.", ["route", "safety_label"], registry=r
        )
        self.escalations = Counter("prosocial_escalations", "Conversations handed over to a person.", registry=r)
        self.upstream_errors = Counter(
            "prosocial_upstream_errors", "Failed upstream LLM calls by kind.", ["kind"], registry=r
        )
        self.batch_size = Histogram(
            "prosocial_detector_batch_size", "Contexts per detector call.", buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "prosocial_detector_batch_seconds", "Detector call latency.", buckets=LATENCY_BUCKETS, registry=r
        )

        self.judge_contexts = Counter(
            "prosocial_judge_contexts",
            "Contexts sent to the LLM judge, by outcome (fallback: it failed and Canary-mini's verdict stood).",
            ["outcome"], registry=r,
        )
        self.judge_seconds = Histogram(
            "prosocial_judge_seconds", "LLM judge latency per detector batch.", buckets=LATENCY_BUCKETS, registry=r
        )

    def observe_judge(self, sent: int, failed: int, seconds: float) -> None:
        self.judge_contexts.labels("judged").inc(sent - failed)
        self.judge_contexts.labels("fallback").inc(failed)
        self.judge_seconds.observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
