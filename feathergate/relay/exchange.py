"""One upstream attempt: the HTTP call, its deadlines, and the streaming pump.

An attempt is one upstream call, or, for an operation that fans out
(:class:`~feathergate.operations.base.FansOut`), several calls made at once
in a nursery of their own inside the request's, at most ``concurrency`` of
them in flight. Each call has its own ``connect`` and ``first_token``
deadlines from the moment it starts; ``total`` covers them all together. The
first call to fail cancels the others (their connections are closed, not
returned to the pool) and its error is the attempt's, so the router retries
or falls back the whole request; a client that goes away cancels them all.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar, cast

import trio

from feathergate import metrics, offload
from feathergate.assets import ImageFetcher, fetch_assets
from feathergate.config import Deadlines
from feathergate.errors import GatewayError, UpstreamTimeout
from feathergate.operations.base import Answer, FansOut, Operation, StreamPipe
from feathergate.providers.base import CallContext, UpstreamRequest, Usage
from feathergate.relay.lifecycle import Exchange, client_left, deadline_passed
from feathergate.typing import ASGISend, ResponseBody
from feathergate.upstream import Transport, UpstreamResponse

__all__ = ["Attempt", "finish_stream", "run_attempt"]

T = TypeVar("T")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Attempt:
    """What one try against one deployment needs."""

    operation: Operation
    ctx: CallContext
    client: Transport
    assets_client: ImageFetcher

    @property
    def deadlines(self) -> Deadlines:
        return self.ctx.deployment.deadlines


async def run_attempt(ex: Exchange, attempt: Attempt, send: ASGISend) -> None:
    """Call the upstream once and relay its answer.

    Raises :class:`GatewayError` while nothing was sent to the client (the
    caller may retry); after that, a failure is the stream's last event and is
    left in ``ex.stream_error``.
    """
    started = trio.current_time()
    total_at = started + (attempt.deadlines.total or math.inf)
    ctx = attempt.ctx
    fetch = getattr(attempt.operation, "assets_to_fetch", None)
    size = ex.request.size
    urls = await offload.run(partial(fetch, ex.request), size=size) if fetch else None
    if urls:
        # Kept on the exchange: a retry or a fallback does not download again.
        missing = [url for url in urls if url not in ex.assets]
        if missing:
            ex.phase = "assets"
            with trio.move_on_at(total_at) as scope:
                fetched = await fetch_assets(
                    attempt.assets_client, missing, attempt.deadlines.connect or 30.0
                )
            if scope.cancelled_caught:
                raise UpstreamTimeout("total", attempt.deadlines.total or 0)
            ex.assets.update(fetched)
        ctx = attempt.ctx = replace(ctx, assets={url: ex.assets[url] for url in urls})
    fans_out: FansOut | None = None if ctx.stream else _fans_out(attempt.operation)
    if fans_out is not None:
        build_all = partial(fans_out.build_requests, ex.request, ctx)
        requests = await offload.run(build_all, size=size)
        await _complete_all(ex, attempt, fans_out, requests, send, total_at)
        return
    build = partial(attempt.operation.build_request, ex.request, ctx)
    request = _trace_headers(ex, await offload.run(build, size=size))
    if ctx.stream:
        await _stream(ex, attempt, request, send, total_at)
    else:
        await _complete(ex, attempt, request, send, total_at)


def _trace_headers(ex: Exchange, request: UpstreamRequest) -> UpstreamRequest:
    """The request id and trace context go upstream; providers stay unaware of both.

    ``x-request-id`` for servers that log it (vLLM honours it), OpenAI's
    ``x-client-request-id`` (logged on their side, for support), and W3C
    ``traceparent`` when tracing is on. A configured header of the same name wins.
    """
    headers = request.headers
    taken = {name.lower() for name, _ in headers}
    extra = []
    if ex.request_id is not None:
        extra = [
            (n, ex.request_id) for n in ("x-request-id", "x-client-request-id") if n not in taken
        ]
    if ex.traceparent is not None and "traceparent" not in taken:
        extra.append(("traceparent", ex.traceparent))
    return replace(request, headers=[*headers, *extra]) if extra else request


def _sent(ex: Exchange) -> None:
    ex.phase = "upstream_headers"  # the request is out; the upstream has it


async def _timed(
    awaitable: Any, deadline: float, total_at: float, kind: str, deadlines: Deadlines
) -> T:
    """Await one step under ``min(deadline, total)``; raise the deadline that expired."""
    with trio.move_on_at(min(deadline, total_at)):
        result: T = await awaitable
        return result
    if total_at <= deadline:
        raise UpstreamTimeout("total", deadlines.total or 0)
    seconds = deadlines.first_token if kind == "first_token" else deadlines.idle
    raise UpstreamTimeout(kind, seconds or 0)


async def _open(
    ex: Exchange, attempt: Attempt, request: UpstreamRequest, total_at: float, first_at: float
) -> UpstreamResponse:
    ex.phase = "connect"
    ex.upstream_sent = trio.current_time()
    deadlines = attempt.deadlines
    sending = attempt.client.send(
        request.method,
        request.url,
        request.headers,
        request.content,
        connect_timeout=deadlines.connect,
        on_sent=partial(_sent, ex),
    )
    response: UpstreamResponse = await _timed(sending, first_at, total_at, "first_token", deadlines)
    ex.upstream_status = response.status
    if response.status >= 400:
        try:
            body: bytes = await _timed(
                response.read(), first_at, total_at, "first_token", deadlines
            )
        finally:
            response.close()
        raise attempt.operation.map_error(response.status, response.headers, body)
    return response


def _first_token_at(deadlines: Deadlines) -> float:
    first = deadlines.first_token
    return trio.current_time() + first if first else math.inf


async def _fetch(
    ex: Exchange, attempt: Attempt, request: UpstreamRequest, total_at: float
) -> bytes:
    """One whole upstream answer (2xx), read under its deadlines."""
    first_at = _first_token_at(attempt.deadlines)
    response = await _open(ex, attempt, request, total_at, first_at)
    try:
        ex.phase = "response_body"
        body: bytes = await _timed(
            response.read(), first_at, total_at, "first_token", attempt.deadlines
        )
    finally:
        response.close()
    return body


async def _complete(
    ex: Exchange, attempt: Attempt, request: UpstreamRequest, send: ASGISend, total_at: float
) -> None:
    body = await _fetch(ex, attempt, request, total_at)
    upstream_done = ex.first_byte = trio.current_time()
    answer = attempt.operation.parse_response(body, ex.request, attempt.ctx)
    await _answer(ex, answer, send, upstream_done)


def _fans_out(operation: Operation) -> FansOut | None:
    return cast(FansOut, operation) if hasattr(operation, "build_requests") else None


async def _complete_all(
    ex: Exchange,
    attempt: Attempt,
    fans_out: FansOut,
    requests: list[UpstreamRequest],
    send: ASGISend,
    total_at: float,
) -> None:
    bodies: list[bytes] = [b""] * len(requests)
    limiter = trio.CapacityLimiter(max(1, fans_out.concurrency))
    first_sent = trio.current_time()

    async def call(i: int) -> None:
        async with limiter:
            bodies[i] = await _fetch(ex, attempt, requests[i], total_at)

    try:
        async with trio.open_nursery() as nursery:
            for i in range(len(requests)):
                nursery.start_soon(call, i)
    except BaseExceptionGroup as group:
        failed, other = group.split(GatewayError)
        if other is not None:  # cancelled from outside (the client left): that wins
            raise other from None
        assert failed is not None
        raise _first_error(failed) from None
    ex.upstream_sent = first_sent  # for the added-latency metric: the first call's start
    upstream_done = ex.first_byte = trio.current_time()
    answer = fans_out.merge(bodies, ex.request, attempt.ctx)
    await _answer(ex, answer, send, upstream_done)


def _first_error(group: BaseExceptionGroup[GatewayError]) -> GatewayError:
    """The first call's error to fail; others failed at the same moment are dropped."""
    first = group.exceptions[0]
    return first if isinstance(first, GatewayError) else _first_error(first)


