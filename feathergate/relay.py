"""The relay: the one place that owns cancellation and deadlines.

Design note
-----------
Each chat request runs in one Trio nursery with two children:

* a **disconnect watcher** that awaits ASGI ``receive()``; Hypercorn answers
  it with ``http.disconnect`` when the client's socket closes (FIN or RST),
  and the watcher cancels the nursery. Whatever the relay was awaiting at that
  moment (the connect, the upstream's headers, a body read) is cancelled, and
  leaving the ``httpx`` response context closes the upstream socket: nobody
  pays for tokens nobody reads.
* the **relay** itself. For a stream it is two tasks joined by a small
  memory channel: a *reader* (upstream bytes -> SSE decoder -> provider
  translator -> encoded chunks) and a *writer* (chunks -> client). Hypercorn's
  writes are shielded and have no timeout, so a client that stops reading
  would otherwise stall the reader and pin the upstream; with the channel in
  between the reader's own deadlines keep running and it lets go of the
  upstream on time. (``TCP_USER_TIMEOUT`` on accepted sockets, set in
  :mod:`feathergate.server`, frees the stuck client side.)

Every ``await`` that waits on someone else has its own deadline, and a cancel
scope never spans a ``yield``:

=============  ==============================================================
connect        TCP/TLS connect to the upstream (httpx's connect timeout)
first_token    request sent -> first upstream body bytes (headers included)
idle           gap between two upstream reads of a stream (LiteLLM's
               ``stream_timeout``)
total          the whole upstream exchange (LiteLLM's ``timeout``), and the
               longest a stream may wait on a client that does not read
=============  ==============================================================

A deadline that expires before any byte reached the client is an HTTP 504 in
OpenAI's error shape (and retryable by the router when it is ``connect`` or
``first_token``); after that it is an SSE error event and a clean end of the
stream (PROTOCOLS.md §1.3 rule 6). Shutdown works the same way: each relay
registers a *drain* scope that the server cancels when the grace period is
over, and the client gets a 503 or an SSE error event.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import httpx
import trio

from feathergate import metrics
from feathergate.assets import fetch_assets
from feathergate.config import Deadlines
from feathergate.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    ShuttingDown,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
    error_event,
    error_response,
)
from feathergate.providers.base import (
    Asset,
    CallContext,
    Chunk,
    Provider,
    StreamTranslator,
    UpstreamRequest,
)
from feathergate.sse import DONE, SSEDecoder, encode_data
from feathergate.typing import ASGIReceive, ASGISend

__all__ = [
    "Call",
    "ClientDisconnected",
    "Drain",
    "read_body",
    "relay",
    "send_error",
    "upstream_errors",
]

T = TypeVar("T")

_CHANNEL_SIZE = 32
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


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
            self._scopes.add(scope)
            self._empty = trio.Event()
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


@dataclass(slots=True)
class Call:
    """One chat request, from the moment its body is parsed."""

    provider: Provider
    ctx: CallContext
    body: dict[str, Any]
    client: httpx.AsyncClient
    assets_client: httpx.AsyncClient
    drain: Drain
    started: float
    stall_timeout: float = 30.0  # how long a client may leave a stream unread
    phase: str = "prepare"
    status: int = 0
    finishing: bool = False  # the last message is on its way: nothing left to cancel
    response_started: bool = False
    upstream_sent: float = 0.0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def deadlines(self) -> Deadlines:
        return self.ctx.deployment.deadlines


@contextmanager
def upstream_errors(deadlines: Deadlines) -> Iterator[None]:
    """The one place where httpx's exceptions become :class:`GatewayError` s."""
    try:
        yield
    except httpx.ConnectTimeout:
        raise UpstreamTimeout("connect", deadlines.connect or 0) from None
    except (httpx.ConnectError, httpx.PoolTimeout) as exc:
        raise UpstreamUnreachable(f"cannot connect to the upstream: {_reason(exc)}") from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise UpstreamProtocolError(f"upstream connection failed: {_reason(exc)}") from None
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("total", deadlines.total or 0) from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnreachable(f"upstream request failed: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    # httpx messages can carry the URL but never headers; keep them short.
    return (str(exc) or type(exc).__name__)[:200]


async def read_body(receive: ASGIReceive, limit: int, seconds: float) -> bytes:
    """The whole request body, at most ``limit`` bytes, within ``seconds``."""
    parts: list[bytes] = []
    size = 0
    with trio.move_on_after(seconds) as scope:
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
    if scope.cancelled_caught:
        raise InvalidRequest(f"request body was not received within {seconds:g}s")
    return b"".join(parts)


async def send_error(send: ASGISend, err: GatewayError, extra: list[tuple[bytes, bytes]]) -> int:
    status, headers, body = error_response(err)
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


async def relay(call: Call, receive: ASGIReceive, send: ASGISend) -> int:
    """Serve ``call`` to the client; returns the HTTP status sent (499: client left)."""
    metrics.INFLIGHT.inc()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, call)
            try:
                with call.drain.scope() as drain:
                    await _serve(call, send)
                if drain.cancelled_caught:
                    await _end(call, send, ShuttingDown())
            except GatewayError as err:
                if isinstance(err, UpstreamTimeout):
                    metrics.DEADLINE_EXPIRIES.labels(err.kind).inc()
                await _end(call, send, err)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        metrics.INFLIGHT.dec()
    return call.status


