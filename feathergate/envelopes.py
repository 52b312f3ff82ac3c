"""Error envelopes: how a :class:`GatewayError` is written to a client, per front door.

Every endpoint names its envelope in :mod:`feathergate.endpoints`; the relay
writes errors through it both before the response started (a real status and
a JSON body) and after (one last SSE event), so one error tree serves every
API the gateway speaks:

============  ==========================================================  ======================
envelope      JSON body                                                   mid-stream
============  ==========================================================  ======================
OpenAI        ``{"error": {"message", "type", "param", "code"}}``          ``data: {"error": ...}``
Anthropic     ``{"type": "error", "error": {"type", "message"}}``          ``event: error`` frame
============  ==========================================================  ======================

The Anthropic ``error.type`` follows the HTTP status (INGRESS.md §4.5): the
anthropic SDK picks its exception from the status, and Claude Code shows the
type, so both must agree. The status itself is the same in both envelopes.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from feathergate.errors import GatewayError, error_event, error_response

__all__ = [
    "ANTHROPIC",
    "OPENAI",
    "AnthropicEnvelope",
    "ErrorEnvelope",
    "OpenAIEnvelope",
    "anthropic_error_type",
]

Headers = list[tuple[bytes, bytes]]


class ErrorEnvelope(Protocol):
    def response(
        self, err: GatewayError, request_id: str | None = None
    ) -> tuple[int, Headers, bytes]:
        """Status, headers (content type and length first) and body of an error reply."""
        ...

    def event(self, err: GatewayError, request_id: str | None = None) -> bytes:
        """``err`` as the last event of a stream that already started."""
        ...


class OpenAIEnvelope:
    """PROTOCOLS.md §1.4 and §1.3 rule 6; the openai SDK raises on both."""

    def response(
        self, err: GatewayError, request_id: str | None = None
    ) -> tuple[int, Headers, bytes]:
        return error_response(err, request_id)

    def event(self, err: GatewayError, request_id: str | None = None) -> bytes:
        return error_event(err, request_id)


# HTTP status -> Anthropic error.type (INGRESS.md §4.5, PROTOCOLS.md §2.5).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _anthropic_body(err: GatewayError, request_id: str | None) -> dict[str, Any]:
    error = {"type": anthropic_error_type(err.http_status), "message": err.message}
    body: dict[str, Any] = {"type": "error", "error": error}
    if request_id is not None:
        body["request_id"] = request_id  # where Anthropic's own errors carry theirs
    return body


class AnthropicEnvelope:
    """The Messages API's error body, and its ``event: error`` frame (INGRESS.md §4.4-4.5).

    The ``event:`` line is mandatory: the anthropic SDK dispatches on the event
    name and silently drops a frame without one, error frames included.
    """

    def response(
        self, err: GatewayError, request_id: str | None = None
    ) -> tuple[int, Headers, bytes]:
        body = json.dumps(_anthropic_body(err, request_id)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *err.headers(),
        ]
        return err.http_status, headers, body

    def event(self, err: GatewayError, request_id: str | None = None) -> bytes:
        data = json.dumps(_anthropic_body(err, request_id)).encode()
        return b"event: error\ndata: " + data + b"\n\n"


OPENAI = OpenAIEnvelope()
ANTHROPIC = AnthropicEnvelope()