async def _answer(ex: Exchange, answer: Answer, send: ASGISend, upstream_done: float) -> None:
    ex.tokens = answer.tokens
    payload = answer.payload
    headers = [
        *_JSON_HEADERS,
        (b"content-length", str(len(payload)).encode()),
        *answer.headers,
        *ex.headers,
    ]
    if ex.meter is not None and ex.deployment is not None:
        # A JSON answer always says its cost: 0 when the upstream reported no usage.
        headers += ex.meter(ex.deployment.id, answer.tokens or Usage(0, 0))
    ex.status = 200
    ex.phase = "sending"
    with trio.CancelScope(shield=True):  # a JSON body is sent whole or not at all
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ex.response_started = True
        ex.finishing = True
        await send({"type": "http.response.body", "body": payload, "more_body": False})
    now = trio.current_time()
    metrics.ADDED_LATENCY.observe((ex.upstream_sent - ex.started) + (now - upstream_done))


async def _stream(
    ex: Exchange, attempt: Attempt, request: UpstreamRequest, send: ASGISend, total_at: float
) -> None:
    pipe = attempt.operation.stream(ex.request, attempt.ctx)
    first_at = _first_token_at(attempt.deadlines)
    response = await _open(ex, attempt, request, total_at, first_at)
    try:
        ex.phase = "first_token"
        # Nothing is sent before the first translated chunk: until then every
        # failure is still a plain HTTP error, and the router may try elsewhere.
        first = b""
        ended = False
        while not first and not ended:
            data: bytes | None = await _timed(
                response.next_chunk(), first_at, total_at, "first_token", attempt.deadlines
            )
            try:
                first = pipe.finish() if data is None else pipe.feed(data)
            except GatewayError as err:
                if not err.ahead:
                    raise  # nothing for the client yet: a plain HTTP error, retryable
                first, data = err.ahead + _stream_failed(ex, err), None
            ended = data is None
        upstream_first = ex.first_byte = trio.current_time()
        ex.tokens = pipe.tokens
        billed = ex.meter is not None  # virtual keys: a client that leaves pays per chunk
        if billed:
            ex.chunks += first.count(b"\n\n")
        ex.status = 200
        ex.phase = "streaming"
        # The head and the first chunk go out through ASGI, which frames the
        # body; the pieces after them may then skip it (``_open_body``).
        await send({"type": "http.response.start", "status": 200, "headers": _sse_headers(ex)})
        ex.response_started = True
        ex.finishing = ended
        await send({"type": "http.response.body", "body": first, "more_body": not ended})
        metrics.ADDED_LATENCY.observe(
            (ex.upstream_sent - ex.started) + (trio.current_time() - upstream_first)
        )
        if ended:
            return
        body = ex.body = _open_body(ex, send)
        tail = await _pump(ex, attempt, response, pipe, body, total_at)
        ex.tokens = pipe.tokens
        # Let go of the upstream before waiting on the client.
        response.close()
        if tail is not None:
            await finish_stream(ex, send, tail)
        # Else the client is gone, or stopped reading and its connection was
        # reset: the response ends unfinished.
    finally:
        response.close()


