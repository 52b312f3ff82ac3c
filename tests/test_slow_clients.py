"""Slow and lying clients: ``header_timeout`` for a request head, ``body_idle_timeout`` in a body.

Issue #15, part 4. Before, a half-sent head met only the keep-alive timer
(75 s), and a body that stopped after 10 of 1,000 announced bytes held its
connection for the whole ``body_timeout`` (600 s). The deadlines here are
short so that the tests are quick; each test also checks that a well-behaved
request on another connection is answered meanwhile. Lower bounds on the
time a close took are exact (a deadline cannot fire early); upper bounds are
only the generous ``fail_after`` of each wait.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from tests.conftest import gateway_config, run_gateway

HEADER_TIMEOUT = 0.5
BODY_IDLE_TIMEOUT = 0.5
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
PAYLOAD = json.dumps(CHAT).encode()


def head(length: int, path: str = "/v1/chat/completions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


@asynccontextmanager
async def gateway(**settings: Any) -> AsyncIterator[tuple[str, int]]:
    demo = {"model_name": "demo", "litellm_params": {"model": "openai/x", "mock_response": "ok"}}
    ours = {
        "shutdown_grace_period": 1,
        "keep_alive_timeout": 60,
        "header_timeout": HEADER_TIMEOUT,
        "body_idle_timeout": BODY_IDLE_TIMEOUT,
        **settings,
    }
    async with run_gateway(gateway_config([demo], feathergate_settings=ours)) as base:
        yield base, int(base.rsplit(":", 1)[1])


async def answered(base: str) -> None:
    """A well-behaved client, on its own connection, gets its answer."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "ok"


async def read_to_close(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    received = b""
    with trio.fail_after(10):
        try:
            while data := await stream.receive_some(65536):
                received += data
        except trio.BrokenResourceError:
            pass
    return received


async def response_on(stream: trio.SocketStream) -> bytes:
    """One response with a content-length, the connection left open."""
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed before a response: {data!r}"
            data += chunk
        response_head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in response_head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = await stream.receive_some(65536)
            assert chunk, "closed mid-body"
            body += chunk
    return response_head


# -- the request head ----------------------------------------------------------------------


async def test_a_half_sent_head_is_closed_after_header_timeout() -> None:
    async with gateway() as (base, port):
        sent = trio.current_time()  # before the connect: the server's clock starts at accept
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        await answered(base)
        assert await read_to_close(stream) == b""  # closed, and nothing to answer
        assert trio.current_time() - sent >= HEADER_TIMEOUT
        await stream.aclose()
        await answered(base)


async def test_a_connection_that_sends_nothing_is_closed_after_header_timeout() -> None:
    """Not after the 60 s keep-alive: a new connection owes its first head from the accept."""
    async with gateway() as (base, port):
        opened = trio.current_time()  # before the connect: the server's clock starts at accept
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert await read_to_close(stream) == b""
        assert trio.current_time() - opened >= HEADER_TIMEOUT
        await stream.aclose()
        await answered(base)


async def test_a_head_trickling_in_is_closed_at_header_timeout_all_the_same() -> None:
    """Bytes that keep coming do not move the deadline: the whole head must be in by then."""
    async with gateway() as (base, port):
        started = trio.current_time()  # before the connect: the server's clock starts at accept
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
        closed = False
        with trio.fail_after(10):
            for i in range(1000):
                try:
                    await stream.send_all(b"x-slow-%d: 1\r\n" % i)
                except trio.BrokenResourceError:
                    closed = True
                    break
                with trio.move_on_after(0.05):  # a slowloris client's pace, not a sync point
                    if await stream.receive_some(65536) == b"":
                        closed = True
                        break
        assert closed
        assert trio.current_time() - started >= HEADER_TIMEOUT
        await stream.aclose()
        await answered(base)


async def test_a_keep_alive_connection_idles_on_keep_alive_then_owes_its_next_head() -> None:
    """Between requests the keep-alive timer rules; the next head's first byte starts its clock."""
    async with gateway() as (base, port):
        kept = await trio.open_tcp_stream("127.0.0.1", port)
        await kept.send_all(head(len(PAYLOAD)) + PAYLOAD)
        assert (await response_on(kept)).startswith(b"HTTP/1.1 200")
        # The connection is now idle. Another connection's half head being closed for
        # its header timeout shows that more than that has passed since.
        witness = await trio.open_tcp_stream("127.0.0.1", port)
        await witness.send_all(b"GET /health HTTP/1.1\r\n")
        assert await read_to_close(witness) == b""
        await witness.aclose()
        # Idle longer than header_timeout, and still open: a whole request is answered.
        await kept.send_all(head(len(PAYLOAD)) + PAYLOAD)
        assert (await response_on(kept)).startswith(b"HTTP/1.1 200")
        # Now half a head: closed after header_timeout.
        sent = trio.current_time()
        await kept.send_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert await read_to_close(kept) == b""
        assert trio.current_time() - sent >= HEADER_TIMEOUT
        await kept.aclose()
        await answered(base)


async def test_header_timeout_zero_leaves_only_the_keep_alive_timer() -> None:
    async with gateway(header_timeout=0, keep_alive_timeout=HEADER_TIMEOUT * 2) as (base, port):
        sent = trio.current_time()  # before the connect: the keep-alive clock starts at accept
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert await read_to_close(stream) == b""
        assert trio.current_time() - sent >= HEADER_TIMEOUT * 2
        await stream.aclose()
        await answered(base)


# -- the request body ----------------------------------------------------------------------


async def test_a_lying_content_length_gets_a_408_after_body_idle_timeout() -> None:
    """10 of 1,000 announced bytes, then nothing: a 408 in OpenAI's shape, and the close."""
    async with gateway(body_timeout=600) as (base, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        sent = trio.current_time()
        await stream.send_all(head(1000) + PAYLOAD[:10])
        await answered(base)
        received = await read_to_close(stream)
        assert trio.current_time() - sent >= BODY_IDLE_TIMEOUT
        response_head, _, body = received.partition(b"\r\n\r\n")
        assert response_head.startswith(b"HTTP/1.1 408"), received
        assert b"\r\nconnection: close" in response_head.lower()
        error = json.loads(body)["error"]
        assert (error["type"], error["code"]) == ("timeout", "request_timeout")
        assert "stopped arriving" in error["message"]
        assert set(error) == {"message", "type", "param", "code"}
        await stream.aclose()
        await answered(base)


async def test_a_body_that_keeps_arriving_may_take_longer_than_the_idle_timeout() -> None:
    """Pauses well under ``body_idle_timeout``, a total well over it: answered 200."""
    spaces = 50  # leading whitespace keeps the JSON valid, one byte each 0.05 s: 2.5 s
    async with gateway(body_idle_timeout=1.0) as (base, port):
        started = trio.current_time()  # before the connect: the server's clock starts at accept
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(head(spaces + len(PAYLOAD)))
        for _ in range(spaces):
            await stream.send_all(b" ")
            await trio.sleep(0.05)  # the client's pace, not a sync point
        await stream.send_all(PAYLOAD)
        assert (await response_on(stream)).startswith(b"HTTP/1.1 200")
        assert trio.current_time() - started > 1.0
        await stream.aclose()
        await answered(base)
