"""Hypercorn's Trio connection, with two fixes for a gateway's traffic.

Hypercorn 0.18 (``hypercorn.trio.tcp_server.TCPServer``) guards each
keep-alive connection with an idle timer that is a task of its own:

* The connection's task group waits for that timer even after the client
  closed the socket, and a response that ends after the client left starts
  it again. Every departing client therefore held its socket (in CLOSE_WAIT,
  or closed but not released) for ``keep_alive_timeout``; under connection
  churn sockets and memory piled up.
* The timer task is started after every response and cancelled at the next
  request: two task operations per request, about 9% of a request's CPU in
  the benchmark's profiles.
* A response that ends before the request body has arrived closes the
  connection (h11 cannot start the next cycle), and that close runs in the
  application's task, inside its ``send``. The same ``send`` first hands the
  application ``http.disconnect``, on which Quart-Trio cancels its request
  nursery: the close was cancelled at its first checkpoint, before the FIN,
  and the connection was left neither closed nor reusable. The client's next
  request on it got no answer (every Quart route a client POSTs to and that
  answers without reading the body: 404, 405, 401).

It also has no deadline for a request head: bytes that never complete one
only meet the keep-alive timer, which a slowloris client outlasts by never
finishing its head (issue #15: half-sent heads were open for 75 s).

:class:`Connection` keeps one timer task per connection whose deadline each
request moves, ends it as soon as the client has gone, and closes the socket
under a shield. The same timer bounds the request head: a new connection must
complete its first head within ``header_timeout`` of the accept, and a
keep-alive connection its next head within ``header_timeout`` of that head's
first byte (the rule of Go's ``ReadHeaderTimeout`` and nginx's
``client_header_timeout``); a connection that misses it is closed, no 408, as
there is no request to answer yet. Only moving a deadline per read: no task,
no cancel scope (Hypercorn's ``read_timeout``, which would cost a scope per
read, is not honoured; the gateway does not set it).

On a plain (not TLS) socket it also reads and writes the socket directly:
it waits until readable and reads once, where Trio's ``receive_some`` first
tries a read that fails with ``BlockingIOError`` (raised and caught under two
context managers); and a write that the socket's buffer takes whole is one
``write(2)``, where Hypercorn's takes a lock, a shielded cancel scope and
Trio's ``send_all`` (another two context managers and a checkpoint). Only when
the buffer is full, or another write is under way, does it take Hypercorn's
path. Together these were about a third of the gateway's CPU per streamed
chunk (issue #15).

And it hands each HTTP request a way to write its streamed body without the
ASGI send path (``scope["extensions"]``, see :mod:`feathergate.typing`): once
a response's head is out through ASGI, each further piece is framed here (as
h11 would: a chunk, or raw bytes for an HTTP/1.0 client) and written with one
``write(2)``. Hypercorn's ``app_send``, h11's state machine and its event
objects cost more per streamed chunk than the write itself, and for a body
piece they change no state (h11's chunked writer only frames). The end of the
body still goes through ASGI, so h11 and Hypercorn close the response as
usual. Unlike Hypercorn's send, which is shielded and has no deadline, a
piece the socket cannot take at once is awaited under the caller's cancel
scope; cancelled with part of it written, the connection is aborted (a reset,
so a client that stopped reading frees its socket at once).

``worker_serve`` builds its connections from a module global, which
:func:`install` points at this class, after checking that Hypercorn still has
the shape this class was written against (hence the pin ``hypercorn<0.19`` in
pyproject.toml).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

import h11
import trio
from h11._writers import ChunkedWriter, Http10Writer
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import TCPServer

from feathergate.typing import BODY_EXTENSION, ResponseBody

__all__ = ["Connection", "ServerConfig", "install"]

MAX_RECV = 2**16  # Hypercorn's read size


class ServerConfig(HypercornConfig):
    """Hypercorn's config, plus what :class:`Connection` adds."""

    header_timeout: float | None = None  # seconds for a request head; None: keep-alive only


