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
    in_flight: int
    entries: tuple[UsageEntry, ...]  # oldest first, all later than ``since``

    @property
    def requests(self) -> int:
        return sum(e.requests for e in self.entries)

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.entries)


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

    def load(self, dep_id: str, since: float) -> Load: ...

    def add_sample(self, dep_id: str, kind: str, value: float, at: float, keep: int) -> None:
        """Record a latency sample; only the newest ``keep`` of each kind are kept."""

    def samples(self, dep_id: str, kind: str, since: float) -> list[float]: ...

    def add_failure(self, dep_id: str, at: float) -> None: ...

    def clear_failures(self, dep_id: str) -> None: ...

    def cool(self, dep_id: str, until: float) -> None:
        """Cool down until ``until``; an earlier ``until`` never shortens a cooldown."""

    def health(self, dep_id: str, since: float) -> Health: ...


class _Entry:
    __slots__ = ("at", "requests", "tokens")

    def __init__(self, at: float, requests: int, tokens: int) -> None:
        self.at = at
        self.requests = requests
        self.tokens = tokens


class InMemoryState:
    """One process's state. ``window`` bounds how long usage and failures are kept."""

    def __init__(self, *, window: float = 60.0) -> None:
        self._window = window
        self._tickets = count()
        self._in_flight: dict[str, int] = {}
        self._log: dict[str, deque[_Entry]] = {}
        # A request that outlives the window still needs its entry for ``end``.
        self._open: dict[int, _Entry] = {}
        self._samples: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._failures: dict[str, deque[float]] = {}
        self._cooldowns: dict[str, float] = {}

    def _entries(self, dep_id: str, now: float) -> deque[_Entry]:
        log = self._log.setdefault(dep_id, deque())
        while log and log[0].at <= now - self._window:
            log.popleft()
        return log

    def begin(self, dep_id: str, at: float, tokens: int) -> int:
        self._in_flight[dep_id] = self._in_flight.get(dep_id, 0) + 1
        entry = _Entry(at, 1, tokens)
        self._entries(dep_id, at).append(entry)
        ticket = next(self._tickets)
        self._open[ticket] = entry
        return ticket

    def end(self, dep_id: str, ticket: int, at: float, tokens: int | None) -> None:
        entry = self._open.pop(ticket, None)
        if entry is None:
            return
        self._in_flight[dep_id] = max(0, self._in_flight.get(dep_id, 0) - 1)
        if tokens is not None:
            # Usage counts in the minute it became known, as LiteLLM's tpm does.
            entry.tokens = 0
            self._entries(dep_id, at).append(_Entry(at, 0, tokens))

    def load(self, dep_id: str, since: float) -> Load:
        entries = tuple(
            UsageEntry(e.at, e.requests, e.tokens)
            for e in self._log.get(dep_id, ())
            if e.at > since
        )
        return Load(self._in_flight.get(dep_id, 0), entries)

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
