"""How many retries, how long to wait, when to cool down, where to fall back.

Pure functions of the settings and one failure, so each rule reads (and is
tested) on its own; :mod:`.plan` strings them together.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from feathergate.config import Deployment, FallbackRule, RouterSettings
from feathergate.errors import GatewayError
from feathergate.router.classify import ErrorClass, counts_against_health

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKOFF_FACTOR",
    "BACKOFF_JITTER",
    "MAX_RETRY_AFTER_COOLDOWN",
    "RETRY_AFTER_CAP",
    "backoff",
    "cooldown_for",
    "counts_as_failure",
    "fallback_targets",
    "retry_budget",
]

BACKOFF_BASE = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 8.0
BACKOFF_JITTER = 0.25
# A Retry-After longer than this is not waited for: the client would rather
# get another deployment, or the error (Retry-After forwarded, which the
# OpenAI SDKs honour themselves), than a connection held silently. It matches
# the backoff cap, so no in-gateway wait is ever longer than a backoff.
RETRY_AFTER_CAP = 8.0
# A Retry-After cools a deployment for at least that long, but a misbehaving
# upstream must not take a deployment out for hours.
MAX_RETRY_AFTER_COOLDOWN = 300.0


def retry_budget(
    settings: RouterSettings, dep: Deployment, err: GatewayError, cls: ErrorClass
) -> int:
    """Retries the group allows after ``err`` from ``dep``.

    ``retry_policy`` for the error's class wins (LiteLLM applies it over
    ``num_retries``, and its documented example retries BadRequestError, so an
    explicit entry also opts a non-retryable class in); then the deployment's
    ``max_retries``; then the router's ``num_retries``.
    """
    explicit = settings.retry_policy.get(cls.retries_key)
    if explicit is not None:
        return explicit
    if not err.retryable:
        return 0
    return dep.max_retries if dep.max_retries is not None else settings.num_retries


def backoff(retry: int, rng: random.Random) -> float:
    """Delay before the ``retry``-th (0-based) re-try of a deployment already tried.

    Exponential, capped, with up to 25 % jitter taken off (never added) so the
    cap really is the longest wait and concurrent retries spread out.
    """
    base = min(BACKOFF_CAP, BACKOFF_BASE * BACKOFF_FACTOR ** min(retry, 32))
    return base * (1.0 - BACKOFF_JITTER * rng.random())


def counts_as_failure(settings: RouterSettings, err: GatewayError, cls: ErrorClass) -> bool:
    """Whether ``err`` counts towards ``allowed_fails``.

    Failures that speak about the deployment count; a request's own fault
    (bad request, context window, content policy) counts only when
    ``allowed_fails_policy`` names its class, so one bad client cannot cool
    down a healthy deployment.
    """
    return cls.allowed_fails_key in settings.allowed_fails_policy or counts_against_health(err, cls)


def cooldown_for(
    settings: RouterSettings, cls: ErrorClass, failures: int, retry_after: float | None
) -> float:
    """Seconds to cool a deployment down after its ``failures``-th recent failure (0: stay in).

    As LiteLLM, the limit is the number of *allowed* fails: the cooldown starts
    when the count goes above it. ``cooldown_time: 0`` disables cooldowns.
    """
    if settings.cooldown_time <= 0:
        return 0.0
    limit = settings.allowed_fails_policy.get(cls.allowed_fails_key, settings.allowed_fails)
    seconds = settings.cooldown_time if failures > limit else 0.0
    if cls is ErrorClass.RATE_LIMIT and retry_after is not None:
        # The upstream said when it will take requests again; sending more
        # before that only burns retries.
        seconds = max(seconds, min(retry_after, MAX_RETRY_AFTER_COOLDOWN))
    return seconds


_SPECIFIC_RULES: dict[ErrorClass, Callable[[RouterSettings], tuple[FallbackRule, ...]]] = {
    ErrorClass.CONTEXT_WINDOW: lambda s: s.context_window_fallbacks,
    ErrorClass.CONTENT_POLICY: lambda s: s.content_policy_fallbacks,
}


def _rule(rules: Sequence[FallbackRule], names: Sequence[str]) -> tuple[str, ...] | None:
    for name in (*names, "*"):
        for rule in rules:
            if rule.model == name:
                return rule.fallbacks
    return None


def fallback_targets(
    settings: RouterSettings, names: Sequence[str], cls: ErrorClass, retryable: bool
) -> tuple[str, ...]:
    """Model names to fall back to, in order; ``names`` are the requested name, then its group.

    Context-window and content-policy errors use only their own lists (a
    bigger or laxer model is the only thing that helps); other errors fall
    back only when retryable, through ``fallbacks``, else ``default_fallbacks``.
    A rule keyed ``*`` applies to every model, as in LiteLLM.
    """
    specific = _SPECIFIC_RULES.get(cls)
    if specific is not None:
        return _rule(specific(settings), names) or ()
    if not retryable:
        return ()
    found = _rule(settings.fallbacks, names)
    return settings.default_fallbacks if found is None else found
