"""What the relay needs from an upstream connection, whoever provides it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from feathergate.errors import InvalidUpstreamRequest

__all__ = ["Refused", "Transport", "UpstreamResponse"]


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Lower-case names."""
        ...

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as it arrives; ``None`` once it ended."""
        ...

    async def read(self) -> bytes: ...

    def close(self) -> None:
        """Release the connection (dropping it if the body was not read to the end)."""
        ...


class Transport(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float | None,
        on_sent: Callable[[], None] | None = None,
    ) -> UpstreamResponse: ...

    def close(self) -> None: ...


class Refused:
    """The transport of a deployment that cannot be called as configured: every call
    is :class:`InvalidUpstreamRequest`, and the other deployments keep serving."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float | None,
        on_sent: Callable[[], None] | None = None,
    ) -> UpstreamResponse:
        raise InvalidUpstreamRequest(self.reason)

    def close(self) -> None:
        pass