async def finish_stream(ex: Exchange, send: ASGISend, last: bytes) -> None:
    """Write a started stream's last event and end its body, each within ``stall_timeout``.

    The end goes through Hypercorn (h11 must see it), whose write is shielded
    and has no deadline: it is sent only once the client's socket has room
    for it. A client that takes neither in time has its connection reset.
    """
    body = ex.body if ex.body is not None else _ASGIBody(send)
    delivered = await _write_within(body, last, ex)
    if not delivered or not await _client_takes(ex, body, body.wait_writable):
        return
    ex.finishing = True
    with trio.CancelScope(shield=True):  # h11 counts the end as sent from its start
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _pump(
    ex: Exchange,
    attempt: Attempt,
    response: UpstreamResponse,
    pipe: StreamPipe,
    body: ResponseBody,
    total_at: float,
) -> bytes | None:
    """Upstream -> client until the end; returns the stream's last event.

    ``None`` when nothing more can reach the client: it went away, or it
    stopped reading (a piece waited ``stall_timeout`` for room in its socket)
    and its connection was reset.
    """
    # The scope's deadline is the upstream's (``total``, and ``idle`` before
    # each read) while reading, and the client's (``stall_at``) while a piece
    # waits for room: each wait is bounded by the side it waits on.
    idle = attempt.deadlines.idle
    billed = ex.meter is not None  # see _stream
    stall_at = math.inf  # while a piece waits for the client: when it gives up
    unwritten = False  # a piece is left to write after the scope
    # One scope for the whole pump, its deadline moved before each wait: the
    # per-token cost of a new scope showed in profiles, and so did moving a
    # deadline (a context manager in Trio), hence only when it changes.
    with trio.CancelScope(deadline=total_at) as scope:
        try:
            while True:
                if idle:
                    scope.deadline = min(trio.current_time() + idle, total_at)
                elif stall_at < math.inf:
                    scope.deadline = total_at
                stall_at = math.inf
                data = await response.next_chunk()
                if data is None:
                    return pipe.finish()
                out = pipe.feed(data)
                if out:
                    if billed:
                        ex.chunks += out.count(b"\n\n")
                    if not body.try_write(out):
                        if scope.cancel_called:
                            # The read ended as an upstream deadline passed:
                            # the piece goes out whole first, outside this scope.
                            unwritten = True
                            break
                        # A client that does not read fills its socket; it gets
                        # ``stall_timeout``, and cannot pin the upstream past
                        # that. Only that: the upstream is not read meanwhile,
                        # and a deadline of its own that passes now is met at
                        # the next read, with the piece out whole.
                        stall_at = trio.current_time() + ex.stall_timeout
                        scope.deadline = stall_at
                        await body.wait_written()
                        if body.closed or scope.cancel_called:
                            break  # (a deadline that passed as the write ended)
        except GatewayError as err:
            return err.ahead + _stream_failed(ex, err)
    if unwritten:
        stall_at = trio.current_time() + ex.stall_timeout
        with trio.move_on_at(stall_at):
            await body.wait_written()
    return _pump_stopped(ex, attempt, body, stall_at, total_at)


