"""State shared by every process of a gateway: the seam, and its two backends.

:mod:`.base` is the protocol (windowed counters, a board, a broadcast);
:mod:`.memory` serves one process (and models several in tests);
:mod:`.redis` shares through Redis or Valkey and falls back to local counts
when it cannot. :mod:`.settings` reads where Redis is from LiteLLM's keys.
The router (and, next, keys, teams and budgets) use the protocol only;
nothing but :mod:`.redis` imports coredis, and only when Redis is configured.
"""

from feathergate.state.base import Grant, Limit, SharedState
from feathergate.state.memory import MemoryHub, MemoryState
from feathergate.state.settings import SharedStateSettings

__all__ = ["Grant", "Limit", "MemoryHub", "MemoryState", "SharedState", "SharedStateSettings"]
