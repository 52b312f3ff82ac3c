"""The one error tree.

Every failure that can reach a client is a :class:`GatewayError`. Anything
else that escapes a handler is a bug: the last resort of each route
(:mod:`feathergate.lastresort`) logs it once and answers an
:class:`InternalError`, never a bare 500.
Socket and TLS errors of upstream calls are converted in exactly one place,
:mod:`feathergate.upstream.http1`; httpx's (image downloads) in
:mod:`feathergate.assets`.

::

    GatewayError                       status  type
    ├── InvalidRequest                 400     invalid_request_error
    │   ├── UnsupportedParameter       400     invalid_request_error (param set)
    │   └── StoreConflict              400     a key alias, key or team id is taken
    ├── AuthenticationFailed           401     authentication_error
    ├── ModelNotFound                  404     invalid_request_error / model_not_found
    ├── RequestTimeout                 408     timeout (the body was too slow)
    ├── PayloadTooLarge                413     invalid_request_error
    ├── RateLimited                    429     rate_limit_error (+ Retry-After)
    ├── MissingCredential              500     server_error (not retryable)
    ├── InvalidUpstreamRequest         500     server_error (config HTTP cannot carry)
    ├── InternalError                  500     server_error (a bug; x-request-id,
    │                                          not retryable)
    ├── ProviderUnsupported            501     invalid_request_error
    ├── ShuttingDown                   503     server_error (grace period over)
    ├── SharedStateUnavailable         503     server_error (+ Retry-After; fail closed)
    ├── RouteError                     404/405 for paths and methods we do not serve
    ├── VirtualKeyError               LiteLLM's virtual-key errors: ``type`` as
    │   │                              LiteLLM sends it, ``code`` the status as a string
    │   ├── KeyAuthError               401     auth_error / token_not_found_in_db /
    │   │                                      expired_key (no, unknown or blocked key)
    │   ├── ModelAccessDenied          403     key_model_access_denied
    │   ├── ManagementError            401/403 a management call refused for its caller
    │   ├── NotFound                   404     not_found_error
    │   ├── BudgetExceeded             422 (budget_exceeded_status_code) budget_exceeded
    │   ├── KeyRateLimited             429     throttling_error (+ Retry-After)
    │   └── StoreUnavailable           503     service_unavailable (key not cached
    │                                          and the store unreachable; never a 401)
    └── UpstreamError                          (raised for the upstream's failures)
        ├── UpstreamStatusError        the upstream's status, body normalised
        ├── UpstreamUnreachable        502     api_connection_error
        ├── UpstreamProtocolError      502     bad_response (garbled or cut stream)
        └── UpstreamTimeout            504     timeout (kind: connect, first_token,
                                                idle, total)

``ConfigError`` stands apart: it is raised while loading a config, never
while serving.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "ConfigError",
    "GatewayError",
    "InternalError",
    "InvalidRequest",
    "InvalidUpstreamRequest",
    "KeyAuthError",
    "KeyRateLimited",
    "ManagementError",
    "MissingCredential",
    "ModelAccessDenied",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "ProviderUnsupported",
    "RateLimited",
    "RequestTimeout",
    "RouteError",
    "SharedStateUnavailable",
    "ShuttingDown",
    "StoreConflict",
    "StoreUnavailable",
    "UnsupportedParameter",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "VirtualKeyError",
    "error_body",
    "error_event",
    "error_response",
    "type_for_status",
]


class ConfigError(Exception):
    """A config file that cannot be served; the message names the key path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None
    # A stream pipe that fails part way through one read sets this to what it
    # translated before the failure: the client gets those chunks, then the error.
    ahead: bytes = b""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def http_status(self) -> int:
        return self.status

    @property
    def error_type(self) -> str:
        return self.type

    @property
    def error_code(self) -> str | None:
        return self.code

    def headers(self) -> list[tuple[bytes, bytes]]:
        return []

    @property
    def retryable(self) -> bool:
        """Whether another deployment (or a later try) may succeed."""
        return False


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"

    def __init__(self, param: str, provider: str) -> None:
        super().__init__(
            f"parameter '{param}' is not supported by {provider}; "
            "remove it or set drop_params: true",
            param=param,
        )


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"model '{model}' is not configured on this gateway", param="model")


class RequestTimeout(GatewayError):
    status = 408
    type = "timeout"
    code = "request_timeout"

    def headers(self) -> list[tuple[bytes, bytes]]:
        # The rest of the body was never read: the connection cannot carry
        # another request, and Hypercorn closes it after this answer.
        return [(b"connection", b"close")]


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode())]


class MissingCredential(GatewayError):
    """The deployment's key names an environment variable that is not set."""

    status = 500
    type = "server_error"
    code = "missing_api_key"

    def headers(self) -> list[tuple[bytes, bytes]]:
        # A retry cannot fix a config problem; tell the SDKs not to try.
        return [(b"x-should-retry", b"false")]


class InvalidUpstreamRequest(GatewayError):
    """The configuration produced a request HTTP cannot carry: a header with CR, LF or
    NUL, a URL off the deployment's origin, an ``api_base`` that is not http(s)."""

    status = 500
    type = "server_error"
    code = "invalid_upstream_request"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-should-retry", b"false")]


