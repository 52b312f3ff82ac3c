"""The latest background check of each deployment, as ``/health`` shows it."""

from __future__ import annotations

from dataclasses import dataclass

import trio

__all__ = ["CheckResult", "CheckResults"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    healthy: bool
    checked_at: float  # wall clock, for people reading /health
    error: str | None = None  # plain words, never the upstream's own text


class CheckResults:
    """The latest outcome per deployment id, kept across reloads for ids that survive."""

    def __init__(self) -> None:
        self._latest: dict[str, CheckResult] = {}
        self.rounds = 0
        self.last_round: float | None = None
        self.round_done = trio.Event()  # set (and replaced) after each round

    def finish_round(self, at: float) -> None:
        self.rounds += 1
        self.last_round = at
        done, self.round_done = self.round_done, trio.Event()
        done.set()

    def record(self, dep_id: str, result: CheckResult) -> None:
        self._latest[dep_id] = result

    def get(self, dep_id: str) -> CheckResult | None:
        return self._latest.get(dep_id)

    def retain(self, dep_ids: set[str]) -> None:
        self._latest = {k: v for k, v in self._latest.items() if k in dep_ids}
