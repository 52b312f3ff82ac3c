"""What the relay asks of an operation: one call to one deployment, in bytes.

An *operation* is what an endpoint asks a deployment to do ("chat", "messages",
"count_tokens", ...), implemented for one adapter. It is the relay's whole
view of a provider: it builds the upstream request from the client's parsed
request, and turns the upstream's answer into the bytes the client gets, in
the client's API, not the upstream's. Operations do no I/O; the relay does
the call, the deadlines and the cancellation.

Pipeline of a stream, left to right::

    upstream bytes -> operation.stream(...).feed(bytes) -> client bytes

Inside, a translating operation runs ``SSEDecoder -> provider translator ->
encoder``; a passthrough one relays events as they are.

One capability is optional: an operation that :class:`FansOut` turns one
client request into several upstream calls (Gemini embeds at most 100 inputs
per call) and merges their answers, in order. It still does no I/O: the relay
makes the calls, concurrently, under the request's deadlines and cancel
scope, and a failure of one cancels the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from feathergate.errors import UpstreamStatusError
from feathergate.providers.base import CallContext, UpstreamRequest, Usage

__all__ = ["Answer", "ClientRequest", "FansOut", "Operation", "StreamPipe"]


class ClientRequest(Protocol):
    """A request as an ingress codec parsed it; operations may read more of the concrete type."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def include_usage(self) -> bool: ...

    @property
    def size(self) -> int:
        """Bytes of the raw body: what decides whether work on it leaves the event loop."""
        ...

    @property
    def json_mode(self) -> bool:
        """The client asked for JSON (``response_format``); Anthropic's JSON tool needs to know."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole (non-streamed) answer, ready for the client."""

    payload: bytes
    # As the upstream counted them: tpm, the access log, spans, and spend (virtual keys).
    tokens: Usage | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()  # extra response headers


class StreamPipe(Protocol):
    """Synchronous, all state on the object; testable by splitting input at every byte.

    ``feed`` and ``finish`` raise :class:`feathergate.errors.UpstreamError` for an
    error inside the stream or a stream cut short; the relay then ends the
    client's stream with the endpoint's error event.
    """

    @property
    def tokens(self) -> Usage | None:
        """Input and output tokens, once the upstream reported them."""
        ...

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes:
        """What ends the client's stream (``data: [DONE]``, ``message_stop``, ...)."""
        ...


class Operation(Protocol):
    def build_request(self, request: Any, ctx: CallContext) -> UpstreamRequest:
        """Raise :class:`feathergate.errors.InvalidRequest` for what cannot be sent."""
        ...

    def parse_response(self, body: bytes, request: Any, ctx: CallContext) -> Answer: ...

    def stream(self, request: Any, ctx: CallContext) -> StreamPipe: ...

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError: ...


class FansOut(Protocol):
    """Optional: one client request as several upstream calls, never streamed."""

    concurrency: int  # how many of the calls may be in flight at once

    def build_requests(self, request: Any, ctx: CallContext) -> list[UpstreamRequest]:
        """Raise :class:`feathergate.errors.InvalidRequest` for what cannot be sent."""
        ...

    def merge(self, bodies: list[bytes], request: Any, ctx: CallContext) -> Answer:
        """The answers of :meth:`build_requests`' calls, in the same order, as one."""
        ...
