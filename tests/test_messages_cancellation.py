"""``/v1/messages`` on the one relay: disconnects, deadlines and shutdown, as for chat.

The upstream is the raw-socket OpenAI-style one of :mod:`tests.test_cancellation`
(the Messages door translates to it), so every phase can be held open and the
moment the gateway closes the upstream connection is measured. Errors come in
Anthropic's envelope: a 504 ``timeout_error`` before the first byte, an
``event: error`` frame after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from tests.fakes.tcp_upstream import Behaviour, Mode, TCPUpstream, tcp_upstream
from tests.support.messages import check_grammar, frames
from tests.support.rawclient import RawClient, read_sse_until
from tests.test_cancellation import (
    BOUND,
    config,
    disconnects,
    drop_and_time_upstream_close,
    gateway,
    serving,
)

BODY: dict[str, Any] = {
    "model": "m",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
async def upstream() -> AsyncIterator[TCPUpstream]:
    async with tcp_upstream() as up:
        yield up


async def post_messages(port: int, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"http://127.0.0.1:{port}/v1/messages", json=body)


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
async def test_disconnect_mid_stream_closes_the_upstream(upstream: TCPUpstream, rst: bool) -> None:
    upstream.behaviour = Behaviour(Mode.STREAM, events=10_000, interval=0.01)
    async with gateway(config(upstream.url)) as (app, port):
        client = await RawClient.post(port, {**BODY, "stream": True}, path="/v1/messages")
        with trio.fail_after(5):
            await read_sse_until(client, 3)
        assert b"event: message_start" in client.received
        before = disconnects(app, "streaming")
        assert await drop_and_time_upstream_close(client, upstream, rst=rst) < BOUND
        assert disconnects(app, "streaming") == before + 1
        with trio.fail_after(5):
            await app.runtime.drain.wait_empty()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_disconnect_while_waiting_for_the_upstream(
    upstream: TCPUpstream, stream: bool
) -> None:
    upstream.behaviour = Behaviour(Mode.HANG_HEADERS)
    async with gateway(config(upstream.url)) as (_, port):
        arrived = upstream.new_request
        client = await RawClient.post(port, {**BODY, "stream": stream}, path="/v1/messages")
        with trio.fail_after(5):
            await arrived.wait()
        assert await drop_and_time_upstream_close(client, upstream, rst=False) < BOUND


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_first_token_deadline_is_a_504_timeout_error(
    upstream: TCPUpstream, stream: bool
) -> None:
    upstream.behaviour = Behaviour(Mode.HANG_BODY if stream else Mode.HANG_HEADERS)
    async with gateway(config(upstream.url, first_token_timeout=0.2)) as (_, port):
        response = await post_messages(port, {**BODY, "stream": stream})
        assert response.status_code == 504
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "timeout_error"
        assert "first token" in body["error"]["message"]
        with trio.fail_after(5):
            await upstream.conns[-1].closed.wait()


async def test_idle_deadline_mid_stream_is_an_error_event(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.HANG_BODY, partial_events=2)
    async with gateway(config(upstream.url, stream_timeout=0.3)) as (_, port):
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"http://127.0.0.1:{port}/v1/messages"
            async with http.stream("POST", url, json={**BODY, "stream": True}) as response:
                assert response.status_code == 200
                raw = b"".join([part async for part in response.aiter_raw()])
        events = frames(raw)
        check_grammar(events, complete=False)
        assert events[-1][0] == "error"
        assert events[-1][1]["error"]["type"] == "timeout_error"
        assert "idle" in events[-1][1]["error"]["message"]
        with trio.fail_after(5):
            await upstream.conns[-1].closed.wait()


async def test_shutdown_past_the_grace_period_ends_the_stream_with_an_error_event(
    upstream: TCPUpstream,
) -> None:
    upstream.behaviour = Behaviour(Mode.HANG_BODY, partial_events=2)
    settings = {"shutdown_grace_period": 0.3}
    async with serving(config(upstream.url, settings=settings)) as (port, stop):
        client = await RawClient.post(port, {**BODY, "stream": True}, path="/v1/messages")
        await read_sse_until(client, 3)
        stop.set()
        with trio.fail_after(10):
            raw = await client.read_all()
        await client.stream.aclose()
    assert b'event: error\ndata: {"type": "error", "error": {"type": "api_error"' in raw
    assert b"shutting down" in raw
