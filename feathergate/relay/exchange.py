"""One upstream attempt: the HTTP call, its deadlines, and the streaming pump."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import trio

from feathergate import metrics
from feathergate.assets import ImageFetcher, fetch_assets
from feathergate.config import Deadlines
from feathergate.errors import (
    GatewayError,
    UpstreamTimeout,
    error_event,
)
from feathergate.providers.base import (
    CallContext,
    Chunk,
    Provider,
    StreamTranslator,
    UpstreamRequest,
)
from feathergate.relay.lifecycle import Exchange
from feathergate.sse import DONE, SSEDecoder, encode_data
from feathergate.typing import ASGISend
from feathergate.upstream import Transport, UpstreamResponse

__all__ = ["Attempt", "run_attempt"]

T = TypeVar("T")

_CHANNEL_SIZE = 32
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Attempt:
    """What one try against one deployment needs."""

    provider: Provider
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
    fetch = getattr(attempt.provider, "assets_to_fetch", None)
    urls = fetch(ex.request.body) if fetch is not None else None
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
    request = attempt.provider.build_request(ex.request.body, ctx)
    if ctx.stream:
        await _stream(ex, attempt, request, send, total_at)
    else:
        await _complete(ex, attempt, request, send, total_at)


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
    if response.status >= 400:
        try:
            body: bytes = await _timed(
                response.read(), first_at, total_at, "first_token", deadlines
            )
        finally:
            response.close()
        raise attempt.provider.map_error(response.status, response.headers, body)
    return response


def _first_token_at(deadlines: Deadlines) -> float:
    first = deadlines.first_token
    return trio.current_time() + first if first else math.inf


async def _complete(
    ex: Exchange, attempt: Attempt, request: UpstreamRequest, send: ASGISend, total_at: float
) -> None:
    first_at = _first_token_at(attempt.deadlines)
    response = await _open(ex, attempt, request, total_at, first_at)
    try:
        ex.phase = "response_body"
        body: bytes = await _timed(
            response.read(), first_at, total_at, "first_token", attempt.deadlines
        )
    finally:
        response.close()
    upstream_done = ex.first_byte = trio.current_time()
    completion = attempt.provider.parse_response(body, attempt.ctx)
    usage = completion.get("usage")
    if isinstance(usage, dict):
        ex.usage = usage
        if isinstance(usage.get("total_tokens"), int):
            ex.tokens = usage["total_tokens"]
    payload = json.dumps(completion).encode()
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *ex.headers]
    if ex.meter is not None:
        headers += ex.meter(attempt.ctx.deployment.id, ex.usage or {})
    ex.status = 200
    ex.phase = "sending"
    with trio.CancelScope(shield=True):  # a JSON body is sent whole or not at all
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ex.response_started = True
        ex.finishing = True
        await send({"type": "http.response.body", "body": payload, "more_body": False})
    now = trio.current_time()
    metrics.ADDED_LATENCY.observe((ex.upstream_sent - ex.started) + (now - upstream_done))


class _Encoder:
    """Translated chunks -> SSE bytes, noting the usage as it goes by."""

    __slots__ = ("_ex",)

    def __init__(self, ex: Exchange) -> None:
        self._ex = ex

    def __call__(self, chunks: list[Chunk]) -> bytes:
        ex = self._ex
        ex.chunks += len(chunks)
        for chunk in chunks:
            usage = chunk.get("usage")
            if usage:
                ex.tokens = usage.get("total_tokens")
                ex.usage = usage
                if ex.strip_usage and not chunk.get("choices"):
                    chunks = [c for c in chunks if c is not chunk]
        return b"".join(encode_data(chunk) for chunk in chunks)


async def _stream(
    ex: Exchange, attempt: Attempt, request: UpstreamRequest, send: ASGISend, total_at: float
) -> None:
    translator = attempt.provider.stream_translator(attempt.ctx)
    decoder = SSEDecoder()
    encode = _Encoder(ex)
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
            if data is None:
                ended = True
                first = encode([c for e in decoder.finish() for c in translator.feed(e)])
                first += encode(translator.finish()) + DONE
            else:
                first = encode([c for e in decoder.feed(data) for c in translator.feed(e)])
        upstream_first = ex.first_byte = trio.current_time()
        ex.status = 200
        ex.phase = "streaming"
        # The head and the first chunk go out from this task: no hop through
        # the writer before the first token.
        await send({"type": "http.response.start", "status": 200, "headers": _sse_headers(ex)})
        ex.response_started = True
        ex.finishing = ended
        await send({"type": "http.response.body", "body": first, "more_body": not ended})
        metrics.ADDED_LATENCY.observe(
            (ex.upstream_sent - ex.started) + (trio.current_time() - upstream_first)
        )
        if ended:
            return
        sender, receiver = trio.open_memory_channel[bytes](_CHANNEL_SIZE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, send, receiver, ex)
            async with sender:
                tail = await _pump(
                    ex, attempt, response, decoder, translator, encode, sender, total_at
                )
                # Let go of the upstream before waiting on the client.
                response.close()
                delivered = False
                if tail is not None:
                    with trio.move_on_after(ex.stall_timeout):
                        await sender.send(tail)
                        delivered = True
                if not delivered:  # the client stopped reading: stop writing to it
                    nursery.cancel_scope.cancel()
    finally:
        response.close()


async def _pump(
    ex: Exchange,
    attempt: Attempt,
    response: UpstreamResponse,
    decoder: SSEDecoder,
    translator: StreamTranslator,
    encode: _Encoder,
    sender: trio.MemorySendChannel[bytes],
    total_at: float,
) -> bytes | None:
    """Upstream -> channel until the end; returns the stream's last event.

    ``None`` means the client stopped reading: the channel stayed full for
    ``stall_timeout`` (or past the total deadline), and nothing more can reach it.
    """
    deadlines = attempt.deadlines
    idle = deadlines.idle
    waiting_on_client = False
    # One scope for the whole pump, its deadline moved before each wait: the
    # per-token cost of a new scope showed in profiles.
    with trio.CancelScope() as scope:
        try:
            while True:
                idle_at = trio.current_time() + idle if idle else math.inf
                scope.deadline = min(idle_at, total_at)
                waiting_on_client = False
                data = await response.next_chunk()
                if data is None:
                    chunks = [c for e in decoder.finish() for c in translator.feed(e)]
                    return encode(chunks + translator.finish()) + DONE
                out = encode([c for e in decoder.feed(data) for c in translator.feed(e)])
                if out:
                    # A client that does not read fills the channel; it gets
                    # ``stall_timeout``, and cannot pin the upstream past that.
                    scope.deadline = min(total_at, trio.current_time() + ex.stall_timeout)
                    waiting_on_client = True
                    await sender.send(out)
        except GatewayError as err:
            return _stream_failed(ex, err)
    if trio.current_time() >= total_at:
        return _stream_failed(ex, UpstreamTimeout("total", deadlines.total or 0))
    if waiting_on_client:
        metrics.DEADLINE_EXPIRIES.labels("client_stall").inc()
        return None
    return _stream_failed(ex, UpstreamTimeout("idle", idle or 0))


def _stream_failed(ex: Exchange, err: GatewayError) -> bytes:
    if isinstance(err, UpstreamTimeout):
        metrics.DEADLINE_EXPIRIES.labels(err.kind).inc()
    ex.stream_error = err
    return error_event(err)


def _sse_headers(ex: Exchange) -> list[tuple[bytes, bytes]]:
    if ex.meter is not None and ex.deployment_id is not None:
        return [*_SSE_HEADERS, *ex.headers, *ex.meter(ex.deployment_id, None)]
    return [*_SSE_HEADERS, *ex.headers]


async def _write(send: ASGISend, receiver: trio.MemoryReceiveChannel[bytes], ex: Exchange) -> None:
    """Channel -> client, joining whatever queued up into one write when behind."""
    async with receiver:
        async for data in receiver:
            parts = [data]
            while True:
                try:
                    parts.append(receiver.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        ex.finishing = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
