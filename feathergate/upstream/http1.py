"""A small keep-alive HTTP/1.1 client on Trio sockets: the upstream hot path.

Why not httpx here: per request it merges URLs, normalises headers twice,
writes the head and the body separately and walks its pool's bookkeeping,
which together cost more CPU than the rest of a relay (STACK.md). An LLM
upstream needs much less: one POST, one response, keep-alive reuse, TLS.
httpx still serves the cold paths (image downloads). The framing is in
:mod:`feathergate.upstream.h1` (pure, as strict as h11); this module only
moves bytes.

Connections per origin are limited (``max_connections``: open, opening and
idle ones together). A request that finds none free waits in line, first come
first served, and the wait counts towards its ``connect`` deadline: a full pool
times out like an upstream that does not accept. A connection given back goes
straight to the longest waiter. Idle connections expire after ``idle_expiry``
seconds; the pool looks when it hands one out and when it takes one back, so
an origin nobody calls keeps its idle sockets until the next call or shutdown.

Cancellation is the caller's: every wait here is a plain Trio checkpoint, and
a response that is closed before its body ended closes its connection, so a
cancelled relay never leaves a half-read connection in the pool. This module
is also the one place where socket and TLS errors become
:class:`~feathergate.errors.GatewayError` s.
"""

from __future__ import annotations

import math
import os
import select
import ssl
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

from feathergate.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from feathergate.upstream.h1 import BodyFraming, HeadReader, ResponseHead, encode_request
from feathergate.upstream.origin import Origin

__all__ = ["DEFAULT_MAX_CONNECTIONS", "HTTP1Response", "HTTP1Transport"]

_READ = 65536
# LiteLLM's own upstream clients allow 1000 (httpx's default of 100 would cap an
# origin at 100 concurrent streams, each of which may last minutes).
DEFAULT_MAX_CONNECTIONS = 10_000


_SOCKET_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


def _protocol_error(what: str, exc: BaseException) -> UpstreamProtocolError:
    cause = exc.__cause__ or exc
    return UpstreamProtocolError(f"upstream connection failed {what}: {cause}")


@contextmanager
def _socket_errors(what: str) -> Iterator[None]:
    try:
        yield
    except _SOCKET_ERRORS as exc:
        raise _protocol_error(what, exc) from None


