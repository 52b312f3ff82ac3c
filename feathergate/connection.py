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

:class:`Connection` keeps one timer task per connection whose deadline each
request moves, ends it as soon as the client has gone, and closes the socket
under a shield. ``worker_serve`` builds its connections from a module global,
which :func:`install` points at this class, after checking that Hypercorn
still has the shape this class was written against (hence the pin
``hypercorn<0.19`` in pyproject.toml).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import trio
from hypercorn.events import Event, Updated
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import TCPServer

__all__ = ["Connection", "install"]


class _IdleTimer:
    """Closes the connection after ``keep_alive_timeout`` idle, or at shutdown when idle."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._scope: trio.CancelScope | None = None
        self._idle = False
        self._became_idle = trio.Event()
        self._client_gone = False

    async def restart(self, task_group: Any, action: Callable[..., Any]) -> None:
        # Hypercorn calls this when the connection turns idle; ``action`` is its
        # own one-shot timer, replaced here by the long-lived ``_run``.
        self._idle = True
        self._became_idle.set()
        deadline = trio.current_time() + self._connection.config.keep_alive_timeout
        if self._scope is None:
            self._scope = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._run)
        else:
            self._scope.deadline = deadline

    async def stop(self) -> None:
        """A request is in progress: no timer until it ends."""
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


class Connection(TCPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer = _IdleTimer(self)
        self.idle_task = self._timer  # type: ignore[assignment]  # same two methods

    async def _read_data(self) -> None:
        await super()._read_data()
        self._timer.client_gone()

    async def _close(self) -> None:
        # It never blocks (``send_eof`` and ``aclose`` only), and it may run in
        # an application task that is being cancelled: see the module docstring.
        with trio.CancelScope(shield=True):
            await super()._close()

    async def protocol_send(self, event: Event) -> None:
        # A response that ends after the client left would start the timer again.
        if isinstance(event, Updated) and event.idle and self._timer.gone:
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