class _Timer:
    """Closes the connection when idle too long, when a head is too slow, or at shutdown."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        config = connection.config
        self._keep_alive = config.keep_alive_timeout
        header = config.header_timeout if isinstance(config, ServerConfig) else None
        self._header = header or math.inf  # off: heads are bounded by keep-alive alone
        self._scope: trio.CancelScope | None = None
        self._idle = False  # no request in progress (a head may be arriving)
        self._head_by = math.inf  # when the head under way must be complete
        self._head_started = False
        self._became_idle = trio.Event()
        self._client_gone = False

    async def restart(self, task_group: Any, action: Callable[..., Any]) -> None:
        # Hypercorn calls this when the connection turns idle; ``action`` is its
        # own one-shot timer, replaced here by the long-lived ``_run``.
        now = trio.current_time()
        self._idle = True
        self._became_idle.set()
        self._head_started = False
        if self._scope is None:  # a new connection: its first head is due from the accept
            self._head_by = now + self._header
            self._scope = trio.CancelScope(deadline=min(now + self._keep_alive, self._head_by))
            task_group.spawn(self._run)
        elif self._header < math.inf and self._connection.next_head_buffered():
            # It came while the last response was being sent (h11 holds it
            # until now): its clock starts here.
            self._head_started = True
            self._head_by = now + self._header
            self._scope.deadline = self._head_by
        else:
            self._head_by = math.inf
            self._scope.deadline = now + self._keep_alive

    def received(self) -> None:
        """Bytes arrived: on an idle connection, the first of them start a head."""
        if not self._idle or self._head_started or self._header == math.inf:
            return
        self._head_started = True
        if self._head_by == math.inf:
            self._head_by = trio.current_time() + self._header
        if self._scope is not None:
            self._scope.deadline = self._head_by

    async def stop(self) -> None:
        """A request head is complete: no timer until its response ends."""
        self._idle = False
        self._became_idle = trio.Event()
        if self._scope is not None:
            self._scope.deadline = math.inf

    @property
    def gone(self) -> bool:
        return self._client_gone

    def client_gone(self) -> None:
        self._client_gone = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self) -> None:
        assert self._scope is not None
        with self._scope:
            while True:
                await self._connection.context.terminated.wait()
                if self._idle:
                    break  # shutting down: an idle connection closes now
                await self._became_idle.wait()  # a busy one once its response is out
        if self._client_gone:
            return
        with trio.CancelScope(shield=True):
            await self._connection._initiate_server_close()


_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with a reset, drop what is queued


class _DirectBody:
    """One HTTP/1.1 response's body, framed here and written straight to the socket."""

    __slots__ = ("_chunked", "_connection", "_gone", "_partial", "_pending", "_sock")

    def __init__(self, connection: Connection, sock: trio.socket.SocketType, chunked: bool) -> None:
        self._connection = connection
        self._sock = sock
        self._chunked = chunked
        self._pending: bytes | memoryview = b""  # what wait_written still has to write
        self._partial = False  # part of the pending piece is out already
        self._gone = False  # the socket refused a write: the client has gone

    @property
    def closed(self) -> bool:
        return self._gone or self._connection.aborted

    def try_write(self, data: bytes) -> bool:
        if not data:  # an empty chunk would end the body
            return True
        if self.closed:
            return False
        frame = b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data
        if self._connection.send_lock.locked():  # a write is under way: in line behind it
            self._pending, self._partial = frame, False
            return False
        try:
            # fileno() each time: -1 once closed, where a kept number could be reused.
            sent = os.write(self._sock.fileno(), frame)
        except BlockingIOError:
            sent = 0
        except OSError:  # reset, or closed under us
            self._gone = True
            return False
        if sent == len(frame):
            return True
        self._pending, self._partial = memoryview(frame)[sent:], sent > 0
        return False

    async def wait_written(self) -> None:
        connection = self._connection
        try:
            if not self.closed:
                async with connection.send_lock:
                    await self._write_pending()
        except BaseException:
            # Cancelled (a deadline, a disconnect, shutdown) with part of a
            # piece out, taking the lock or waiting for room: nothing may follow it.
            if self._partial:
                self.abort()
            raise
        finally:
            self._pending, self._partial = b"", False
        if self._gone:
            # As Hypercorn does on a broken stream: the application hears of it.
            with trio.CancelScope(shield=True):
                await connection.protocol.handle(Closed())

    async def wait_writable(self) -> None:
        if self.closed:
            await trio.lowlevel.checkpoint()
            return
        try:
            await trio.lowlevel.wait_writable(self._sock)
        except (OSError, trio.ClosedResourceError):  # closed under us
            self._gone = True

    async def _write_pending(self) -> None:
        sock = self._sock
        while self._pending:
            try:
                await trio.lowlevel.wait_writable(sock)
                sent = os.write(sock.fileno(), self._pending)
            except BlockingIOError:  # a spurious wake-up
                continue
            except (OSError, trio.ClosedResourceError):  # reset, or closed under us
                self._gone = True
                return
            self._pending = self._pending[sent:]
            self._partial = True

    def abort(self) -> None:
        self._connection.abort()


class _Extensions:
    """Hypercorn's app wrapper, putting :meth:`Connection.open_body` in each HTTP scope."""

    __slots__ = ("_app", "_open_body")

    def __init__(self, app: Any, connection: Connection) -> None:
        self._app = app
        self._open_body = connection.open_body

    async def __call__(self, scope: dict[str, Any], *args: Any) -> None:
        if scope["type"] == "http":
            extensions = scope.get("extensions")
            scope["extensions"] = {**(extensions or {}), BODY_EXTENSION: self._open_body}
        await self._app(scope, *args)


