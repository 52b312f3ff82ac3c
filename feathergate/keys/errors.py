"""The errors of keys, teams and budgets, in LiteLLM's ``type`` values.

They extend :class:`feathergate.errors.GatewayError`, so the gateway and the
admin routes answer them in OpenAI's envelope like any other; ``code`` is the
status as a string, as LiteLLM sends it. Messages name keys only as
``sk-...<last4>`` or by hash, never the raw key.
"""

from __future__ import annotations

from feathergate.errors import GatewayError, InvalidRequest

__all__ = [
    "BudgetExceeded",
    "KeyAuthError",
    "KeyRateLimited",
    "ManagementError",
    "ModelAccessDenied",
    "NotFound",
    "StoreConflict",
    "StoreUnavailable",
]


class _LiteLLMError(GatewayError):
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


class KeyAuthError(_LiteLLMError):
    """401: no key, an unknown, deleted, expired or blocked key (``type`` says which)."""

    def __init__(self, type_: str, message: str, *, param: str | None = None) -> None:
        super().__init__(401, type_, message, param=param)


class ModelAccessDenied(_LiteLLMError):
    def __init__(self, message: str) -> None:
        super().__init__(403, "key_model_access_denied", message, param="model")


class BudgetExceeded(_LiteLLMError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "budget_exceeded", message)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-should-retry", b"false")]


class KeyRateLimited(_LiteLLMError):
    def __init__(
        self, message: str, retry_after: float, headers: list[tuple[bytes, bytes]]
    ) -> None:
        super().__init__(429, "throttling_error", message)
        self.retry_after = retry_after
        self._headers = headers

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", str(max(1, round(self.retry_after))).encode()), *self._headers]


class StoreUnavailable(_LiteLLMError):
    """503: the key is not cached and the store cannot be asked (never a misleading 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "service_unavailable", message)


class ManagementError(_LiteLLMError):
    """A management call refused for its caller (401/403)."""


class NotFound(_LiteLLMError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "not_found_error", message)


class StoreConflict(InvalidRequest):
    """A unique constraint: the alias, key or team id is taken."""
