"""Redis key names: one namespace, and one hash tag per thing that must move together.

Redis Cluster maps a key to a slot by the part between the first ``{`` and
the next ``}``; a script may only touch keys of one slot. So every key of one
limit (its counters, later its leases) shares the tag ``{limit:<scope>:<id>}``,
and the board where every process posts its row has its own. Ids come from
the config and may contain braces; those are escaped so that an id can never
end a tag early or start another.
"""

from __future__ import annotations

__all__ = ["Keys", "hash_tag"]


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (the whole key when it has no tag)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


class Keys:
    """Names under ``namespace`` (LiteLLM's ``cache_params.namespace``; ``feathergate``)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = _escape(namespace)

    def limit(self, scope: str, ident: str) -> str:
        """The counters of one limit: ``scope`` is ``deployment`` today; keys, teams later."""
        return f"{self.namespace}:{{limit:{_escape(scope)}:{_escape(ident)}}}"

    def budget(self, scope: str, ident: str, period: int) -> str:
        """One budget period's counter; a period's successor is a new key."""
        return f"{self.namespace}:{{budget:{_escape(scope)}:{_escape(ident)}}}:{period}"

    def board(self) -> str:
        """Every process's row: who is alive, and what it tells the others."""
        return f"{self.namespace}:{{board}}"

    def channel(self) -> str:
        """The one pub/sub channel; messages carry their topic."""
        return f"{self.namespace}:events"
