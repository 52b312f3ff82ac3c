"""Cheap streaming clients for ``scripts/bench.py``: raw asyncio sockets, no HTTP library.

* :func:`measure_ttft` sends streaming chat requests one after another on one
  keep-alive connection and times each from the request's write to the first
  byte of the response *body* (the first SSE ``data:`` byte; headers alone do
  not count), and checks that every stream ends correctly.
* :func:`hold_streams` opens many streams at once, one connection each, reads
  them to the end and counts those that ended correctly; each stream notes its
  longest silence between two reads of its body (its worst stall).
* :func:`probe_ttft` runs short streams one after another until told to stop,
  for the time to first token of new streams while the others run.

A stream "ended correctly" when the status is 200, the body contains every
expected token (the fake upstream's tokens are the word ``token``), no
``"error"`` event, and ends with ``data: [DONE]``. The parser understands
``Content-Length`` and chunked bodies (Hypercorn streams chunked), which is
all an HTTP/1.1 server answers a POST with.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "StreamOutcome",
    "StreamsResult",
    "TTFTResult",
    "hold_streams",
    "measure_ttft",
    "probe_ttft",
    "stream_ok",
]

_DONE = b"data: [DONE]\n\n"


def chat_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def stream_ok(status: int, body: bytes, tokens: int) -> bool:
    """Did a stream of ``tokens`` tokens arrive whole and end with ``[DONE]``?"""
    return (
        status == 200
        and body.endswith(_DONE)
        and body.count(b" token") == tokens
        and b'"error"' not in body
    )


class ResponseParser:
    """An incremental HTTP/1.1 response parser: status line, headers, de-chunked body."""

    __slots__ = ("_buffer", "_chunk_left", "_chunked", "_length", "body", "complete", "status")

    def __init__(self) -> None:
        self._buffer = b""
        self.status = 0
        self.body = bytearray()
        self.complete = False
        self._chunked = False
        self._length = -1  # -1: headers not parsed yet
        self._chunk_left = 0  # bytes of the current chunk still to read (+2 for its CRLF)

    @property
    def headers_done(self) -> bool:
        return self._length != -1 or self._chunked

    def feed(self, data: bytes) -> bytes:
        """Consume ``data``; returns what is left over after a complete response."""
        buffer = self._buffer + data
        self._buffer = b""
        if not self.headers_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return b""
            head = buffer[:end].decode("latin-1").lower().split("\r\n")
            self.status = int(head[0].split(" ", 2)[1])
            self._length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name == "content-length":
                    self._length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    self._chunked = True
            buffer = buffer[end + 4 :]
        if not self._chunked:
            need = self._length - len(self.body)
            self.body += buffer[:need]
            self.complete = len(self.body) >= self._length
            return buffer[need:] if self.complete else b""
        return self._dechunk(buffer)

    def _dechunk(self, buffer: bytes) -> bytes:
        at = 0
        while True:
            if self._chunk_left:
                take = min(self._chunk_left, len(buffer) - at)
                self.body += buffer[at : at + take]
                self._chunk_left -= take
                at += take
                if self._chunk_left:
                    return b""
                # The chunk is in: drop its CRLF (which we counted into the body).
                del self.body[-2:]
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                self._buffer = buffer[at:]
                return b""
            size = int(buffer[at:line_end].split(b";", 1)[0], 16)
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    self._buffer = buffer[at:]
                    return b""
                self.complete = True
                return buffer[trailer_end + 4 :]
            self._chunk_left = size + 2
            at = line_end + 2


class _Client(asyncio.Protocol):
    """One connection; ``send`` one request at a time and await its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.done: asyncio.Future[None] | None = None
        self.sent_at = 0.0
        self.first_body_at = 0.0
        self.last_body_at = 0.0
        self.max_gap = 0.0  # the longest wait between two reads that brought body bytes
        self.on_body: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.parser = ResponseParser()
        self.first_body_at = 0.0
        self.done = asyncio.get_running_loop().create_future()
        self.sent_at = time.perf_counter()
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        before = len(parser.body)
        parser.feed(data)
        if len(parser.body) > before:
            now = time.perf_counter()
            if self.last_body_at:
                self.max_gap = max(self.max_gap, now - self.last_body_at)
            self.last_body_at = now
        if not self.first_body_at and parser.body:
            self.first_body_at = self.last_body_at
            if self.on_body is not None:
                self.on_body()
        if parser.complete and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection closed: {exc}"))


async def _connect(host: str, port: int) -> _Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(_Client, host, port)
    return client


@dataclass(slots=True)
class TTFTResult:
    ttft: list[float] = field(default_factory=list)  # seconds, one per correct stream
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # probe_ttft: why streams failed

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


