"""A small keep-alive HTTP/1.1 client on Trio sockets: the upstream hot path.

Why not httpx here: per request it merges URLs, normalises headers twice,
writes the head and the body separately and walks its pool's bookkeeping,
which together cost more CPU than the rest of a relay (STACK.md). An LLM
upstream needs much less: one POST, one response, keep-alive reuse, TLS.
httpx still serves the cold paths (image downloads). The framing is in
:mod:`feathergate.upstream.h1` (pure, as strict as h11); this module only
moves bytes.

Cancellation is the caller's: every wait here is a plain Trio checkpoint, and
a response that is closed before its body ended closes its connection, so a
cancelled relay never leaves a half-read connection in the pool. This module
is also the one place where socket and TLS errors become
:class:`~feathergate.errors.GatewayError` s.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import trio

from feathergate.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from feathergate.upstream.h1 import BodyFraming, HeadReader, ResponseHead, encode_request

__all__ = ["HTTP1Response", "HTTP1Transport"]

_READ = 65536


@contextmanager
def _socket_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
        cause = exc.__cause__ or exc
        raise UpstreamProtocolError(f"upstream connection failed {what}: {cause}") from None


class _Conn:
    __slots__ = ("idle_since", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.idle_since = 0.0

    def raw_socket(self) -> trio.socket.SocketType:
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        assert isinstance(stream, trio.SocketStream)
        return stream.socket

    def looks_alive(self) -> bool:
        """An idle connection the server has closed (or written to) cannot be reused."""
        poller = select.poll()
        poller.register(self.raw_socket().fileno(), select.POLLIN)
        return not poller.poll(0)  # readable now means EOF, or bytes nobody asked for

    def close(self) -> None:
        # Closing the socket at once (no TLS close_notify) needs no checkpoint,
        # so it is safe inside a cancelled scope and in ``finally`` blocks.
        self.raw_socket().close()


async def _write(conn: _Conn, payload: bytes) -> None:
    """Send the whole request; on any failure the connection is closed."""
    try:
        with _socket_errors("while sending"):
            await conn.stream.send_all(payload)
    except BaseException:
        conn.close()
        raise


class HTTP1Response:
    """Status, headers, and the body read chunk by chunk (``None`` at its end)."""

    __slots__ = ("_conn", "_framing", "_keep_alive", "_leftover", "_transport", "headers", "status")

    def __init__(
        self, transport: HTTP1Transport, conn: _Conn, head: ResponseHead, leftover: bytes
    ) -> None:
        self._transport = transport
        self._conn: _Conn | None = conn
        self._framing = BodyFraming(head)
        self._leftover = leftover
        self._keep_alive = head.keep_alive
        self.status = head.status
        self.headers = head.headers

    async def next_chunk(self) -> bytes | None:
        try:
            return await self._next_chunk()
        except UpstreamProtocolError:
            self._drop()  # out of sync with the upstream: never back to the pool
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _next_chunk(self) -> bytes | None:
        while True:
            if self._leftover:
                data, self._leftover = self._leftover, b""
                body = self._framing.feed(data)
            elif self._framing.done:
                self._release()
                return None
            else:
                assert self._conn is not None
                with _socket_errors("mid-body"):
                    data = bytes(await self._conn.stream.receive_some(_READ))
                if not data:
                    self._framing.eof()
                    self.close()
                    return None
                body = self._framing.feed(data)
            if body:
                return body

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._transport.release(conn, reusable=self._framing.reusable and self._keep_alive)

    def close(self) -> None:
        """Done with it: the connection goes back to the pool only after a whole body."""
        if self._framing.done:
            self._release()
        else:
            self._drop()


class HTTP1Transport:
    """A keep-alive pool of HTTP/1.1 connections to one origin."""

    def __init__(
        self,
        origin: str,
        ssl_context: ssl.SSLContext | None,
        *,
        max_idle: int = 256,
        idle_expiry: float = 60.0,
    ) -> None:
        parts = urlsplit(origin)
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "localhost"
        default_port = 443 if self.scheme == "https" else 80
        self.port = parts.port or default_port
        self.authority = self.host if self.port == default_port else f"{self.host}:{self.port}"
        self._ssl = ssl_context if self.scheme == "https" else None
        self._idle: list[_Conn] = []
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        self._closed = False

    def _checkout(self) -> _Conn | None:
        now = trio.current_time()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < self._idle_expiry and conn.looks_alive():
                return conn
            conn.close()
        return None

    def release(self, conn: _Conn, *, reusable: bool) -> None:
        if reusable and not self._closed and len(self._idle) < self._max_idle:
            conn.idle_since = trio.current_time()
            self._idle.append(conn)
        else:
            conn.close()

    async def _connect(self, connect_timeout: float | None) -> _Conn:
        with trio.move_on_after(connect_timeout if connect_timeout else float("inf")) as scope:
            try:
                # TCP_NODELAY is on: trio sets it on every SocketStream.
                stream: trio.abc.Stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError as exc:
                raise UpstreamUnreachable(
                    f"cannot connect to the upstream {self.authority}: {exc.strerror or exc}"
                ) from None
            if self._ssl is not None:
                tls = trio.SSLStream(stream, self._ssl, server_hostname=self.host)
                try:
                    await tls.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError) as exc:
                    _Conn(tls).close()
                    raise UpstreamUnreachable(
                        f"TLS handshake with {self.authority} failed: {exc.__cause__ or exc}"
                    ) from None
                except BaseException:  # cancelled mid-handshake: the socket goes too
                    _Conn(tls).close()
                    raise
                stream = tls
            return _Conn(stream)
        assert scope.cancelled_caught
        raise UpstreamTimeout("connect", connect_timeout or 0)

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float | None,
        on_sent: Callable[[], None] | None = None,
    ) -> HTTP1Response:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        payload = encode_request(method, target, self.authority, headers, body)
        # A reused connection may have been closed by the server as we took it.
        # Only a failed write proves the request never left: then one fresh
        # connection is the honest retry. Anything later (no answer, a reset, a
        # garbled head) may follow a request the upstream did process, so it is
        # raised, and the router decides, counting it as a retry.
        conn = self._checkout()
        if conn is not None:
            try:
                await _write(conn, payload)
            except UpstreamProtocolError:
                conn = None
        if conn is None:
            conn = await self._connect(connect_timeout)
            await _write(conn, payload)
        try:
            if on_sent is not None:
                on_sent()
            head, leftover = await self._read_head(conn)
        except BaseException:
            conn.close()
            raise
        return HTTP1Response(self, conn, head, leftover)

    async def _read_head(self, conn: _Conn) -> tuple[ResponseHead, bytes]:
        reader = HeadReader()
        while True:
            with _socket_errors("before its response"):
                data = await conn.stream.receive_some(_READ)
            if not data:
                raise UpstreamProtocolError("upstream closed the connection before answering")
            head = reader.feed(bytes(data))
            if head is not None:
                return head

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
