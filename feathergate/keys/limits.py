"""Rate limits of keys and teams: requests and tokens per minute, requests in parallel.

:class:`RateCounters` is the interface the service counts through; its
signature follows the shared-state seam's ``acquire``/``settle`` so that a
thin adapter backs it with Redis. :class:`MemoryCounters` is the in-process
backend: a 60-second window from the first request (LiteLLM's v3 limiter),
tokens reserved at admission and corrected at completion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["MemoryCounters", "MemoryGauges", "ParallelGauges", "RateCounters", "Ticket", "Window"]

WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``requests`` and ``tokens`` (``None``: no limit) per ``seconds``."""

    requests: int | None
    tokens: int | None
    seconds: float = WINDOW


class Ticket(Protocol):
    """What an admission answers (the seam's ``Grant`` has these attributes)."""

    @property
    def admitted(self) -> bool: ...
    @property
    def wait(self) -> float: ...
    @property
    def requests(self) -> int: ...
    @property
    def tokens(self) -> int: ...


class RateCounters(Protocol):
    async def acquire(self, scope: str, ident: str, limit: Window, tokens: int) -> Ticket:
        """Count one request of ``tokens`` (an estimate) if it fits ``limit``."""
        ...

    def settle(self, ticket: Ticket, tokens: int) -> None:
        """Replace the estimate ``ticket`` counted with the real ``tokens``."""
        ...


class ParallelGauges(Protocol):
    def enter(self, scope: str, ident: str, limit: int) -> bool:
        """Take one of ``limit`` slots; ``False`` when all are taken."""
        ...

    def leave(self, scope: str, ident: str) -> None: ...


@dataclass(slots=True)
class _Count:
    start: float
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class MemoryTicket:
    admitted: bool
    wait: float
    requests: int
    tokens: int
    key: tuple[str, str] = ("", "")
    start: float = 0.0
    estimate: int = 0


class MemoryCounters:
    def __init__(self, clock: object) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]

    async def acquire(self, scope: str, ident: str, limit: Window, tokens: int) -> MemoryTicket:
        return self.acquire_now(scope, ident, limit, tokens)

    def acquire_now(self, scope: str, ident: str, limit: Window, tokens: int) -> MemoryTicket:
        now = self._now()
        key = (scope, ident)
        count = self._counts.get(key)
        if count is None or now >= count.start + limit.seconds:
            count = self._counts[key] = _Count(now)
        wait = count.start + limit.seconds - now
        over_requests = limit.requests is not None and count.requests + 1 > limit.requests
        # A request larger than the whole token limit still passes on an empty window.
        over_tokens = (
            limit.tokens is not None and count.tokens > 0 and count.tokens + tokens > limit.tokens
        )
        if over_requests or over_tokens:
            return MemoryTicket(False, wait, count.requests, count.tokens, key, count.start)
        count.requests += 1
        count.tokens += tokens
        return MemoryTicket(True, 0.0, count.requests, count.tokens, key, count.start, tokens)

    def settle(self, ticket: Ticket, tokens: int) -> None:
        assert isinstance(ticket, MemoryTicket)
        count = self._counts.get(ticket.key)
        if ticket.admitted and count is not None and count.start == ticket.start:
            count.tokens = max(0, count.tokens + tokens - ticket.estimate)


class MemoryGauges:
    def __init__(self) -> None:
        self._inflight: dict[tuple[str, str], int] = {}

    def enter(self, scope: str, ident: str, limit: int) -> bool:
        key = (scope, ident)
        current = self._inflight.get(key, 0)
        if current >= limit:
            return False
        self._inflight[key] = current + 1
        return True

    def leave(self, scope: str, ident: str) -> None:
        key = (scope, ident)
        current = self._inflight.get(key, 0) - 1
        if current <= 0:
            self._inflight.pop(key, None)
        else:
            self._inflight[key] = current
