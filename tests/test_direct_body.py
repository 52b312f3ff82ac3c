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
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing
from prometheus_client import REGISTRY

from tests.fakes.tcp_upstream import Behaviour, Mode, TCPUpstream, tcp_upstream
from tests.support.rawclient import RawClient, read_sse_until, request_bytes
from tests.test_cancellation import MESSAGES, config, gateway, serving

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


async def read_to_end(client: RawClient) -> str:
    """Read until the connection ends: "end" (a FIN) or "reset"."""
    try:
        while data := await client.stream.receive_some(65536):
            client.received += data
    except trio.BrokenResourceError as exc:
        return "reset" if isinstance(exc.__cause__, ConnectionResetError) else repr(exc)
    return "end"


def stalls() -> float:
    sample = REGISTRY.get_sample_value(
        "feathergate_deadline_expiries_total", {"kind": "client_stall"}
    )
    return sample or 0.0


async def test_a_slow_reader_gets_every_byte_in_order(upstream: TCPUpstream) -> None:
    # 128 events of 64 KB (8 MB, twice Linux's largest default send buffer)
    # into a 4 KB receive window: the gateway's writes must stop partway and
    # wait for room, and the rest of a piece must go out before the next.
    upstream.behaviour = Behaviour(Mode.STREAM, events=128, event_size=65_536)
    async with gateway(config(upstream.url)) as (_, port):
        client = await RawClient.post(port, STREAM, rcvbuf=4096)
        with trio.fail_after(60):
            while data := await client.stream.receive_some(65536):
                client.received += data
                if client.received.endswith(b"\r\n0\r\n\r\n"):
                    break
        head, _, body = bytes(client.received).partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        texts = [t for t in contents(dechunk(body)) if t]
        assert len(texts) == 128
        assert all(len(t) == 65_536 for t in texts)
        await client.stream.aclose()


async def test_an_http10_client_gets_the_events_raw_and_a_close(upstream: TCPUpstream) -> None:
    # Big events into a small window here too: raw pieces written in parts.
    upstream.behaviour = Behaviour(Mode.STREAM, events=128, event_size=65_536)
    async with gateway(config(upstream.url)) as (_, port):
        payload = json.dumps(STREAM).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.0\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        ) % (len(payload), payload)
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        await stream.send_all(request)
        received = bytearray()
        with trio.fail_after(60):
            while data := await stream.receive_some(65536):
                received += data
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding" not in head.lower()
        texts = [t for t in contents(body) if t]
        assert len(texts) == 128
        assert all(len(t) == 65_536 for t in texts)
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
        # The connection is closed with a reset, and no FIN before it: the
        # client reads what its own buffer held, then the reset (never an
        # end it could take for a whole body).
        with trio.fail_after(10):
            assert await read_to_end(client) == "reset"
        await client.stream.aclose()
        # And the gateway serves the next client as usual.
        upstream.behaviour = Behaviour(Mode.STREAM, events=3)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=STREAM)
        assert response.status_code == 200
        assert len([t for t in contents(response.content) if t]) == 3


def framing(body: bytes) -> str:
    """How a chunked body ends: "complete", or "truncated" inside a chunk with nothing after.

    Fails on anything else, such as the next chunk right after part of one.
    """
    pos = 0
    while pos < len(body):
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return "truncated"  # inside a chunk's size line
        size = int(body[pos:line_end], 16)
        start = line_end + 2
        if size == 0:
            assert body[start:] in (b"", b"\r", b"\r\n"), body[start : start + 200]
            return "complete" if body[start:] == b"\r\n" else "truncated"
        end = start + size
        if end + 2 > len(body):
            return "truncated"
        assert body[end : end + 2] == b"\r\n", body[end - 50 : end + 200]
        pos = end + 2
    return "truncated"


async def test_shutdown_during_a_stalled_write_never_garbles_the_framing(
    upstream: TCPUpstream,
) -> None:
    # The client stops reading with a 16 KB piece (likely) partly written;
    # the grace period then ends while the pump waits for room. Either the
    # piece was not begun and the error event follows whole pieces, or the
    # connection is reset right after the part: never another chunk after it.
    upstream.behaviour = Behaviour(Mode.FLOOD, event_size=16_384)
    settings = {"shutdown_grace_period": 0.3, "client_stall_timeout": 30, "tcp_user_timeout": 0}
    async with serving(config(upstream.url, settings=settings)) as (port, stop):
        client = await RawClient.post(port, STREAM, rcvbuf=4096)
        with trio.fail_after(5):
            await read_sse_until(client, 1)
        stop.set()
        with trio.fail_after(10):
            await upstream.conns[-1].closed.wait()
            ended = await read_to_end(client)
        await client.stream.aclose()
    _, _, body = bytes(client.received).partition(b"\r\n\r\n")
    assert ended in ("end", "reset")
    shape = framing(body)
    assert shape == ("complete" if ended == "end" else "truncated")
    if shape == "complete":
        assert b'"shutting_down"' in dechunk(body)


def expiries(kind: str) -> float:
    sample = REGISTRY.get_sample_value("feathergate_deadline_expiries_total", {"kind": kind})
    return sample or 0.0


async def test_a_total_deadline_behind_a_slow_reader_is_the_upstreams(
    upstream: TCPUpstream,
) -> None:
    # The client reads, slowly: the gateway's writes wait for room when the
    # total deadline passes. That is the upstream's deadline, not a stall:
    # the piece under way goes out whole, then the error event, then the end.
    upstream.behaviour = Behaviour(Mode.FLOOD, event_size=65_536)
    before_total, before_stall = expiries("total"), expiries("client_stall")
    async with gateway(config(upstream.url, timeout=0.3)) as (_, port):
        client = await RawClient.post(port, STREAM, rcvbuf=4096)
        with trio.fail_after(30):
            while not client.received.endswith(b"\r\n0\r\n\r\n"):
                data = await client.stream.receive_some(4096)
                assert data, "closed before the end of the body"
                client.received += data
                await trio.sleep(0.01)  # a slow reader, not a synchronisation
        await client.stream.aclose()
    _, _, body = bytes(client.received).partition(b"\r\n\r\n")
    assert framing(body) == "complete"
    events = dechunk(body)
    assert b'"upstream_timeout"' in events.rsplit(b"\n\n", 3)[-2]
    assert expiries("total") == before_total + 1
    assert expiries("client_stall") == before_stall


def tasks() -> int:
    """Every task in this process's Trio run: the gateway's and the test's."""

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


async def test_a_reset_connection_ends_even_with_a_request_pipelined_behind(
    upstream: TCPUpstream,
) -> None:
    # With the next request already in h11's buffer, Hypercorn does not read
    # the socket: the reset must end the connection's read loop itself, or
    # its tasks outlive the socket until the server stops.
    upstream.behaviour = Behaviour(Mode.FLOOD, event_size=16_384)
    settings = {"client_stall_timeout": 0.3, "tcp_user_timeout": 0}
    async with gateway(config(upstream.url, settings=settings)) as (app, port):
        await trio.testing.wait_all_tasks_blocked()
        before = tasks()
        client = await RawClient.post(port, STREAM, rcvbuf=4096)
        await client.stream.send_all(request_bytes(STREAM))
        with trio.fail_after(5):
            await read_sse_until(client, 1)
        with trio.fail_after(10):
            await app.runtime.drain.wait_empty()
            assert await read_to_end(client) == "reset"
        await client.stream.aclose()
        with trio.fail_after(10):
            while tasks() > before:  # the connection's tasks are gone
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
