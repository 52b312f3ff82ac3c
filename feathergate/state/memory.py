"""The in-memory backend: one process's state, or several "processes" of one test.

Alone, a :class:`MemoryState` is what a gateway without Redis has, and what
the Redis backend counts on while Redis is away. Several states on one
:class:`MemoryHub` behave like processes sharing one Redis (one set of
counters, a board, a broadcast), with :meth:`MemoryHub.post` as the board's
tick: the router's sharing rules are tested on it with a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from feathergate.state.base import DEFAULT_EVERY, Grant, Hold, Limit, Merge, Row
from feathergate.state.periods import Periods
from feathergate.state.window import Windows

__all__ = ["MemoryHub", "MemoryState"]


class MemoryHub:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.windows = Windows(clock)
        self.periods = Periods(clock)
        self.members: list[MemoryState] = []

    def post(self) -> None:
        """One board tick: every member posts its rows and reads the others'."""
        rows = [member.rows() for member in self.members]
        for i, member in enumerate(self.members):
            member.merge([row for j, row in enumerate(rows) if j != i])


class MemoryState:
    def __init__(
        self, clock: Callable[[], float] | None = None, *, hub: MemoryHub | None = None
    ) -> None:
        self.hub = hub or MemoryHub(clock or trio.current_time)
        self.hub.members.append(self)
        self._sections: dict[str, tuple[Row, Merge]] = {}
        self._handlers: dict[str, list[Callable[[Any], None]]] = {}

    @property
    def up(self) -> bool:
        return True

    @property
    def peers(self) -> int:
        return len(self.hub.members)

    async def acquire(self, scope: str, ident: str, limit: Limit, tokens: int) -> Grant:
        return self.acquire_now(f"{scope}/{ident}", limit, tokens)

    def acquire_now(self, key: str, limit: Limit, tokens: int, *, force: bool = False) -> Grant:
        """:meth:`acquire` without a checkpoint; ``force`` counts even over the limit."""
        return self.hub.windows.acquire(key, limit, tokens, force=force)

    def settle(self, grant: Grant, tokens: int) -> None:
        self.hub.windows.settle(grant, tokens)

    async def reserve(
        self,
        scope: str,
        ident: str,
        period: int,
        amount: float,
        cap: float | None,
        *,
        seed: float,
        ttl: float,
    ) -> Hold:
        return self.hub.periods.reserve(f"{scope}/{ident}/{period}", amount, cap, seed, ttl)

    def release(self, hold: Hold, cost: float) -> None:
        self.hub.periods.release(hold, cost)

    def share(self, name: str, row: Row, merge: Merge, every: float = DEFAULT_EVERY) -> None:
        self._sections[name] = (row, merge)

    def rows(self) -> dict[str, Any]:
        return {name: row() for name, (row, _) in self._sections.items()}

    def merge(self, others: list[dict[str, Any]]) -> None:
        for name, (_, merge) in self._sections.items():
            merge([row[name] for row in others if name in row])

    def publish(self, topic: str, message: Any) -> None:
        for member in self.hub.members:
            if member is not self:
                member.deliver(topic, message)

    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def deliver(self, topic: str, message: Any) -> None:
        for handler in self._handlers.get(topic, ()):
            handler(message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()
