"""LiteLLM's durations (``30s``, ``5m``, ``1h``, ``1d``, ``7d``, ``1w``, ``30d``, ``1mo``) and
the calendar instants budgets reset at.

Pure: every function takes the current time as an argument, so the alignment is
tested on a fake clock. Alignment follows LiteLLM: ``1d`` resets at the next
midnight, ``7d``/``1w`` on the next Monday, ``30d``/``1mo`` on the 1st of the
next month, other ``Nd`` at midnight ``N`` days on, ``Nh``/``Nm``/``Ns`` at the
next multiple of ``N`` on the clock (counted from midnight). All in the
configured time zone (``litellm_settings.timezone``, default UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

__all__ = ["Duration", "add_duration", "next_reset", "parse_duration"]

_PATTERN = re.compile(r"^\s*(\d+)\s*(mo|months?|min|mins|hr|hrs|s|m|h|d|w)\s*$")
_UNITS = {
    "s": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "d": "d",
    "w": "w",
    "mo": "mo",
    "month": "mo",
    "months": "mo",
}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Duration:
    count: int
    unit: str  # one of s m h d w mo

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_duration(text: str) -> Duration:
    """``"30d"`` -> Duration(30, "d"); raises ValueError for a bare number or unknown unit."""
    match = _PATTERN.match(str(text))
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit, one of s, m, h, d, w, mo "
            "(e.g. '30s', '1h', '7d', '1mo')"
        )
    count = int(match.group(1))
    if count <= 0:
        raise ValueError(f"invalid duration {text!r}: must be more than zero")
    return Duration(count, _UNITS[match.group(2)])


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    last = (datetime(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last))


def add_duration(moment: datetime, duration: Duration) -> datetime:
    """``moment + duration`` exactly (a key's ``duration``); months are calendar months."""
    if duration.unit == "mo":
        return _add_months(moment, duration.count)
    return moment + timedelta(seconds=duration.count * _SECONDS[duration.unit])


def next_reset(now: datetime, duration: Duration, tz: tzinfo) -> datetime:
    """The first calendar-aligned reset instant strictly after ``now`` (an aware datetime)."""
    local = now.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    count, unit = duration.count, duration.unit
    if unit == "mo" or (unit == "d" and count == 30):
        months = count if unit == "mo" else 1
        return _add_months(midnight.replace(day=1), months)
    if (unit == "d" and count == 7) or unit == "w":
        weeks = 1 if unit == "d" else count
        days_to_monday = 7 - local.weekday()
        return _wall(midnight, days_to_monday + 7 * (weeks - 1), tz)
    if unit == "d":
        return _wall(midnight, count, tz)
    step = count * _SECONDS[unit]
    elapsed = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)).total_seconds()
    boundary = (int(elapsed // step) + 1) * step
    if boundary >= 86400:  # a step that does not divide the day restarts at midnight
        return _wall(midnight, 1, tz)
    return (midnight.replace(tzinfo=None) + timedelta(seconds=boundary)).replace(tzinfo=tz)


def _wall(midnight: datetime, days: int, tz: tzinfo) -> datetime:
    """Local midnight ``days`` later, by the wall clock (a DST change does not shift it)."""
    naive = midnight.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=tz)
