"""Which LiteLLM error class a failure belongs to, and what it says about the deployment.

``retry_policy`` and ``allowed_fails_policy`` are keyed by LiteLLM's exception
names (``TimeoutErrorRetries``, ``RateLimitErrorAllowedFails``, ...), so every
:class:`~feathergate.errors.GatewayError` is mapped onto one of them here, in
one table-driven place.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC
from email.utils import parsedate_to_datetime

from feathergate.errors import (
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)

__all__ = [
    "ErrorClass",
    "classify",
    "counts_against_health",
    "parse_retry_after",
    "retry_after_seconds",
]


class ErrorClass(enum.Enum):
    """LiteLLM's exception names: policy keys are ``<name>Retries`` and ``<name>AllowedFails``."""

    BAD_REQUEST = "BadRequestError"
    # Own classes, not BadRequestError: they fail the same way on every
    # deployment of a model, so only their own fallback lists can help.
    CONTEXT_WINDOW = "ContextWindowExceededError"
    CONTENT_POLICY = "ContentPolicyViolationError"
    AUTHENTICATION = "AuthenticationError"
    NOT_FOUND = "NotFoundError"
    TIMEOUT = "TimeoutError"
    RATE_LIMIT = "RateLimitError"
    INTERNAL_SERVER = "InternalServerError"
    OTHER = "APIError"

    @property
    def retries_key(self) -> str:
        return f"{self.value}Retries"

    @property
    def allowed_fails_key(self) -> str:
        return f"{self.value}AllowedFails"


_BY_STATUS = {
    400: ErrorClass.BAD_REQUEST,
    401: ErrorClass.AUTHENTICATION,
    403: ErrorClass.AUTHENTICATION,  # LiteLLM has no PermissionDenied policy key
    404: ErrorClass.NOT_FOUND,
    408: ErrorClass.TIMEOUT,
    422: ErrorClass.BAD_REQUEST,
    429: ErrorClass.RATE_LIMIT,
}

_CONTEXT_CODES = frozenset({"context_length_exceeded"})
_CONTEXT_TEXT = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long"
    r"|exceeds the maximum number of tokens",
    re.IGNORECASE,
)
_CONTENT_CODES = frozenset({"content_filter", "content_policy_violation"})
_CONTENT_TEXT = re.compile(r"content[ _-]?(management[ _-]?)?policy", re.IGNORECASE)

# Classes that speak about the deployment (down, overloaded, misconfigured)
# rather than about the request; only these count towards a cooldown unless
# ``allowed_fails_policy`` names a class explicitly.
_HEALTH_CLASSES = frozenset(
    {
        ErrorClass.AUTHENTICATION,
        ErrorClass.NOT_FOUND,
        ErrorClass.TIMEOUT,
        ErrorClass.RATE_LIMIT,
        ErrorClass.INTERNAL_SERVER,
    }
)


def _bad_request_kind(err: UpstreamStatusError) -> ErrorClass:
    code = err.error_code or ""
    if code in _CONTEXT_CODES or _CONTEXT_TEXT.search(err.message):
        return ErrorClass.CONTEXT_WINDOW
    if code in _CONTENT_CODES or _CONTENT_TEXT.search(err.message):
        return ErrorClass.CONTENT_POLICY
    return ErrorClass.BAD_REQUEST


def classify(err: GatewayError) -> ErrorClass:
    if isinstance(err, RateLimited):
        return ErrorClass.RATE_LIMIT
    if isinstance(err, UpstreamTimeout):
        return ErrorClass.TIMEOUT
    if isinstance(err, UpstreamStatusError):
        cls = _BY_STATUS.get(err.http_status)
        if cls is ErrorClass.BAD_REQUEST:
            return _bad_request_kind(err)
        if cls is not None:
            return cls
        return ErrorClass.INTERNAL_SERVER if err.http_status >= 500 else ErrorClass.OTHER
    if isinstance(err, UpstreamError):
        # Unreachable or a garbled response: LiteLLM's APIConnectionError has
        # no policy key, and InternalServerError is the closest that has one.
        return ErrorClass.INTERNAL_SERVER
    # The gateway's own errors (missing credential, unsupported parameter)
    # say nothing about the upstream.
    return ErrorClass.OTHER


def counts_against_health(err: GatewayError, cls: ErrorClass) -> bool:
    return err.retryable or cls in _HEALTH_CLASSES


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as seconds."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - wall_now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after_seconds(err: GatewayError, wall_now: float) -> float | None:
    if isinstance(err, RateLimited):
        return err.retry_after
    if isinstance(err, UpstreamStatusError):
        return parse_retry_after(err.retry_after, wall_now)
    return None
