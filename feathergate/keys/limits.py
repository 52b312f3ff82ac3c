"""Requests in parallel per key and team (``max_parallel_requests``).

rpm and tpm go through the state seam (``SharedState.acquire``/``settle``,
scopes ``api_key`` and ``team``), so they hold across processes when Redis
is configured. Parallel requests are counted here, per process: a slot is
held for the whole call, and a lease in Redis would need a heartbeat to
survive a process that dies holding it. With N processes a key may thus
have up to N times its limit in flight.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MemoryGauges", "ParallelGauges"]


class ParallelGauges(Protocol):
    def enter(self, scope: str, ident: str, limit: int) -> bool:
        """Take one of ``limit`` slots; ``False`` when all are taken."""
        ...

    def leave(self, scope: str, ident: str) -> None: ...


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
