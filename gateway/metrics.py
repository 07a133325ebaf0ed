"""The gateway's Prometheus metrics, on a registry of its own (``GET /metrics``).

Labels are bounded: routes are the templates (``/v1/decisions/{transaction_id}``, never the id), Stripe event
types outside the handled set are counted as ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("fraudguard_gateway_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("fraudguard_gateway_request_seconds", "time to answer an HTTP request, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("fraudguard_gateway_decisions", "decisions returned through the gateway, by action",
                                 ["action"], registry=r)
        self.scores = Histogram("fraudguard_gateway_score", "scores returned through the gateway",
                                buckets=SCORE_BUCKETS, registry=r)
        self.upstream_errors = Counter("fraudguard_gateway_upstream_errors",
                                       "failed calls to the scoring service, by gRPC status", ["code"], registry=r)
        self.rate_limited = Counter("fraudguard_gateway_rate_limited", "requests refused with 429 by the rate limit",
                                    registry=r)
        self.auth_failures = Counter("fraudguard_gateway_auth_failures",
                                     "requests refused for their API key, by reason (missing, invalid, role)",
                                     ["reason"], registry=r)
        self.stripe_events = Counter("fraudguard_gateway_stripe_events",
                                     "Stripe webhook deliveries, by event type and what became of them",
                                     ["type", "result"], registry=r)
        self.stripe_pending = Gauge("fraudguard_gateway_stripe_pending",
                                    "verified Stripe events stored and not yet processed", registry=r)
        self.model_info = Gauge("fraudguard_gateway_model_info",
                                "the scoring service's model version last seen by the gateway (value 1)",
                                ["model_version"], registry=r)
        self._model_version: str | None = None

    def saw_model(self, version: str) -> None:
        if version and version != self._model_version:
            if self._model_version is not None:
                self.model_info.remove(self._model_version)
            self.model_info.labels(version).set(1)
            self._model_version = version

    def saw_decision(self, action: str, score: float | None, model_version: str) -> None:
        self.decisions.labels(action).inc()
        if score is not None:
            self.scores.observe(score)
        self.saw_model(model_version)
