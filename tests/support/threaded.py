"""Servers that outlive one test: a Trio run of their own on a background thread.

pytest-trio gives every test its own ``trio.run``, so a server shared by a
module (and by synchronous tests, hypothesis ones included) runs in a thread
with its own loop; tests talk to it over 127.0.0.1 like any client.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, TypeVar

import trio

__all__ = ["served_in_thread"]

T = TypeVar("T")

_START_TIMEOUT = 30.0


@contextmanager
def served_in_thread(make: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Enter ``make()`` on a Trio loop in a thread; yield what it yields, exit it after."""
    handoff: queue.Queue[Any] = queue.Queue()
    stop_box: list[trio.Event] = []
    token_box: list[trio.lowlevel.TrioToken] = []

    async def main() -> None:
        stop = trio.Event()
        stop_box.append(stop)
        token_box.append(trio.lowlevel.current_trio_token())
        async with make() as value:
            handoff.put(("ready", value))
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test thread, which fails the test
            handoff.put(("failed", exc))
        else:
            handoff.put(("stopped", None))

    thread = threading.Thread(target=run, name="served_in_thread", daemon=True)
    thread.start()
    kind, value = handoff.get(timeout=_START_TIMEOUT)
    if kind != "ready":
        raise RuntimeError("the server thread did not start") from value
    try:
        yield value
    finally:
        trio.from_thread.run_sync(stop_box[0].set, trio_token=token_box[0])
        thread.join(_START_TIMEOUT)
        kind, exc = handoff.get(timeout=_START_TIMEOUT)
        if kind == "failed":
            raise RuntimeError("the server thread failed") from exc
