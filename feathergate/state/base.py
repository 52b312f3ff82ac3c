"""The seam: what a gateway process shares with the others, whatever holds it.

Three primitives cover the router today and what comes next:

* **windowed counters** (:meth:`SharedState.acquire` / :meth:`settle`): a
  request is admitted against a :class:`Limit` in one atomic step, with a
  cost estimate reserved up front and replaced by the real amount later
  (rpm/tpm per deployment now; per key and team, and budget reservations,
  next). This is the only call a request waits for, and only when a limit
  is configured.
* **period counters** (:meth:`SharedState.reserve` / :meth:`release`):
  money spent in one budget period, a worst case reserved atomically
  against a cap before a call and replaced by the real cost after it
  (:mod:`.periods`).
* **a board** (:meth:`share`): every process posts a small row a few times a
  second and reads everyone's; it says who is alive (the fallback split) and
  carries gauges that may be a little stale (in flight, failures, latency).
* **a broadcast** (:meth:`publish` / :meth:`subscribe`): best-effort messages
  to every other process within milliseconds (cooldowns now, key-cache
  invalidation next). Anything that must not be lost is also on the board.

Rows and messages are JSON values. Nothing here fails a request: a backend
that cannot reach its store answers from local counts (``limit ÷ peers``), or
raises :class:`~feathergate.errors.SharedStateUnavailable` when configured to
fail closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

__all__ = ["DEFAULT_EVERY", "Grant", "Hold", "Limit", "Merge", "Row", "SharedState"]

DEFAULT_EVERY = 0.25  # seconds between two posts of a row on the board

Row = Callable[[], Any]  # this process's row, built at each post
Merge = Callable[[list[Any]], None]  # the other live processes' rows


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``requests`` and ``tokens`` (``None``: no such limit) in any ``window`` seconds.

    ``tokens`` is any amount (tokens today; spend in micro-units later). A
    request larger than the whole ``tokens`` limit still passes on an empty
    window, or it could never be served.
    """

    requests: int | None
    tokens: int | None
    window: float = 60.0

    def split(self, parts: int) -> Limit:
        """This limit's share for one of ``parts`` processes counting alone (at least 1)."""
        if parts <= 1:
            return self

        def share(value: int | None) -> int | None:
            return None if value is None else max(1, value // parts)

        return Limit(share(self.requests), share(self.tokens), self.window)


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to one :meth:`SharedState.acquire`.

    ``wait`` is the seconds until the request would fit (0 when admitted);
    ``requests`` and ``tokens`` are the window's totals. ``shared`` is false
    when only this process's counts decided. The rest says where the estimate
    was counted, for :meth:`SharedState.settle`.
    """

    admitted: bool
    wait: float
    requests: int
    tokens: int
    key: str = ""
    window: float = 60.0
    bucket: int = 0
    estimate: int = 0
    shared: bool = True


@dataclass(frozen=True, slots=True)
class Hold:
    """The answer to one :meth:`SharedState.reserve`.

    ``spent`` and ``reserved`` are the period's totals (this call's
    reservation included); ``amount`` is what this call holds (0 when refused).
    """

    admitted: bool
    spent: float
    reserved: float
    amount: float
    key: str = ""
    shared: bool = True


class SharedState(Protocol):
    @property
    def up(self) -> bool:
        """Whether the shared store answers; while not, counts are local."""

    @property
    def peers(self) -> int:
        """Live processes sharing the store, this one included, as last seen (at least 1)."""

    async def acquire(self, scope: str, ident: str, limit: Limit, tokens: int) -> Grant:
        """Count one request of ``tokens`` (an estimate) against ``limit`` if it fits.

        ``scope`` says what is limited (``deployment`` today) and ``ident``
        which one; together they name the counters.
        """

    def settle(self, grant: Grant, tokens: int) -> None:
        """Replace the estimate ``grant`` counted with the real ``tokens`` (queued, not awaited)."""

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
        """Reserve ``amount`` (or the headroom left under ``cap``) on a period's counter.

        ``period`` names the period (its reset instant, epoch seconds; 0 for
        a budget that never resets); ``seed`` is the spend a counter not seen
        before starts from; an unused counter is dropped after ``ttl`` seconds.
        """

    def release(self, hold: Hold, cost: float) -> None:
        """Replace ``hold``'s reservation by the real ``cost`` (queued, not awaited)."""

    def share(self, name: str, row: Row, merge: Merge, every: float = DEFAULT_EVERY) -> None:
        """Post ``row()`` on the board under ``name`` and hand the others' rows to ``merge``.

        Rows are posted (and read) at least every ``every`` seconds, so what
        a reader acts on is at most about twice that old.
        """

    def publish(self, topic: str, message: Any) -> None:
        """Send ``message`` to every other process's ``topic`` handlers (queued, best effort)."""

    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> None:
        """Call ``handler(message)`` for every message another process publishes on ``topic``."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connection, the board and the broadcast going until cancelled."""