class InternalError(GatewayError):
    """Something escaped every other handler: a bug, reported under a request id."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, request_id: str) -> None:
        super().__init__(f"internal error (request id {request_id})")
        self.request_id = request_id

    def headers(self) -> list[tuple[bytes, bytes]]:
        # The same input meets the same bug: the SDKs' two automatic retries
        # would triple its cost and never succeed. (x-request-id is on every
        # response already: see feathergate.gateway.)
        return [(b"x-should-retry", b"false")]


class ProviderUnsupported(GatewayError):
    status = 501
    type = "invalid_request_error"
    code = "provider_not_supported"


class ShuttingDown(GatewayError):
    status = 503
    type = "server_error"
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("the gateway is shutting down and its grace period is over")


class SharedStateUnavailable(GatewayError):
    """Redis is away and ``fail_closed_rate_limit_enforcement`` forbids counting locally."""

    status = 503
    type = "server_error"
    code = "rate_limit_state_unavailable"

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__(
            "rate limits cannot be checked: the shared state (Redis) is unreachable "
            "and fail_closed_rate_limit_enforcement is on"
        )
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode())]


class RouteError(GatewayError):
    """A path or method the gateway does not serve (404, 405)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status

    @property
    def error_type(self) -> str:
        return type_for_status(self._status)


class VirtualKeyError(GatewayError):
    """A virtual-key error in LiteLLM's terms; messages name a key only as ``sk-...<last4>``
    or by hash, never the raw key."""

    def __init__(self, status: int, type_: str, message: str, *, param: str | None = None):
        super().__init__(message, param=param)
        self._status = status
        self._type = type_

    @property
    def http_status(self) -> int:
        return self._status

    @property
    def error_type(self) -> str:
        return self._type

    @property
    def error_code(self) -> str:
        return str(self._status)


class KeyAuthError(VirtualKeyError):
    """401: no key, an unknown, deleted, expired or blocked key (``type`` says which)."""

    def __init__(self, type_: str, message: str, *, param: str | None = None) -> None:
        super().__init__(401, type_, message, param=param)


class ModelAccessDenied(VirtualKeyError):
    def __init__(self, message: str) -> None:
        super().__init__(403, "key_model_access_denied", message, param="model")


class BudgetExceeded(VirtualKeyError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "budget_exceeded", message)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-should-retry", b"false")]


class KeyRateLimited(VirtualKeyError):
    def __init__(
        self, message: str, retry_after: float, headers: list[tuple[bytes, bytes]]
    ) -> None:
        super().__init__(429, "throttling_error", message)
        self.retry_after = retry_after
        self._headers = headers

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode()), *self._headers]


class StoreUnavailable(VirtualKeyError):
    """503: the key is not cached and the store cannot be asked (never a misleading 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "service_unavailable", message)


class ManagementError(VirtualKeyError):
    """A management call refused for its caller (401/403)."""


class NotFound(VirtualKeyError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "not_found_error", message)


class StoreConflict(InvalidRequest):
    """A unique constraint: the alias, key or team id is taken."""


class UpstreamError(GatewayError):
    """The upstream failed. ``retryable`` tells the router whether to try elsewhere."""


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; the body is already normalised."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        code: str | None = None,
        param: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self._status = status
        self._type = type
        self._code = code
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return self._status

    @property
    def error_type(self) -> str:
        return self._type

    @property
    def error_code(self) -> str | None:
        return self._code

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", self.retry_after.encode("latin-1"))]

    @property
    def retryable(self) -> bool:
        return self._status in (408, 409, 429) or self._status >= 500


class UpstreamUnreachable(UpstreamError):
    status = 502
    type = "api_connection_error"
    code = "upstream_unreachable"

    @property
    def retryable(self) -> bool:
        return True


class UpstreamProtocolError(UpstreamError):
    status = 502
    type = "api_error"
    code = "bad_upstream_response"

    @property
    def retryable(self) -> bool:
        # Before the first byte reached the client (the only time the router
        # retries), a garbled or cut answer says the deployment is unwell.
        return True


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"

    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(f"upstream {kind.replace('_', ' ')} deadline of {seconds:g}s expired")
        self.kind = kind

    @property
    def retryable(self) -> bool:
        return self.kind in ("connect", "first_token")


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def type_for_status(status: int) -> str:
    """The OpenAI ``error.type`` that fits an HTTP status."""
    return _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(err: GatewayError, request_id: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape; the request id beside ``error``, where Anthropic puts its own.

    Beside, not inside: the ``error`` object keeps OpenAI's four members, and
    the SDKs read the id from the ``x-request-id`` header anyway.
    """
    body: dict[str, Any] = {
        "error": {
            "message": err.message,
            "type": err.error_type,
            "param": err.param,
            "code": err.error_code,
        }
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_response(
    err: GatewayError, request_id: str | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON body of ``err`` in OpenAI's error shape."""
    body = json.dumps(error_body(err, request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *err.headers(),
    ]
    return err.http_status, headers, body


def error_event(err: GatewayError, request_id: str | None = None) -> bytes:
    """``err`` as one SSE event; the openai SDK raises ``APIError`` on it."""
    return b"data: " + json.dumps(error_body(err, request_id)).encode() + b"\n\n"
