"""Budget counters: money spent in one calendar period, reserved before a call, settled after.

A counter is named by its scope (``key``, ``team``), its id and its period
(the instant the period resets, which every process reads from the key
store), so a new period is a new counter and an old one simply expires. It
holds two sums: ``spent`` (settled) and ``reserved`` (calls in flight). The
rule, the same in memory and in Redis (:data:`.scripts.RESERVE`): with a cap,
``headroom = cap - spent - reserved``; no headroom refuses, otherwise the call
reserves ``min(amount, headroom)``. A counter first met is seeded with the
spend the caller knows (the store's, plus what it settled since).
"""

from __future__ import annotations

from collections.abc import Callable

from feathergate.state.base import Hold

__all__ = ["Periods"]


class Periods:
    """Counters by key, on ``clock`` (seconds); a counter unused for its ``ttl`` is dropped."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._counts: dict[str, list[float]] = {}  # key -> [spent, reserved, expires_at]

    def _counter(self, key: str, seed: float, ttl: float) -> list[float]:
        now = self._clock()
        counter = self._counts.get(key)
        if counter is None or counter[2] <= now:
            counter = self._counts[key] = [seed, 0.0, now + ttl]
        else:
            counter[2] = now + ttl
        return counter

    def reserve(self, key: str, amount: float, cap: float | None, seed: float, ttl: float) -> Hold:
        counter = self._counter(key, seed, ttl)
        spent, reserved = counter[0], counter[1]
        if cap is not None:
            headroom = cap - spent - reserved
            if headroom <= 0:
                return Hold(False, spent, reserved, 0.0, key, False)
            amount = min(amount, headroom)
        counter[1] = reserved + amount
        return Hold(True, spent, counter[1], amount, key, False)

    def release(self, hold: Hold, cost: float) -> None:
        """Replace ``hold``'s reservation by the real ``cost`` (a lost counter stays lost)."""
        counter = self._counts.get(hold.key)
        if counter is None:
            return
        counter[1] = max(0.0, counter[1] - hold.amount)
        counter[0] += cost

    def mirror(self, key: str, spent: float, reserved: float, ttl: float) -> None:
        """Take the shared counter's totals: a fallback starts from them."""
        self._counts[key] = [spent, reserved, self._clock() + ttl]