async def _end(call: Call, send: ASGISend, err: GatewayError) -> None:
    """Answer ``err``: as an HTTP error while nothing was sent, else as the last SSE event."""
    call.finishing = True
    if call.response_started:
        await send({"type": "http.response.body", "body": error_event(err), "more_body": False})
    else:
        call.status = await send_error(send, err, call.headers)


async def _watch_disconnect(receive: ASGIReceive, scope: trio.CancelScope, call: Call) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not call.finishing:
                metrics.DISCONNECTS.labels(call.phase).inc()
                call.status = 499
                scope.cancel()
            return


async def _serve(call: Call, send: ASGISend) -> None:
    provider, ctx = call.provider, call.ctx
    total_at = call.started + (call.deadlines.total or math.inf)
    fetch = getattr(provider, "assets_to_fetch", None)
    if fetch is not None:
        urls = fetch(call.body)
        if urls:
            call.phase = "assets"
            with trio.move_on_at(total_at) as scope:
                assets = await fetch_assets(
                    call.assets_client, urls, call.deadlines.connect or 30.0
                )
            if scope.cancelled_caught:
                raise UpstreamTimeout("total", call.deadlines.total or 0)
            ctx = call.ctx = _with_assets(ctx, assets)
    request = provider.build_request(call.body, ctx)
    if ctx.stream:
        await _stream(call, request, send, total_at)
    else:
        await _complete(call, request, send, total_at)


def _with_assets(ctx: CallContext, assets: dict[str, Asset]) -> CallContext:
    return replace(ctx, assets=assets)


async def _trace(call: Call, event: str, info: object) -> None:
    # httpcore reports each step; the disconnect metric wants the phase.
    if event == "http11.send_request_headers.started":
        call.phase = "upstream_headers"


def _httpx_request(call: Call, request: UpstreamRequest) -> httpx.Request:
    connect = call.deadlines.connect
    return call.client.build_request(
        request.method,
        request.url,
        headers=request.headers,
        content=request.content,
        timeout=httpx.Timeout(None, connect=connect),
        extensions={"trace": partial(_trace, call)},
    )


async def _timed(awaitable: Any, deadline: float, total_at: float, kind: str, call: Call) -> T:
    """Await one step under ``min(deadline, total)``; raise the deadline that expired."""
    with trio.move_on_at(min(deadline, total_at)) as scope:
        with upstream_errors(call.deadlines):
            result: T = await awaitable
        return result
    assert scope.cancelled_caught
    if total_at <= deadline:
        raise UpstreamTimeout("total", call.deadlines.total or 0)
    seconds = {"first_token": call.deadlines.first_token, "idle": call.deadlines.idle}[kind]
    raise UpstreamTimeout(kind, seconds or 0)


def _first_token_at(call: Call) -> float:
    first = call.deadlines.first_token
    return trio.current_time() + first if first else math.inf


async def _open(
    call: Call, request: UpstreamRequest, total_at: float, first_at: float
) -> httpx.Response:
    call.phase = "connect"
    call.upstream_sent = trio.current_time()
    response: httpx.Response = await _timed(
        call.client.send(_httpx_request(call, request), stream=True),
        first_at,
        total_at,
        "first_token",
        call,
    )
    if response.status_code >= 400:
        try:
            body: bytes = await _timed(response.aread(), first_at, total_at, "first_token", call)
        finally:
            await response.aclose()
        raise call.provider.map_error(response.status_code, response.headers, body)
    return response


