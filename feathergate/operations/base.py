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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from feathergate.errors import UpstreamStatusError
from feathergate.providers.base import CallContext, UpstreamRequest

__all__ = ["Answer", "ClientRequest", "Operation", "StreamPipe"]


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
    tokens: int | None = None  # prompt + completion as the upstream counted them, for tpm
    # OpenAI's usage shape (prompt/completion tokens, cached and reasoning details),
    # whatever the API: what virtual keys bill.
    usage: Mapping[str, Any] | None = None


class StreamPipe(Protocol):
    """Synchronous, all state on the object; testable by splitting input at every byte.

    ``feed`` and ``finish`` raise :class:`feathergate.errors.UpstreamError` for an
    error inside the stream or a stream cut short; the relay then ends the
    client's stream with the endpoint's error event.
    """

    @property
    def tokens(self) -> int | None:
        """Prompt + completion tokens, once the upstream reported them."""
        ...

    @property
    def usage(self) -> Mapping[str, Any] | None:
        """The upstream's usage in OpenAI's shape (as :attr:`Answer.usage`), once reported."""
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