def _pump_stopped(
    ex: Exchange, attempt: Attempt, body: ResponseBody, stall_at: float, total_at: float
) -> bytes | None:
    """Why the pump stopped early, recorded; the last event if the client can still get it."""
    now = trio.current_time()
    deadlines = attempt.deadlines
    if stall_at <= now:
        _client_stalled(ex, body)
        return None
    if body.closed:  # the client went away (whatever deadline passed meanwhile)
        client_left(ex)
        return None
    kind = "total" if now >= total_at else "idle"
    seconds = deadlines.total if kind == "total" else deadlines.idle
    return _stream_failed(ex, UpstreamTimeout(kind, seconds or 0))


async def _write_within(body: ResponseBody, data: bytes, ex: Exchange) -> bool:
    """Write ``data`` within ``stall_timeout``; False if the client cannot get it."""
    if body.try_write(data) and not body.closed:
        return True
    return await _client_takes(ex, body, body.wait_written)


async def _client_takes(
    ex: Exchange, body: ResponseBody, wait: Callable[[], Awaitable[None]]
) -> bool:
    """Await ``wait`` (on the client) within ``stall_timeout``; False, and why, if it fails.

    A client that took too long is reset (``client_stall``); one that went
    away is recorded as gone.
    """
    with trio.move_on_after(ex.stall_timeout) as scope:
        await wait()
    if scope.cancelled_caught:
        _client_stalled(ex, body)
        return False
    if body.closed:
        client_left(ex)
        return False
    return True


def _client_stalled(ex: Exchange, body: ResponseBody) -> None:
    body.abort()
    deadline_passed(ex, "client_stall")


def _stream_failed(ex: Exchange, err: GatewayError) -> bytes:
    if isinstance(err, UpstreamTimeout):
        deadline_passed(ex, err.kind)
    ex.stream_error = ex.error = err
    return ex.envelope.event(err, ex.request_id)


def _sse_headers(ex: Exchange) -> list[tuple[bytes, bytes]]:
    if ex.meter is not None and ex.deployment is not None:
        return [*_SSE_HEADERS, *ex.headers, *ex.meter(ex.deployment.id, None)]
    return [*_SSE_HEADERS, *ex.headers]


def _open_body(ex: Exchange, send: ASGISend) -> ResponseBody:
    """The response body to write to: straight to the socket where the server allows."""
    body = ex.open_body() if ex.open_body is not None else None
    return body if body is not None else _ASGIBody(send)


class _ASGIBody:
    """A :class:`ResponseBody` over plain ASGI sends, for servers other than ours.

    Every piece is awaited, so the pump bounds each with ``stall_timeout``, as
    far as the server's send can be cancelled at all (Hypercorn's cannot).
    """

    __slots__ = ("_data", "_send")

    def __init__(self, send: ASGISend) -> None:
        self._send = send
        self._data = b""

    @property
    def closed(self) -> bool:
        return False  # the server says so with http.disconnect

    def try_write(self, data: bytes) -> bool:
        self._data = data
        return False

    async def wait_written(self) -> None:
        data, self._data = self._data, b""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint()

    def abort(self) -> None:
        pass  # nothing to reset from here: the server's own timeouts free the connection
