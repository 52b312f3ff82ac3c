"""CPU-heavy work on large request bodies, kept off the event loop.

Parsing a 30 MB body and translating it for Anthropic or Gemini takes the
better part of a second; on the event loop that second is stolen from every
other relay's deadlines and tokens. So the parse, each attempt's
translation and the final freeing of a body of
:data:`~feathergate.clientjson.LARGE_BODY` bytes or more run in a worker
thread, at most :data:`MAX_THREADS` at once (more would only queue on the
GIL; the rest wait their turn on the limiter, not on the loop). Smaller
bodies are handled in place: a thread round trip costs more than their work.

The thread shares the GIL with the loop, which gets it back at the next
switch interval, but never in the middle of one C call: what the thread
does to a large body is done in pieces (see :mod:`feathergate.clientjson`).
Nor during a garbage collection, and translating a large body allocates
enough to trigger full ones, 40-110 ms each, one after the other: the
cyclic collector is paused while such work runs (objects are still freed
as their references go; only cycles wait). ``scripts/hostile_probe.py``
measures what a concurrent stream sees.

Cancellation: the work is pure CPU and touches nothing shared, so it is not
abandoned (trio's default, ``abandon_on_cancel=False``). A client that leaves
mid-translation has its relay end once the thread returns, a fraction of a
second later; an abandoned thread would instead keep running, and keep its
limiter slot and its copy of the body, with nobody waiting for it.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import trio
from trio.lowlevel import RunVar

from feathergate.clientjson import LARGE_BODY

__all__ = ["MAX_THREADS", "run"]

T = TypeVar("T")

MAX_THREADS = 2
# A loop thread waiting for the GIL takes it after this long (CPython's
# default is 5 ms); a stream's first token takes a dozen such waits.
_SWITCH = 0.0005

_limiter: RunVar[trio.CapacityLimiter] = RunVar("feathergate.offload")


def _current_limiter() -> trio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(MAX_THREADS)
        _limiter.set(limiter)
        return limiter


async def run(work: Callable[[], T], *, size: int) -> T:
    """``work()``, in a worker thread when it concerns a body of ``size`` bytes or more."""
    if size < LARGE_BODY:
        return work()
    return await trio.to_thread.run_sync(_without_gc, work, limiter=_current_limiter())


class _Busy:
    """While workers run: the collector paused, the GIL handed over sooner; counted."""

    lock = threading.Lock()
    workers = 0
    collector = False  # whether the collector was on when the first worker began
    interval = 0.005  # the switch interval then


def _without_gc(work: Callable[[], T]) -> T:
    with _Busy.lock:
        if _Busy.workers == 0:
            _Busy.collector, _Busy.interval = gc.isenabled(), sys.getswitchinterval()
            gc.disable()
            sys.setswitchinterval(_SWITCH)
        _Busy.workers += 1
    try:
        return work()
    finally:
        with _Busy.lock:
            _Busy.workers -= 1
            if _Busy.workers == 0:
                sys.setswitchinterval(_Busy.interval)
                if _Busy.collector:
                    gc.enable()
