"""A raw-socket OpenAI-style upstream that records when each connection closed.

Unlike the ASGI fakes, it owns its sockets, so it can hang at any point of
an exchange (before the headers, after the headers, between two events) and
notice the moment the gateway closes the connection: a pending
``receive_some`` returns ``b""`` (FIN) or raises (RST). Every connection's
life is kept in :class:`Conn` with trio timestamps, so tests can measure
disconnect-to-upstream-close latency without sleeping.

``hang_connect`` makes a listener whose accept queue is full, so a new
TCP connect to it hangs in SYN retransmission: a connect that never completes,
on loopback.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from functools import partial

import trio


class Mode(Enum):
    JSON = "json"  # a whole chat.completion
    HANG_HEADERS = "hang_headers"  # read the request, answer nothing
    HANG_BODY = "hang_body"  # headers (and some events), then nothing
    STREAM = "stream"  # `events` SSE events, `interval` apart, then [DONE]
    FLOOD = "flood"  # SSE events as fast as the socket takes them, forever


@dataclass
class Behaviour:
    mode: Mode = Mode.STREAM
    events: int = 5
    interval: float = 0.0
    event_size: int = 16  # characters of content per event
    partial_events: int = 0  # HANG_BODY: events sent before hanging


@dataclass
class Conn:
    accepted: float
    request_at: float | None = None
    closed_at: float | None = None
    closed: trio.Event = field(default_factory=trio.Event)
    requests: int = 0


def _chunk(index: int, content: str) -> bytes:
    data = {
        "id": "chatcmpl-tcp",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    if index == 0:
        data["choices"][0]["delta"]["role"] = "assistant"  # type: ignore[index]
    return b"data: " + json.dumps(data).encode() + b"\n\n"


_FINAL = (
    b'data: {"id":"chatcmpl-tcp","object":"chat.completion.chunk","created":1,"model":"up",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-tcp",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


class TCPUpstream:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.conns: list[Conn] = []
        self.port = 0
        self.new_request = trio.Event()

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self.conns if c.closed_at is None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _read_request(self, stream: trio.SocketStream, buffer: bytearray) -> bool:
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                return False
            buffer += data
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            data = await stream.receive_some(65536)
            if not data:
                return False
            rest += data
        buffer[:] = rest[length:]
        return True

    async def _watch_close(self, stream: trio.SocketStream, conn: Conn) -> None:
        try:
            while await stream.receive_some(65536):
                pass  # a pipelined request would be a protocol error here; ignore
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        conn.closed_at = trio.current_time()
        conn.closed.set()

    async def _serve_one(
        self, stream: trio.SocketStream, conn: Conn, nursery: trio.Nursery
    ) -> None:
        b = self.behaviour
        if b.mode is Mode.JSON:
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n" % len(_COMPLETION) + _COMPLETION
            )
            return
        if b.mode is Mode.HANG_HEADERS:
            await trio.sleep_forever()
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        )
        if b.mode is Mode.HANG_BODY:
            for i in range(b.partial_events):
                await stream.send_all(_chunk(i, "x" * b.event_size))
            await trio.sleep_forever()
        i = 0
        while b.mode is Mode.FLOOD or i < b.events:
            await stream.send_all(_chunk(i, "x" * b.event_size))
            i += 1
            if b.interval:
                await trio.sleep(b.interval)
        await stream.send_all(_FINAL)
        await stream.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = Conn(accepted=trio.current_time())
        self.conns.append(conn)
        buffer = bytearray()
        try:
            if not await self._read_request(stream, buffer):
                conn.closed_at = trio.current_time()
                conn.closed.set()
                return
            conn.request_at = trio.current_time()
            conn.requests += 1
            self.new_request.set()
            self.new_request = trio.Event()
            async with trio.open_nursery() as nursery:
                # Watch for the close while (and after) serving; the watcher ends
                # the nursery when the peer goes away.
                async def watch() -> None:
                    await self._watch_close(stream, conn)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                await self._serve_one(stream, conn, nursery)
                if self.behaviour.mode is Mode.JSON:
                    await conn.closed.wait()  # keep-alive: stay until the pool drops it
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            if conn.closed_at is None:
                conn.closed_at = trio.current_time()
                conn.closed.set()
        finally:
            await stream.aclose()


@asynccontextmanager
async def tcp_upstream() -> AsyncIterator[TCPUpstream]:
    upstream = TCPUpstream()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, upstream._handle, 0, host="127.0.0.1")
        )
        upstream.port = listeners[0].socket.getsockname()[1]
        try:
            yield upstream
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def hang_connect() -> AsyncIterator[str]:
    """A base URL whose TCP connect never completes (its accept queue is full)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # the kernel admits backlog + 1; fill it whatever it is
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