async def measure_ttft(
    host: str, port: int, path: str, body: bytes, tokens: int, count: int, give_up_after: float
) -> TTFTResult:
    """``count`` streams in a row on one keep-alive connection (reopened after a failure)."""
    request = chat_request(host, port, path, body)
    result = TTFTResult()
    client: _Client | None = None
    for _ in range(count):
        try:
            if client is None or client.transport is None:
                client = await _connect(host, port)
            await asyncio.wait_for(client.send(request), give_up_after)
        except (OSError, TimeoutError):
            result.failed += 1
            if client is not None and client.transport is not None:
                client.transport.abort()
            client = None
            continue
        parser = client.parser
        if stream_ok(parser.status, bytes(parser.body), tokens):
            result.ttft.append(client.first_body_at - client.sent_at)
        else:
            result.failed += 1
    if client is not None and client.transport is not None:
        client.transport.close()
    return result


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    ok: bool
    status: int  # 0: no response head
    error: str  # "" when ok
    tokens: int  # tokens received
    first_byte: float  # seconds from the request's write to the first body byte (0: none)
    duration: float  # seconds from the request's write to the end (0: did not end)
    max_gap: float = 0.0  # the longest silence between two body reads, in seconds


@dataclass(slots=True)
class StreamsResult:
    outcomes: list[StreamOutcome]
    all_open: float  # seconds until every stream had its first body byte (0: never)
    elapsed: float

    @property
    def completed(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def started(self) -> int:
        """Streams that received at least their first body byte."""
        return sum(1 for o in self.outcomes if o.first_byte)

    @property
    def tokens(self) -> int:
        return sum(o.tokens for o in self.outcomes)

    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            if not outcome.ok:
                counts[outcome.error] = counts.get(outcome.error, 0) + 1
        return counts


def _outcome(client: _Client | None, tokens: int, error: str | None) -> StreamOutcome:
    if client is None:
        return StreamOutcome(False, 0, error or "no connection", 0, 0.0, 0.0)
    parser = client.parser
    payload = bytes(parser.body)
    first = client.first_body_at - client.sent_at if client.first_body_at else 0.0
    received = payload.count(b" token")
    gap = client.max_gap
    if error is not None:
        return StreamOutcome(False, parser.status, error, received, first, 0.0, gap)
    duration = time.perf_counter() - client.sent_at
    if stream_ok(parser.status, payload, tokens):
        return StreamOutcome(True, parser.status, "", received, first, duration, gap)
    error = f"HTTP {parser.status}" if parser.status != 200 else "incomplete or error event"
    return StreamOutcome(False, parser.status, error, received, first, duration, gap)


async def hold_streams(
    host: str,
    port: int,
    path: str,
    body: bytes,
    tokens: int,
    count: int,
    deadline: float,
    tick: Callable[[], None] | None = None,
    tick_every: float = 0.1,
) -> StreamsResult:
    """Open ``count`` streams at once, read them all; give up on those open after ``deadline`` s.

    ``tick`` is called every ``tick_every`` seconds while the streams run (the
    caller samples the gateway's RSS there).
    """
    request = chat_request(host, port, path, body)
    started = time.perf_counter()
    first_bytes = 0
    all_open = 0.0

    def on_body() -> None:
        nonlocal first_bytes, all_open
        first_bytes += 1
        if first_bytes == count:
            all_open = time.perf_counter() - started

    async def one() -> StreamOutcome:
        client: _Client | None = None
        try:
            client = await _connect(host, port)
            client.on_body = on_body
            await client.send(request)
        except OSError as exc:
            return _outcome(client, tokens, type(exc).__name__)
        except asyncio.CancelledError:
            if client is not None and client.transport is not None:
                client.transport.abort()
            return _outcome(client, tokens, "unfinished at the deadline")
        if client.transport is not None:
            client.transport.close()
        return _outcome(client, tokens, None)

    async def ticker() -> None:
        while True:
            if tick is not None:
                tick()
            await asyncio.sleep(tick_every)

    ticking = asyncio.create_task(ticker())
    tasks = [asyncio.create_task(one()) for _ in range(count)]
    try:
        await asyncio.wait(tasks, timeout=deadline)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = list(await asyncio.gather(*tasks))
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
    return StreamsResult(outcomes, all_open, time.perf_counter() - started)


async def probe_ttft(
    host: str,
    port: int,
    path: str,
    body: bytes,
    tokens: int,
    stop: asyncio.Event,
    every: float,
    give_up_after: float,
) -> TTFTResult:
    """Short streams one after another, each on a new connection, until ``stop`` is set.

    A new connection each time: what a new client meets (the accept queue
    included) while the gateway is busy with other streams. One stream every
    ``every`` seconds at most; each is given ``give_up_after`` seconds.
    """
    request = chat_request(host, port, path, body)
    result = TTFTResult()
    while not stop.is_set():
        started = time.perf_counter()
        client: _Client | None = None
        try:
            client = await asyncio.wait_for(_connect(host, port), give_up_after)
            done = client.send(request)
            await asyncio.wait_for(done, give_up_after)
        except (OSError, TimeoutError) as exc:
            result.fail(type(exc).__name__)
        else:
            parser = client.parser
            if stream_ok(parser.status, bytes(parser.body), tokens):
                # From before the connect: a new client waits for that too.
                result.ttft.append(client.first_body_at - started)
            else:
                result.fail(f"HTTP {parser.status}: {bytes(parser.body)[:120]!r}")
        if client is not None and client.transport is not None:
            client.transport.close()
        left = every - (time.perf_counter() - started)
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), left)
    return result