class _Conn:
    __slots__ = ("idle_since", "plain", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.idle_since = 0.0
        # Without TLS the body is read straight off the socket (see ``receive``).
        self.plain = stream.socket if isinstance(stream, trio.SocketStream) else None

    async def receive(self) -> bytes:
        """The next bytes from the upstream (``b""`` at EOF); ``OSError`` and the like raised.

        On a plain socket: wait until readable, then one ``read(2)``. Trio's
        ``receive_some`` tries the read first, which, as a stream's next chunk
        is never there yet, fails with ``BlockingIOError`` every time, under two
        context managers and a conflict detector: about a fifth of the
        gateway's CPU per relayed chunk.
        """
        sock = self.plain
        if sock is None:
            return bytes(await self.stream.receive_some(_READ))
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return os.read(sock.fileno(), _READ)
            except BlockingIOError:  # a spurious wake-up
                continue

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


class _Waiter:
    """A request waiting for a connection; ``granted`` once handed one (``conn``) or a slot."""

    __slots__ = ("conn", "event", "granted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.granted = False
        self.conn: _Conn | None = None


async def _write(conn: _Conn, payload: bytes) -> None:
    with _socket_errors("while sending"):
        await conn.stream.send_all(payload)


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
            self._transport.discard(conn)

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
                try:  # not `with _socket_errors`: a context manager per chunk showed in profiles
                    data = await self._conn.receive()
                except _SOCKET_ERRORS as exc:
                    raise _protocol_error("mid-body", exc) from None
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
    """A keep-alive pool of at most ``max_connections`` HTTP/1.1 connections to one origin.

    ``origin`` must be an ``http://`` or ``https://`` URL with a host
    (``ValueError`` otherwise); its path is ignored.
    """

    def __init__(
        self,
        origin: str,
        ssl_context: ssl.SSLContext | None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_expiry: float = 60.0,
    ) -> None:
        self.origin = Origin.parse(origin)
        self._prefix = str(self.origin)
        self.authority = self.origin.authority
        if self.origin.scheme == "https":
            self._ssl: ssl.SSLContext | None = ssl_context or ssl.create_default_context()
        else:
            self._ssl = None
        self.max_connections = max(1, max_connections)
        self._idle_expiry = idle_expiry
        self._open = 0  # slots taken: connections open or being opened, idle ones included
        self._idle: deque[_Conn] = deque()  # oldest on the left
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    # -- the pool ---------------------------------------------------------------------

    def _checkout(self) -> _Conn | None:
        now = trio.current_time()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < self._idle_expiry and conn.looks_alive():
                return conn
            self.discard(conn)
        return None

    async def _acquire(self, deadline: float, seconds: float | None) -> _Conn | None:
        """An idle connection, or ``None``: a slot is reserved for a new one."""
        conn = self._checkout()
        if conn is not None:
            return conn
        if self._open < self.max_connections:
            self._open += 1
            return None
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            with trio.move_on_at(deadline):
                await waiter.event.wait()
        except BaseException:  # cancelled from outside: whatever it was given goes on
            self._abandon(waiter)
            raise
        if not waiter.granted:
            self._waiters.remove(waiter)
            raise UpstreamTimeout("connect", seconds or 0)
        return waiter.conn

    def _abandon(self, waiter: _Waiter) -> None:
        if not waiter.granted:
            self._waiters.remove(waiter)
        elif waiter.conn is not None:
            self.release(waiter.conn, reusable=True)
        else:
            self._free_slot()

    def _grant(self, conn: _Conn | None) -> bool:
        """Hand a connection, or a free slot (``None``), to the longest waiter."""
        if not self._waiters:
            return False
        waiter = self._waiters.popleft()
        waiter.granted, waiter.conn = True, conn
        waiter.event.set()
        return True

    def _free_slot(self) -> None:
        if not self._grant(None):
            self._open -= 1

    def release(self, conn: _Conn, *, reusable: bool) -> None:
        if not reusable or self._closed:
            self.discard(conn)
            return
        conn.idle_since = now = trio.current_time()
        if self._grant(conn):
            return
        self._idle.append(conn)
        while self._idle and now - self._idle[0].idle_since >= self._idle_expiry:
            self.discard(self._idle.popleft())

    def discard(self, conn: _Conn) -> None:
        """Close a connection that is not idle, and give its slot on."""
        conn.close()
        self._free_slot()

    # -- connecting and sending -------------------------------------------------------

    async def _connect(self, deadline: float, seconds: float | None) -> _Conn:
        """A new connection in a slot already reserved; the slot is freed if it fails."""
        try:
            with trio.move_on_at(deadline):
                return await self._open_connection()
            raise UpstreamTimeout("connect", seconds or 0)
        except BaseException:
            self._free_slot()
            raise

    async def _open_connection(self) -> _Conn:
        origin = self.origin
        try:
            # TCP_NODELAY is on: trio sets it on every SocketStream.
            stream: trio.abc.Stream = await trio.open_tcp_stream(origin.host, origin.port)
        except OSError as exc:
            raise UpstreamUnreachable(
                f"cannot connect to the upstream {self.authority}: {exc.strerror or exc}"
            ) from None
        if self._ssl is None:
            return _Conn(stream)
        # https_compatible: a server that closes without close_notify has still
        # ended a close-delimited body (trio's SSLStream docs; httpcore does the same).
        tls = trio.SSLStream(stream, self._ssl, server_hostname=origin.host, https_compatible=True)
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
        return _Conn(tls)

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
        target = self.origin.request_target(url, self._prefix)
        payload = encode_request(method, target, self.authority, headers, body)
        deadline = trio.current_time() + connect_timeout if connect_timeout else math.inf
        conn = await self._acquire(deadline, connect_timeout)
        # A reused connection may have been closed by the server as we took it.
        # Only a failed write proves the request never left: then one fresh
        # connection, in the same slot, is the honest retry. Anything later (no
        # answer, a reset, a garbled head) may follow a request the upstream did
        # process, so it is raised, and the router decides, counting it as a retry.
        if conn is not None:
            try:
                await _write(conn, payload)
            except UpstreamProtocolError:
                conn.close()
                conn = None
            except BaseException:
                self.discard(conn)
                raise
        if conn is None:
            conn = await self._connect(deadline, connect_timeout)
            try:
                await _write(conn, payload)
            except BaseException:
                self.discard(conn)
                raise
        try:
            if on_sent is not None:
                on_sent()
            head, leftover = await _read_head(conn)
        except BaseException:
            self.discard(conn)
            raise
        return HTTP1Response(self, conn, head, leftover)

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, deque()
        for conn in idle:
            self.discard(conn)


async def _read_head(conn: _Conn) -> tuple[ResponseHead, bytes]:
    reader = HeadReader()
    while True:
        with _socket_errors("before its response"):
            data = await conn.receive()
        if not data:
            raise UpstreamProtocolError("upstream closed the connection before answering")
        head = reader.feed(data)
        if head is not None:
            return head
