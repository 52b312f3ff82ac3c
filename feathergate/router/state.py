"""Everything the router remembers between requests, behind one narrow interface.

The router's decisions are pure functions of the config, the clock and what
:class:`RouterState` reports. :class:`InMemoryState` serves one process; a
shared backend (Redis sorted sets and counters map onto these calls one to
one) can implement the same protocol later so several gateways share load,
latency and cooldown data. All times are on the router's clock (seconds,
monotonic), never wall time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from itertools import count
from typing import Protocol

__all__ = ["Health", "InMemoryState", "Load", "RouterState", "UsageEntry"]


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """Requests and tokens counted at one instant of the sliding rpm/tpm window."""

    at: float
    requests: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Load:
    """A deployment's use of the sliding window, as totals (cheap on every request)."""

    in_flight: int
    requests: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Health:
    failures: int  # recorded later than ``since``
    cooldown_end: float  # 0.0 when the deployment was never cooled down


class RouterState(Protocol):
    """Per-deployment counters, keyed by ``Deployment.id``."""

    def begin(self, dep_id: str, at: float, tokens: int) -> int:
        """One more in flight and one request of ``tokens`` (an estimate); returns a ticket."""

    def end(self, dep_id: str, ticket: int, at: float, tokens: int | None) -> None:
        """One fewer in flight; real ``tokens`` replace the estimate, counted at ``at``.

        ``None`` keeps the estimate where it is. Unknown tickets are ignored.
        """

    def load(self, dep_id: str, since: float) -> Load:
        """Totals of what was counted later than ``since`` (which never moves back)."""

    def usage(self, dep_id: str, since: float) -> tuple[UsageEntry, ...]:
        """The same, entry by entry, oldest first: only to tell when a limit frees a slot."""

    def add_sample(self, dep_id: str, kind: str, value: float, at: float, keep: int) -> None:
        """Record a latency sample; only the newest ``keep`` of each kind are kept."""

    def samples(self, dep_id: str, kind: str, since: float) -> list[float]: ...

    def add_failure(self, dep_id: str, at: float) -> None: ...

    def clear_failures(self, dep_id: str) -> None: ...

    def cool(self, dep_id: str, until: float) -> None:
        """Cool down until ``until``; an earlier ``until`` never shortens a cooldown."""

    def health(self, dep_id: str, since: float) -> Health: ...


class _Bucket:
    """What one deployment counted within one second: memory stays bounded by the window."""

    __slots__ = ("last", "live", "requests", "second", "tokens")

    def __init__(self, second: int, at: float) -> None:
        self.second = second
        self.last = at  # the latest count in it: it leaves the window with this one
        self.requests = 0
        self.tokens = 0
        self.live = True


class _Log:
    __slots__ = ("buckets", "requests", "tokens")

    def __init__(self) -> None:
        self.buckets: deque[_Bucket] = deque()
        self.requests = 0
        self.tokens = 0

    def trim(self, since: float) -> None:
        buckets = self.buckets
        while buckets and buckets[0].last <= since:
            gone = buckets.popleft()
            gone.live = False
            self.requests -= gone.requests
            self.tokens -= gone.tokens

    def add(self, at: float, requests: int, tokens: int) -> _Bucket:
        second = int(at)
        if self.buckets and self.buckets[-1].second == second:
            bucket = self.buckets[-1]
        else:
            bucket = _Bucket(second, at)
            self.buckets.append(bucket)
        bucket.last = max(bucket.last, at)
        bucket.requests += requests
        bucket.tokens += tokens
        self.requests += requests
        self.tokens += tokens
        return bucket


class InMemoryState:
    """One process's state. ``window`` bounds how long usage and failures are kept.

    Usage is kept per second with running totals, so reading a deployment's
    load costs the same at 1 and at 10,000 requests a minute, and memory is
    bounded by the window, not by the traffic.
    """

    def __init__(self, *, window: float = 60.0) -> None:
        self._window = window
        self._tickets = count()
        self._in_flight: dict[str, int] = {}
        self._logs: dict[str, _Log] = {}
        # A request that outlives the window still needs its estimate for ``end``.
        self._open: dict[int, tuple[_Bucket, int]] = {}
        self._samples: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._failures: dict[str, deque[float]] = {}
        self._cooldowns: dict[str, float] = {}

    def _log(self, dep_id: str, now: float) -> _Log:
        log = self._logs.get(dep_id)
        if log is None:
            log = self._logs[dep_id] = _Log()
        log.trim(now - self._window)
        return log

    def begin(self, dep_id: str, at: float, tokens: int) -> int:
        self._in_flight[dep_id] = self._in_flight.get(dep_id, 0) + 1
        bucket = self._log(dep_id, at).add(at, 1, tokens)
        ticket = next(self._tickets)
        self._open[ticket] = (bucket, tokens)
        return ticket

    def end(self, dep_id: str, ticket: int, at: float, tokens: int | None) -> None:
        opened = self._open.pop(ticket, None)
        if opened is None:
            return
        self._in_flight[dep_id] = max(0, self._in_flight.get(dep_id, 0) - 1)
        if tokens is not None:
            # Usage counts in the second it became known, as LiteLLM's tpm does.
            bucket, estimate = opened
            log = self._log(dep_id, at)
            if bucket.live:
                bucket.tokens -= estimate
                log.tokens -= estimate
            log.add(at, 0, tokens)

    def load(self, dep_id: str, since: float) -> Load:
        log = self._logs.get(dep_id)
        if log is None:
            return Load(self._in_flight.get(dep_id, 0), 0, 0)
        log.trim(since)
        return Load(self._in_flight.get(dep_id, 0), log.requests, log.tokens)

    def usage(self, dep_id: str, since: float) -> tuple[UsageEntry, ...]:
        log = self._logs.get(dep_id)
        if log is None:
            return ()
        log.trim(since)
        return tuple(UsageEntry(b.last, b.requests, b.tokens) for b in log.buckets)

    def add_sample(self, dep_id: str, kind: str, value: float, at: float, keep: int) -> None:
        samples = self._samples.setdefault((dep_id, kind), deque())
        samples.append((at, value))
        while len(samples) > max(keep, 1):
            samples.popleft()

    def samples(self, dep_id: str, kind: str, since: float) -> list[float]:
        return [value for at, value in self._samples.get((dep_id, kind), ()) if at > since]

    def add_failure(self, dep_id: str, at: float) -> None:
        failures = self._failures.setdefault(dep_id, deque())
        while failures and failures[0] <= at - self._window:
            failures.popleft()
        failures.append(at)

    def clear_failures(self, dep_id: str) -> None:
        self._failures.pop(dep_id, None)

    def cool(self, dep_id: str, until: float) -> None:
        self._cooldowns[dep_id] = max(until, self._cooldowns.get(dep_id, 0.0))

    def health(self, dep_id: str, since: float) -> Health:
        failures = sum(1 for at in self._failures.get(dep_id, ()) if at > since)
        return Health(failures, self._cooldowns.get(dep_id, 0.0))

    def retain(self, dep_ids: Collection[str]) -> None:
        """Forget the windows, samples, failures and cooldowns of every other deployment.

        In-flight counts and open tickets stay: requests that a reload left
        running on a removed deployment still end here.
        """
        keep = set(dep_ids)
        for table in (self._logs, self._failures, self._cooldowns):
            for dep_id in [k for k in table if k not in keep]:
                del table[dep_id]
        for key in [k for k in self._samples if k[0] not in keep]:
            del self._samples[key]