class Connection(TCPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer = _Timer(self)
        self.idle_task = self._timer  # type: ignore[assignment]  # same two methods
        stream = self.stream
        self._plain = stream.socket if isinstance(stream, trio.SocketStream) else None
        self.app = _Extensions(self.app, self)  # type: ignore[assignment]  # same call
        self.aborted = False  # abort() was called: nothing more is written
        self._reading = trio.CancelScope()  # the read loop's; abort() cancels it

    def abort(self) -> None:
        """Give up on the client: write nothing more, and close with a reset.

        The read loop is ended, so the connection closes as usual once the
        application returns, but with no linger and no FIN first: the close is
        a reset that drops what the kernel still held for the client, who
        cannot take a truncated body for a whole one.
        """
        if self.aborted:
            return
        self.aborted = True
        self._reading.cancel()
        sock = self._plain if self._plain is not None else self.stream.transport_stream.socket
        with contextlib.suppress(OSError):  # closed already
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)

    def open_body(self) -> ResponseBody | None:
        """The body of the response under way, for direct writes; None where they cannot be.

        Only on a plain socket, over HTTP/1.1 (not after an upgrade to h2c), and
        only once h11 has chosen how the body is framed: chunks, or raw bytes to
        an HTTP/1.0 client. A body with a Content-Length goes through ASGI.
        """
        sock = self._plain
        protocol = self.protocol.protocol
        if sock is None or type(protocol) is not H11Protocol:
            return None
        writer = getattr(protocol.connection, "_writer", None)  # h11's own, per response
        if type(writer) is ChunkedWriter:
            return _DirectBody(self, sock, True)
        if type(writer) is Http10Writer:
            return _DirectBody(self, sock, False)
        return None

    def next_head_buffered(self) -> bool:
        """Whether bytes of the next request are waiting in h11's buffer."""
        protocol = self.protocol.protocol
        if isinstance(protocol, H11Protocol) and isinstance(protocol.connection, h11.Connection):
            return bool(protocol.connection.trailing_data[0])
        return False

    async def _read_data(self) -> None:
        # Hypercorn's loop, less ``read_timeout`` (see the module docstring),
        # plus telling the timer that bytes came, and ended by ``abort``
        # wherever it waits (h11 holding a pipelined request, it does not read).
        with self._reading:
            while True:
                try:
                    data = await self._receive()
                except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                    break
                if not data:
                    await self.protocol.handle(RawData(b""))
                    break
                self._timer.received()
                await self.protocol.handle(RawData(data))
        await self.protocol.handle(Closed())
        self._timer.client_gone()

    async def _receive(self) -> bytes:
        sock = self._plain
        if sock is None:
            return bytes(await self.stream.receive_some(MAX_RECV))
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return os.read(sock.fileno(), MAX_RECV)
            except BlockingIOError:  # a spurious wake-up
                continue

    async def _close(self) -> None:
        # It never blocks (``send_eof`` and ``aclose`` only), and it may run in
        # an application task that is being cancelled: see the module docstring.
        with trio.CancelScope(shield=True):
            if self.aborted:  # no FIN before the reset (see abort)
                await self.stream.aclose()
            else:
                await super()._close()

    async def protocol_send(self, event: Event) -> None:
        if type(event) is RawData and self.aborted:
            return  # part of a piece may be the last thing the client got
        if type(event) is RawData and self._plain is not None and not self.send_lock.locked():
            data = event.data
            try:
                sent = os.write(self._plain.fileno(), data)
            except BlockingIOError:
                sent = 0
            except OSError:  # reset, or closed under us: what Hypercorn does on a broken stream
                await self.protocol.handle(Closed())
                return
            if sent == len(data):
                # Still a schedule point, as Hypercorn's send is: a sender in a
                # loop must not starve the other tasks.
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            if sent:
                # The buffer took part of it: the rest waits in Hypercorn's
                # shielded send (nothing ran in between, so the order holds),
                # shielded from its lock on, as a cancel there would leave the
                # client with part of a chunk and the next bytes after it.
                with trio.CancelScope(shield=True):
                    await super().protocol_send(RawData(data[sent:]))
                return
            # The buffer is full: Hypercorn's path, as if we had not tried.
        # A response that ends after the client left would start the timer again.
        elif isinstance(event, Updated) and event.idle and self._timer.gone:
            return
        await super().protocol_send(event)


# What Connection overrides or relies on in Hypercorn's private TCPServer.
_TARGETS = ("_read_data", "_close", "_initiate_server_close", "protocol_send", "run")


def install(target: ModuleType = hypercorn_run) -> None:
    """Make ``target.worker_serve`` build :class:`Connection`; raise if Hypercorn moved on.

    Silently serving with Hypercorn's own class would bring back the bugs the
    module docstring lists, so a Hypercorn whose internals changed stops the
    gateway at startup instead.
    """
    current = getattr(target, "TCPServer", None)
    if current is Connection:
        return
    serve = getattr(target, "worker_serve", None)
    missing = [name for name in _TARGETS if not hasattr(current, name)]
    if (
        current is not TCPServer
        or missing
        or serve is None
        or "TCPServer" not in serve.__code__.co_names
    ):
        raise RuntimeError(
            f"feathergate.connection: {target.__name__}.worker_serve no longer builds "
            "its connections from hypercorn.trio.tcp_server.TCPServer as this module "
            "expects; install the Hypercorn version pyproject.toml pins"
        )
    setattr(target, "TCPServer", Connection)  # noqa: B010 - a module global, typed as a class
