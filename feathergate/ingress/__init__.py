"""Front doors: one pure codec per client API.

A codec turns the bytes a client sent into a parsed request (a
:class:`feathergate.operations.base.ClientRequest`) or raises
:class:`feathergate.errors.InvalidRequest`; it does no I/O. Which codec serves
which path is written in :mod:`feathergate.endpoints`.
"""

from __future__ import annotations

from typing import Protocol

from feathergate.operations.base import ClientRequest

__all__ = ["Headers", "Ingress", "header"]

Headers = list[tuple[bytes, bytes]]
"""The request's headers as ASGI gives them: lower-case names, in order."""


def header(headers: Headers, name: bytes) -> bytes | None:
    """The value of ``name``; several occurrences are joined with commas (RFC 9110 §5.3)."""
    found = [bytes(value) for key, value in headers if key == name]
    if not found:
        return None
    return found[0] if len(found) == 1 else b",".join(found)


class Ingress(Protocol):
    def parse(self, raw: bytes, headers: Headers, query: bytes, max_messages: int) -> ClientRequest:
        """Raise :class:`feathergate.errors.InvalidRequest` for a malformed request.

        ``max_messages`` bounds the conversation (``feathergate_settings.max_messages``).
        """
        ...
