"""ASGI callables, typed loosely on purpose: messages are plain dicts here.

Plus the one extension FeatherGate's own server puts in an HTTP scope:
``scope["extensions"][BODY_EXTENSION]`` opens the body of the response under
way for writes that skip the ASGI send path (:mod:`feathergate.connection`).
An application served by any other server does not find it and sends as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

__all__ = [
    "BODY_EXTENSION",
    "ASGIApp",
    "ASGIReceive",
    "ASGISend",
    "Message",
    "OpenBody",
    "ResponseBody",
    "Scope",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[Message]]
ASGISend = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, ASGIReceive, ASGISend], Awaitable[None]]

BODY_EXTENSION = "feathergate.body"


class ResponseBody(Protocol):
    """The rest of a response body whose head went out, written piece by piece.

    ``try_write`` writes a piece if the client's socket takes all of it at once,
    with no schedule point. When it returns False, part or none of the piece is
    written and ``wait_written`` must be awaited before anything else is sent;
    cancelled with part of the piece out, it aborts the connection (a client
    must never get part of a piece and then the next one). ``abort`` gives up
    on the client: its connection is reset and nothing more reaches it.
    ``closed`` is true once that happened or the client's socket refused a
    write (it has gone); writes then do nothing.
    """

    @property
    def closed(self) -> bool: ...

    def try_write(self, data: bytes) -> bool: ...

    async def wait_written(self) -> None: ...

    async def wait_writable(self) -> None:
        """Until the client's socket has room for a small write (the end of the body)."""
        ...

    def abort(self) -> None: ...


# Called once the response head is sent: None where this response's body
# cannot be written directly (HTTP/2, a body with a Content-Length, ...).
OpenBody = Callable[[], ResponseBody | None]
