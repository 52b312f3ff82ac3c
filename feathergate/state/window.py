"""Sliding-window counters, the same rule in memory as in Redis (:mod:`.scripts`).

A window of ``W`` seconds is kept as 60 buckets of ``W / 60`` seconds. A
bucket counts until the last instant any of its entries could still be in
the window, ``(b + 1) · width + W``: so no ``W``-second span ever holds more
than the limit, and a slot frees at most one bucket (1 s for rpm) later than
an exact log would free it. Totals are kept running, so a check costs the
same at 1 and at 10,000 requests a minute.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from feathergate.state.base import Grant, Limit

__all__ = ["BUCKETS", "Windows", "bucket_of", "fits"]

BUCKETS = 60


def bucket_of(now: float, window: float) -> int:
    return math.floor(now / (window / BUCKETS))


def fits(limit: Limit, requests: int, tokens: int, cost: int) -> bool:
    over_requests = bool(limit.requests) and requests + 1 > (limit.requests or 0)
    over_tokens = bool(limit.tokens) and tokens > 0 and tokens + cost > (limit.tokens or 0)
    return not (over_requests or over_tokens)


class _Window:
    __slots__ = ("buckets", "requests", "tokens")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [bucket, requests, tokens], oldest first
        self.requests = 0
        self.tokens = 0

    def trim(self, oldest: int) -> None:
        while self.buckets and self.buckets[0][0] < oldest:
            _, requests, tokens = self.buckets.popleft()
            self.requests -= requests
            self.tokens -= tokens

    def add(self, bucket: int, requests: int, tokens: int) -> None:
        if self.buckets and self.buckets[-1][0] == bucket:
            entry = self.buckets[-1]
            entry[1] += requests
            entry[2] += tokens
        else:
            self.buckets.append([bucket, requests, tokens])
        self.requests += requests
        self.tokens += tokens

    def take_back(self, bucket: int, tokens: int) -> None:
        for entry in self.buckets:
            if entry[0] == bucket:
                entry[2] -= tokens
                self.tokens -= tokens
                return

    def wait(self, limit: Limit, cost: int, now: float) -> float:
        """Seconds until one more request of ``cost`` fits, walking buckets oldest first."""
        width = limit.window / BUCKETS
        requests, tokens = self.requests, self.tokens
        wait = 0.0
        for bucket, r, t in self.buckets:  # an empty window always fits
            if fits(limit, requests, tokens, cost):
                break
            requests -= r
            tokens -= t
            wait = (bucket + 1 + BUCKETS) * width - now
        return max(wait, 0.0)


class Windows:
    """Counters by key, on ``clock`` (seconds). Empty windows are dropped."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _current(self, key: str, window: float, now: float) -> tuple[_Window, int]:
        bucket = bucket_of(now, window)
        counter = self._windows.get(key)
        if counter is None:
            counter = self._windows[key] = _Window()
        counter.trim(bucket - BUCKETS)
        return counter, bucket

    def acquire(self, key: str, limit: Limit, tokens: int, *, force: bool = False) -> Grant:
        """Count one request if it fits ``limit`` (always, with ``force``)."""
        now = self._clock()
        counter, bucket = self._current(key, limit.window, now)
        if force or fits(limit, counter.requests, counter.tokens, tokens):
            counter.add(bucket, 1, tokens)
            totals = counter.requests, counter.tokens
            return Grant(True, 0.0, *totals, key, limit.window, bucket, tokens, False)
        wait = counter.wait(limit, tokens, now)
        if not counter.buckets:
            del self._windows[key]
        return Grant(
            False, wait, counter.requests, counter.tokens, key, limit.window, bucket, 0, False
        )

    def settle(self, grant: Grant, tokens: int) -> None:
        """Replace ``grant``'s estimate (if still in the window) by ``tokens`` counted now."""
        now = self._clock()
        counter, current = self._current(grant.key, grant.window, now)
        if grant.estimate:
            counter.take_back(grant.bucket, grant.estimate)
        if tokens:
            counter.add(current, 0, tokens)
        if not counter.buckets:
            del self._windows[grant.key]
