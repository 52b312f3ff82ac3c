"""A streamed body written straight to the socket (``feathergate.connection``), and its edges.

After the head and the first chunk, a stream's pieces skip Hypercorn's send
path: the connection frames them itself. These tests hold that path to what
the ASGI one guaranteed, on real sockets: every byte in order through a
client that reads slowly (partial writes), raw bytes for an HTTP/1.0 client,
the ASGI path for HTTP/2, and a client that stops reading is reset after
``client_stall_timeout`` even with ``TCP_USER_TIMEOUT`` off, which before
was the only thing that freed it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.lowlevel
from prometheus_client import REGISTRY

from tests.fakes.tcp_upstream import Behaviour, Mode, TCPUpstream, tcp_upstream
from tests.support.rawclient import RawClient, read_sse_until
from tests.test_cancellation import MESSAGES, config, gateway

STREAM = {"model": "m", "messages": MESSAGES, "stream": True}


@pytest.fixture
async def upstream() -> AsyncIterator[TCPUpstream]:
    async with tcp_upstream() as up:
        yield up


def dechunk(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body, decoded; fails on any framing error."""
    out = bytearray()
    pos = 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end], 16)
        start = line_end + 2
        if size == 0:
            assert body[start:] == b"\r\n", body[start:]
            return bytes(out)
        out += body[start : start + size]
        assert body[start + size : start + size + 2] == b"\r\n"
        pos = start + size + 2


def contents(events: bytes) -> list[str]:
    """The content of each chunk of an SSE body; asserts it ends with [DONE]."""
    assert events.endswith(b"data: [DONE]\n\n"), events[-200:]
    texts = []
    for event in events.split(b"\n\n")[:-2]:
        assert event.startswith(b"data: "), event[:100]
        chunk = json.loads(event[len(b"data: ") :])
        assert chunk["model"] == "m"
        texts += [c["delta"].get("content") or "" for c in chunk["choices"]]
    return texts


async def read_to_end(stream: trio.SocketStream) -> str:
    """Read until the connection ends: "end" (a FIN) or "reset"."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError as exc:
        return "reset" if isinstance(exc.__cause__, ConnectionResetError) else repr(exc)
    return "end"


def stalls() -> float:
    sample = REGISTRY.get_sample_value(
        "feathergate_deadline_expiries_total", {"kind": "client_stall"}
    )
    return sample or 0.0


async def test_a_slow_reader_gets_every_byte_in_order(upstream: TCPUpstream) -> None:
    # 4 KB events into a 4 KB receive window: most writes are partial, and
    # the rest of each piece waits for room before the next is written.
    upstream.behaviour = Behaviour(Mode.STREAM, events=200, event_size=4000)
    async with gateway(config(upstream.url)) as (_, port):
        client = await RawClient.post(port, STREAM, rcvbuf=4096)
        with trio.fail_after(30):
            while data := await client.stream.receive_some(1024):
                client.received += data
                if client.received.endswith(b"\r\n0\r\n\r\n"):
                    break
                await trio.lowlevel.checkpoint()  # let the gateway fill the window again
        head, _, body = bytes(client.received).partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        texts = contents(dechunk(body))
        assert len([t for t in texts if t]) == 200
        assert all(len(t) == 4000 for t in texts if t)
        await client.stream.aclose()


async def test_an_http10_client_gets_the_events_raw_and_a_close(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.STREAM, events=20)
    async with gateway(config(upstream.url)) as (_, port):
        payload = json.dumps(STREAM).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.0\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        ) % (len(payload), payload)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        received = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                received += data
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding" not in head.lower()
        assert len([t for t in contents(body) if t]) == 20
        await stream.aclose()


async def test_http2_streams_through_the_asgi_path(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.STREAM, events=30)
    async with gateway(config(upstream.url)) as (_, port):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        async with (
            httpx.AsyncClient(http1=False, http2=True, timeout=10) as client,
            client.stream("POST", url, json=STREAM) as response,
        ):
            assert response.http_version == "HTTP/2"
            assert response.status_code == 200
            body = await response.aread()
        assert len([t for t in contents(body) if t]) == 30


async def test_a_client_that_stops_reading_is_reset(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.FLOOD, event_size=16_384)
    # No TCP_USER_TIMEOUT: the reset alone must free the gateway's side.
    settings = {"client_stall_timeout": 0.3, "tcp_user_timeout": 0}
    before = stalls()
    async with gateway(config(upstream.url, settings=settings)) as (app, port):
        client = await RawClient.post(port, STREAM, rcvbuf=4096)
        with trio.fail_after(5):
            await read_sse_until(client, 1)
        # The client now reads nothing more; its socket stays open.
        with trio.fail_after(10):
            await upstream.conns[-1].closed.wait()
        with trio.fail_after(10):
            await app.runtime.drain.wait_empty()
        assert stalls() == before + 1
        # The connection is closed with a reset that drops what the kernel
        # still held for the client: reading on soon ends (an end or the
        # reset, depending on whether the client reads before the close),
        # where the upstream's flood would go on forever.
        with trio.fail_after(10):
            ended = await read_to_end(client.stream)
        assert ended in ("end", "reset")
        await client.stream.aclose()
        # And the gateway serves the next client as usual.
        upstream.behaviour = Behaviour(Mode.STREAM, events=3)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=STREAM)
        assert response.status_code == 200
        assert len([t for t in contents(response.content) if t]) == 3
