"""A raw-socket HTTP/1.1 client that can leave at any moment, with a FIN or an RST."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import trio

__all__ = ["RawClient", "read_sse_until", "request_bytes"]


def request_bytes(body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    ).encode()
    return head + payload


class RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = bytearray()

    @classmethod
    async def post(
        cls,
        port: int,
        body: dict[str, Any],
        *,
        rcvbuf: int | None = None,
        path: str = "/v1/chat/completions",
    ) -> RawClient:
        sock = trio.socket.socket()
        if rcvbuf is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
        client = cls(trio.SocketStream(sock))
        await client.stream.send_all(request_bytes(body, path))
        return client

    async def read_until(self, marker: bytes) -> bytes:
        while marker not in self.received:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(f"connection closed before {marker!r}")
            self.received += data
        return bytes(self.received)

    async def read_all(self) -> bytes:
        while data := await self.stream.receive_some(65536):
            self.received += data
        return bytes(self.received)

    async def drop(self, *, rst: bool) -> float:
        """Close now (an RST when ``rst``); returns the trio time of the close."""
        if rst:
            self.stream.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        now = trio.current_time()
        await self.stream.aclose()
        return now


async def read_sse_until(client: RawClient, count: int) -> None:
    """Read until ``count`` SSE events have arrived."""
    while client.received.count(b"\n\n") < count:  # headers end in CRLF CRLF: not counted
        data = await client.stream.receive_some(65536)
        if not data:
            raise EOFError("connection closed mid-stream")
        client.received += data