async def _complete(call: Call, request: UpstreamRequest, send: ASGISend, total_at: float) -> None:
    first_at = _first_token_at(call)
    response = await _open(call, request, total_at, first_at)
    try:
        call.phase = "response_body"
        body: bytes = await _timed(response.aread(), first_at, total_at, "first_token", call)
    finally:
        await response.aclose()
    upstream_done = trio.current_time()
    payload = json.dumps(call.provider.parse_response(body, call.ctx)).encode()
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *call.headers]
    call.status = 200
    call.phase = "sending"
    with trio.CancelScope(shield=True):  # a JSON body is sent whole or not at all
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        call.response_started = True
        call.finishing = True
        await send({"type": "http.response.body", "body": payload, "more_body": False})
    now = trio.current_time()
    metrics.ADDED_LATENCY.observe((call.upstream_sent - call.started) + (now - upstream_done))


def _encode(chunks: list[Chunk]) -> bytes:
    return b"".join(encode_data(chunk) for chunk in chunks)


async def _stream(call: Call, request: UpstreamRequest, send: ASGISend, total_at: float) -> None:
    translator = call.provider.stream_translator(call.ctx)
    decoder = SSEDecoder()
    first_at = _first_token_at(call)
    response = await _open(call, request, total_at, first_at)
    try:
        raw = response.aiter_raw()
        call.phase = "first_token"
        # Nothing is sent before the first translated chunk: until then every
        # failure is still a plain HTTP error, and the router may try elsewhere.
        first = b""
        ended = False
        while not first and not ended:
            data: bytes | None = await _timed(_next(raw), first_at, total_at, "first_token", call)
            if data is None:
                ended = True
                first = _encode([c for e in decoder.finish() for c in translator.feed(e)])
                first += _encode(translator.finish()) + DONE
            else:
                first = _encode([c for e in decoder.feed(data) for c in translator.feed(e)])
        upstream_first = trio.current_time()
        call.status = 200
        call.phase = "streaming"
        sender, receiver = trio.open_memory_channel[bytes](_CHANNEL_SIZE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, send, receiver, call)
            async with sender:
                sender.send_nowait(first)
                metrics.ADDED_LATENCY.observe(
                    (call.upstream_sent - call.started) + (trio.current_time() - upstream_first)
                )
                tail = (
                    None if ended else await _pump(call, raw, decoder, translator, sender, total_at)
                )
                # Let go of the upstream before waiting on the client.
                await response.aclose()
                delivered = ended
                if tail is not None:
                    with trio.move_on_after(call.stall_timeout):
                        await sender.send(tail)
                        delivered = True
                if not delivered:  # the client stopped reading: stop writing to it
                    nursery.cancel_scope.cancel()
    finally:
        await response.aclose()


async def _next(raw: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await raw.__anext__()
    except StopAsyncIteration:
        return None


async def _pump(
    call: Call,
    raw: AsyncIterator[bytes],
    decoder: SSEDecoder,
    translator: StreamTranslator,
    sender: trio.MemorySendChannel[bytes],
    total_at: float,
) -> bytes | None:
    """Upstream -> channel until the end; returns the stream's last event.

    ``None`` means the client stopped reading: the channel stayed full for
    ``stall_timeout`` (or past the total deadline), and nothing more can reach it.
    """
    idle = call.deadlines.idle
    try:
        while True:
            idle_at = trio.current_time() + idle if idle else math.inf
            data: bytes | None = await _timed(_next(raw), idle_at, total_at, "idle", call)
            if data is None:
                chunks = [c for e in decoder.finish() for c in translator.feed(e)]
                return _encode(chunks + translator.finish()) + DONE
            out = _encode([c for e in decoder.feed(data) for c in translator.feed(e)])
            if out:
                with trio.move_on_at(min(total_at, trio.current_time() + call.stall_timeout)):
                    await sender.send(out)
                    continue
                metrics.DEADLINE_EXPIRIES.labels("client_stall").inc()
                return None
    except GatewayError as err:
        if isinstance(err, UpstreamTimeout):
            metrics.DEADLINE_EXPIRIES.labels(err.kind).inc()
        return error_event(err)


async def _write(send: ASGISend, receiver: trio.MemoryReceiveChannel[bytes], call: Call) -> None:
    async with receiver:
        headers = [*_SSE_HEADERS, *call.headers]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        call.response_started = True
        async for data in receiver:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        call.finishing = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
