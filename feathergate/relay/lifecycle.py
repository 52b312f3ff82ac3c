"""The request around the relay: its body, its state, shutdown's drain, error replies."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from feathergate import metrics
from feathergate.config import Deployment
from feathergate.envelopes import OPENAI, ErrorEnvelope
from feathergate.errors import GatewayError, PayloadTooLarge, RequestTimeout
from feathergate.operations.base import ClientRequest
from feathergate.providers.base import Asset, Usage
from feathergate.typing import ASGIReceive, ASGISend, OpenBody, ResponseBody

__all__ = [
    "AttemptObserver",
    "ClientDisconnected",
    "Drain",
    "Exchange",
    "read_body",
    "send_error",
]


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


class ClientGone(Exception):
    """What an attempt ended with when its stream's client left or stopped reading.

    Never raised: the pump notices and ends the attempt quietly, and this is
    what the attempt's observer is told, as a cancelled attempt.
    """


class Drain:
    """The relays in flight, so that shutdown can end them after its grace period."""

    def __init__(self) -> None:
        self._scopes: set[trio.CancelScope] = set()
        self._empty = trio.Event()
        self._empty.set()
        self.cancelled = False

    @contextmanager
    def scope(self) -> Iterator[trio.CancelScope]:
        with trio.CancelScope() as scope:
            if self.cancelled:
                scope.cancel()
            if not self._scopes:  # empty -> busy: waiters on the old event stay valid
                self._empty = trio.Event()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)
                if not self._scopes:
                    self._empty.set()

    async def wait_empty(self) -> None:
        """Return once no relay is in flight."""
        while self._scopes:
            await self._empty.wait()

    def cancel_all(self) -> None:
        self.cancelled = True
        for scope in list(self._scopes):
            scope.cancel()

    def __len__(self) -> int:
        return len(self._scopes)


class AttemptObserver(Protocol):
    """Told when each upstream attempt starts and ends (tracing: one span per attempt).

    ``attempt_started`` may set ``ex.traceparent``, which goes upstream with
    the attempt; ``attempt_ended`` reads the attempt's outcome from ``ex``
    (``upstream_status``, ``tokens``, ``stream_error``) and ``error``.
    """

    def attempt_started(self, ex: Exchange, dep: Deployment) -> None: ...

    def attempt_ended(self, ex: Exchange, dep: Deployment, error: BaseException | None) -> None: ...


@dataclass(slots=True)
class Exchange:
    """One client request, across every upstream attempt made for it."""

    request: ClientRequest
    started: float
    drain: Drain
    stall_timeout: float = 30.0  # how long a client may leave a stream unread
    envelope: ErrorEnvelope = OPENAI  # the endpoint's error shape
    request_id: str | None = None  # on every response, upstream request and log line
    observer: AttemptObserver | None = None
    trace: Any = None  # the observer's own state for this request (its span)
    phase: str = "prepare"  # for the disconnect metric
    ended: str | None = None  # how it ended when not by completing: the access log's "end"
    error: GatewayError | None = None  # the error the client got, as a status or an event
    status: int = 0  # the HTTP status sent; 499 when the client left
    finishing: bool = False  # the last message is on its way: nothing left to cancel
    response_started: bool = False  # bytes reached the client: no retry, no HTTP error
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    assets: dict[str, Asset] = field(default_factory=dict)  # images downloaded, for every attempt
    id_header: list[tuple[bytes, bytes]] = field(default_factory=list)  # x-request-id
    # Virtual keys: (deployment id, a JSON answer's usage or None for a stream's
    # head) -> the answer's x-litellm-* headers.
    meter: Callable[[str, Usage | None], list[tuple[bytes, bytes]]] | None = None
    open_body: OpenBody | None = None  # the server's direct body writes, when it has them
    body: ResponseBody | None = None  # a started stream's body, once past its first chunk
    # Per attempt:
    deployment: Deployment | None = None
    traceparent: str | None = None  # W3C trace context for the attempt's upstream request
    upstream_sent: float = 0.0
    upstream_status: int | None = None
    first_byte: float | None = None
    tokens: Usage | None = None
    stream_error: GatewayError | None = None  # a failure after the response started
    chunks: int = 0  # chunks streamed: what a client that left is billed for


def deadline_passed(ex: Exchange, kind: str) -> None:
    """A deadline ended the exchange (``connect``, ..., ``client_stall``): counted and recorded."""
    metrics.DEADLINE_EXPIRIES.labels(kind).inc()
    ex.ended = f"deadline:{kind}"


def client_left(ex: Exchange) -> None:
    """The client went away before the end: counted once, however it was noticed."""
    if ex.status == 499:
        return
    metrics.DISCONNECTS.labels(ex.phase).inc()
    ex.ended = f"client_left:{ex.phase}"
    ex.status = 499


async def read_body(receive: ASGIReceive, limit: int, seconds: float, idle: float | None) -> bytes:
    """The whole request body, at most ``limit`` bytes, within ``seconds``.

    And with no pause longer than ``idle`` between two of its pieces: a client
    that announced more than it sends (a lying ``content-length``, a stalled
    upload) holds the connection that long, not the whole ``seconds``. One
    cancel scope whose deadline each piece moves.
    """
    parts: list[bytes] = []
    size = 0
    total_at = trio.current_time() + seconds
    pause = idle or math.inf
    with trio.CancelScope(deadline=min(total_at, trio.current_time() + pause)) as scope:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                break
            scope.deadline = min(total_at, trio.current_time() + pause)
    if scope.cancelled_caught:
        if trio.current_time() >= total_at:
            raise RequestTimeout(f"request body was not received within {seconds:g}s")
        raise RequestTimeout(f"request body stopped arriving: nothing for {pause:g}s")
    return b"".join(parts)


async def send_error(
    send: ASGISend,
    err: GatewayError,
    extra: list[tuple[bytes, bytes]],
    envelope: ErrorEnvelope = OPENAI,
    request_id: str | None = None,
) -> int:
    status, headers, body = envelope.response(err, request_id)
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status
