"""Request ids: unique across processes and restarts, cheap enough for every request.

A random per-process prefix and a counter: no ``uuid4`` (an ``os.urandom``
call) per request, and two workers never collide, forked ones included.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["new_request_id"]


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
