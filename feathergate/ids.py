"""Request ids: unique across processes and restarts, cheap enough for every request.

A random per-process prefix and a counter: no ``uuid4`` (an ``os.urandom``
call) per request, and two workers never collide, forked ones included.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["MAX_CLIENT_ID", "REQUEST_ID", "new_request_id", "request_id_from"]

REQUEST_ID = "feathergate.request_id"
"""The ASGI scope key under which Quart's routes find the request's id."""


def _reseed() -> None:
    global _prefix, _counter
    _prefix = "req_" + secrets.token_hex(6)
    _counter = itertools.count(1)


_prefix = ""
_counter = itertools.count(1)
_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    return f"{_prefix}{next(_counter):06x}"


# A client's id is taken as it is when it could not harm a log line or a header
# we forward: visible ASCII (no spaces, no control characters), bounded length.
MAX_CLIENT_ID = 128
_VISIBLE = frozenset(range(0x21, 0x7F))


def request_id_from(sent: bytes | None) -> str:
    """The client's own ``x-request-id`` when it is sane, else a new one."""
    if sent and len(sent) <= MAX_CLIENT_ID and _VISIBLE.issuperset(sent):
        return sent.decode("ascii")
    return new_request_id()
