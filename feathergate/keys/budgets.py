"""Budget reservations: admission reserves a call's worst case, completion settles it.

Pure bookkeeping over :class:`Bucket` objects, one per key or team and
process; the time is an argument. :class:`MemoryLedger` is the in-process
backend of the :class:`BudgetLedger` protocol that the service uses, so a
shared backend (the state seam's period counters) can take its place.

The rule: with ``headroom = max_budget - spend - reserved`` on every budget that
applies, a call is refused when some headroom is gone, and otherwise reserves
``min(worst case, smallest headroom)`` on all of them. The last call admitted
may therefore overshoot by at most its own worst case, and concurrent calls
can never overshoot together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from feathergate.keys.durations import next_reset, parse_duration

__all__ = [
    "Bucket",
    "BudgetLedger",
    "BudgetLimit",
    "MemoryLedger",
    "Refusal",
    "Reservation",
    "period_end",
]


@dataclass(slots=True)
class Bucket:
    """One key's or team's spend in its current period, as this process counts it."""

    spend: float
    reset_at: float | None  # epoch seconds; None: the budget never resets
    reserved: float = 0.0
    unflushed: float = 0.0  # settled here, not yet in the store


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """A budget to check: ``kind`` ("key"/"team") and ``ident`` name its bucket."""

    kind: str
    ident: str
    max_budget: float | None
    duration: str | None
    stored_spend: float  # the store's spend, to seed a bucket seen for the first time
    stored_reset_at: float | None


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: BudgetLimit
    spend: float


@dataclass(slots=True)
class Reservation:
    buckets: list[tuple[BudgetLimit, Bucket]] = field(default_factory=list)
    amount: float = 0.0
    resets: list[tuple[BudgetLimit, float, float]] = field(default_factory=list)
    settled: bool = False


def period_end(now: float, duration: str | None, tz: tzinfo) -> float | None:
    """When a budget of ``duration`` that starts a period at ``now`` resets next."""
    if not duration:
        return None
    moment = datetime.fromtimestamp(now, UTC)
    return next_reset(moment, parse_duration(duration), tz).timestamp()


class BudgetLedger(Protocol):
    def reserve(
        self, limits: Sequence[BudgetLimit], worst_case: float, now: float
    ) -> Reservation | Refusal:
        """Reserve ``worst_case`` (or what is left) on every limit, or say which one refuses."""
        ...

    def settle(self, reservation: Reservation, cost: float) -> None:
        """Replace the reservation by the real ``cost``."""
        ...

    def spend(self, kind: str, ident: str) -> float | None:
        """The current period's spend as known here (``None``: never seen)."""
        ...


class MemoryLedger:
    """Buckets in this process's memory: exact for one process."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.buckets: dict[tuple[str, str], Bucket] = {}

    def bucket(self, limit: BudgetLimit, now: float) -> tuple[Bucket, float | None]:
        """The limit's bucket, rolled into the current period; and the old reset instant
        when this call rolled it (the store must reset too)."""
        key = (limit.kind, limit.ident)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(limit.stored_spend, limit.stored_reset_at)
            if bucket.reset_at is None and limit.duration:
                bucket.reset_at = period_end(now, limit.duration, self.tz)
        if not limit.duration:
            bucket.reset_at = None
            return bucket, None
        if bucket.reset_at is not None and now >= bucket.reset_at:
            old = bucket.reset_at
            bucket.spend = 0.0
            bucket.unflushed = 0.0
            bucket.reset_at = period_end(now, limit.duration, self.tz)
            return bucket, old
        return bucket, None

    def reserve(
        self, limits: Sequence[BudgetLimit], worst_case: float, now: float
    ) -> Reservation | Refusal:
        reservation = Reservation()
        headroom = worst_case
        for limit in limits:
            bucket, rolled = self.bucket(limit, now)
            if rolled is not None and bucket.reset_at is not None:
                reservation.resets.append((limit, bucket.reset_at, rolled))
            reservation.buckets.append((limit, bucket))
            if limit.max_budget is None:
                continue
            left = limit.max_budget - bucket.spend - bucket.reserved
            if left <= 0:
                return Refusal(limit, bucket.spend)
            headroom = min(headroom, left)
        reservation.amount = max(headroom, 0.0)
        for _, bucket in reservation.buckets:
            bucket.reserved += reservation.amount
        return reservation

    def settle(self, reservation: Reservation, cost: float) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        for _, bucket in reservation.buckets:
            bucket.reserved = max(0.0, bucket.reserved - reservation.amount)
            bucket.spend += cost
            bucket.unflushed += cost

    def spend(self, kind: str, ident: str) -> float | None:
        bucket = self.buckets.get((kind, ident))
        return None if bucket is None else bucket.spend

    def flushed(self, kind: str, ident: str, amount: float) -> None:
        bucket = self.buckets.get((kind, ident))
        if bucket is not None:
            bucket.unflushed = max(0.0, bucket.unflushed - amount)

    def reseed(self, kind: str, ident: str, stored_spend: float) -> None:
        """An admin changed the stored spend: the store's value plus what is not written yet."""
        bucket = self.buckets.get((kind, ident))
        if bucket is not None:
            bucket.spend = stored_spend + bucket.unflushed

    def forget(self, kind: str, ident: str) -> None:
        self.buckets.pop((kind, ident), None)
