"""The router's state shared with other processes, through :mod:`feathergate.state`.

:class:`SharedRouterState` is the in-memory state plus what the peers said;
it stays synchronous and pure. It posts one row on the store's board (this
process's in-flight counts, failures in the last minute, the cooldowns it
knows, and its latency samples when the strategy reads them) and merges the
others' rows, so a decision reads peers' data as fresh as the board: posted
every 0.1 s for least-busy (in-flight counts at most about 0.2 s old), every
0.25 s otherwise. A cooldown is also broadcast the moment it starts.
Rows carry durations and ages, never timestamps: clocks of different hosts
need not agree.

What is exact and what is approximate:

* rpm/tpm are exact, but not here: :meth:`AttemptPlan.admit` asks the
  store's counters, one atomic script per request (see :mod:`.plan`);
* a cooldown reaches the others within milliseconds (broadcast) and at
  worst one board interval (its process's row repeats it until it ends);
* failures, in-flight counts and latency samples are the peers' as of their
  last row: a failure in one process counts towards ``allowed_fails``
  everywhere, a success clears only the failures its own process saw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from feathergate.router.state import Health, InMemoryState, Load
from feathergate.state.base import DEFAULT_EVERY, SharedState

__all__ = ["LEAST_BUSY_EVERY", "SharedRouterState"]

LEAST_BUSY_EVERY = 0.1  # least-busy reads peers' in-flight counts: keep them fresh

_KINDS = ("latency", "ttft")


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v > 0}


class SharedRouterState(InMemoryState):
    def __init__(
        self,
        store: SharedState,
        clock: Callable[[], float],
        *,
        window: float = 60.0,
        share_samples: bool = False,
        every: float = DEFAULT_EVERY,
    ) -> None:
        super().__init__(window=window)
        self._store = store
        self._clock = clock
        self._share_samples = share_samples
        self._peer_busy: dict[str, int] = {}
        self._peer_failures: dict[str, int] = {}
        self._peer_samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        # Cooldowns this process decided; only these go on its row. A row is a
        # little old when read, so echoing what others said would lengthen a
        # cooldown by that age on every hop, for ever.
        self._own_cooldowns: dict[str, float] = {}
        store.share("router", self.row, self.merge, every)
        store.subscribe("cooldown", self._heard_cooldown)

    # -- reads: own counts plus the peers' ---------------------------------------
    def load(self, dep_id: str, since: float) -> Load:
        own = super().load(dep_id, since)
        busy = self._peer_busy.get(dep_id)
        return Load(own.in_flight + busy, own.requests, own.tokens) if busy else own

    def health(self, dep_id: str, since: float) -> Health:
        own = super().health(dep_id, since)
        failures = self._peer_failures.get(dep_id)
        return Health(own.failures + failures, own.cooldown_end) if failures else own

    def samples(self, dep_id: str, kind: str, since: float) -> list[float]:
        own = super().samples(dep_id, kind, since)
        peers = self._peer_samples.get((dep_id, kind))
        return own + [value for at, value in peers if at > since] if peers else own

    # -- writes that the others must hear at once --------------------------------
    def cool(self, dep_id: str, until: float) -> None:
        super().cool(dep_id, until)
        self._own_cooldowns[dep_id] = max(until, self._own_cooldowns.get(dep_id, 0.0))
        remaining = until - self._clock()
        if remaining > 0:
            self._store.publish("cooldown", {"id": dep_id, "seconds": round(remaining, 3)})

    def _heard_cooldown(self, message: Any) -> None:
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            seconds = message.get("seconds")
            if isinstance(seconds, int | float) and seconds > 0:
                super().cool(message["id"], self._clock() + seconds)

    # -- the board ---------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        """This process's row: its own counts and cooldowns, never what the peers said."""
        now = self._clock()
        since = now - self._window
        failures = {}
        for dep_id in list(self._failures):
            count = super().health(dep_id, since).failures
            if count:
                failures[dep_id] = count
        self._own_cooldowns = {k: v for k, v in self._own_cooldowns.items() if v > now}
        row: dict[str, Any] = {
            "busy": {dep_id: n for dep_id, n in self._in_flight.items() if n},
            "failures": failures,
            "cool": {
                dep_id: round(end - now, 3)
                for dep_id, end in self._own_cooldowns.items()
                if end > now
            },
        }
        if self._share_samples:
            samples: dict[str, dict[str, list[list[float]]]] = {}
            for (dep_id, kind), entries in self._samples.items():
                samples.setdefault(dep_id, {})[kind] = [
                    [round(now - at, 3), value] for at, value in entries
                ]
            row["samples"] = samples
        return row

    def merge(self, rows: list[Any]) -> None:
        """The other live processes' rows replace what they said before."""
        now = self._clock()
        busy: dict[str, int] = {}
        failures: dict[str, int] = {}
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for row in rows:
            if not isinstance(row, dict):
                continue
            for dep_id, n in _counts(row.get("busy")).items():
                busy[dep_id] = busy.get(dep_id, 0) + n
            for dep_id, n in _counts(row.get("failures")).items():
                failures[dep_id] = failures.get(dep_id, 0) + n
            cool = row.get("cool")
            if isinstance(cool, dict):
                for dep_id, seconds in cool.items():
                    if isinstance(seconds, int | float) and seconds > 0:
                        super().cool(str(dep_id), now + seconds)
            for dep_id, kinds in (row.get("samples") or {}).items():
                for kind in _KINDS:
                    for age, value in (kinds or {}).get(kind) or ():
                        samples.setdefault((str(dep_id), kind), []).append(
                            (now - float(age), float(value))
                        )
        self._peer_busy = busy
        self._peer_failures = failures
        self._peer_samples = samples
