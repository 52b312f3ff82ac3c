"""Prometheus metrics. Label values are model aliases, statuses and kinds: never keys."""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ADDED_LATENCY",
    "COOLDOWN",
    "DEADLINE_EXPIRIES",
    "DEPLOYMENT_FAILURES",
    "DEPLOYMENT_REQUESTS",
    "DISCONNECTS",
    "INFLIGHT",
    "LOG_DROPPED",
    "REQUESTS",
    "REQUEST_LATENCY",
    "RETRIES",
    "SHARED_STATE_ERRORS",
    "SHARED_STATE_FALLBACKS",
    "SHARED_STATE_UP",
    "deployment_failures",
    "deployment_requests",
    "request_latency",
    "requests",
]

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "feathergate_requests",
    "Chat completion requests by model alias and status",
    ["model", "status"],
)
REQUEST_LATENCY = Histogram(
    "feathergate_request_duration_seconds",
    "Time from request to the end of the response",
    ["model"],
    buckets=_SLOW,
)
ADDED_LATENCY = Histogram(
    "feathergate_added_latency_seconds",
    "Time the gateway itself added before the first byte reached the client "
    "(request handling outside the upstream call)",
    buckets=_FAST,
)
INFLIGHT = Gauge("feathergate_inflight_relays", "Relays running now", multiprocess_mode="livesum")
DISCONNECTS = Counter(
    "feathergate_client_disconnects", "Clients that left before the response ended", ["phase"]
)
DEADLINE_EXPIRIES = Counter(
    "feathergate_deadline_expiries", "Upstream deadlines that expired", ["kind"]
)
DEPLOYMENT_REQUESTS = Counter(
    "feathergate_deployment_requests",
    "Upstream attempts by model group and deployment id",
    ["model", "deployment"],
)
DEPLOYMENT_FAILURES = Counter(
    "feathergate_deployment_failures",
    "Failed upstream attempts by model group, deployment id and status",
    ["model", "deployment", "status"],
)
COOLDOWN = Gauge(
    "feathergate_deployment_cooldown",
    "1 while a deployment is cooling down (read at scrape time)",
    ["model", "deployment"],
    multiprocess_mode="max",
)
RETRIES = Counter(
    "feathergate_router_retries",
    "Retries and fallbacks the router decided on",
    ["model", "kind"],
)
SHARED_STATE_UP = Gauge(
    "feathergate_shared_state_up",
    "1 while the shared state (Redis) answers, 0 while limits and cooldowns are local",
    multiprocess_mode="livemin",
)
SHARED_STATE_FALLBACKS = Counter(
    "feathergate_shared_state_fallbacks",
    "Rate-limit decisions taken without the shared state: local (limit / processes) "
    "or fail_closed (503)",
    ["kind"],
)
SHARED_STATE_ERRORS = Counter(
    "feathergate_shared_state_errors",
    "Calls to the shared state that failed or timed out, by operation",
    ["op"],
)


# ``.labels()`` takes a lock and builds a key on every call; the hot path asks
# for the same few children over and over, so they are looked up once. Every
# label value is a configured name or a status, so these caches stay small.


@cache
def requests(model: str, status: int) -> Any:
    return REQUESTS.labels(model, str(status))


@cache
def request_latency(model: str) -> Any:
    return REQUEST_LATENCY.labels(model)


@cache
def deployment_requests(model: str, deployment: str) -> Any:
    return DEPLOYMENT_REQUESTS.labels(model, deployment)


@cache
def deployment_failures(model: str, deployment: str, status: int) -> Any:
    return DEPLOYMENT_FAILURES.labels(model, deployment, str(status))


LOG_DROPPED = Counter(
    "feathergate_log_records_dropped",
    "Log records dropped because the log writer was behind (a slow or stalled stdout/stderr)",
)
