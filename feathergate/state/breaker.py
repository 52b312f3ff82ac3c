"""When to stop asking a shared store that does not answer.

After ``threshold`` failures in a row (errors or timeouts) the breaker opens:
requests stop calling the store and count locally. Only the background
board, which calls the store a few times a second anyway, probes it; its
first success closes the breaker again. So no request ever pays for a probe,
and recovery takes one board interval. Pure: the caller logs transitions.
"""

from __future__ import annotations

__all__ = ["Breaker"]


class Breaker:
    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self.closed = False  # nothing answered yet: count locally until something does
        self._failures = 0

    def success(self) -> bool:
        """Record an answer; true when this closed the breaker."""
        self._failures = 0
        if self.closed:
            return False
        self.closed = True
        return True

    def failure(self) -> bool:
        """Record an error or timeout; true when this opened the breaker."""
        self._failures += 1
        if self.closed and self._failures >= self.threshold:
            self.closed = False
            return True
        return False
