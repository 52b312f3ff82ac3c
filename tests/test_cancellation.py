"""The cancellation and disconnect harness.

Real Hypercorn, a raw-socket upstream that records when each of its
connections closed, and raw-socket clients that leave at every phase with a
FIN or an RST. Timing bounds here are generous on purpose (a loaded CI box);
the real distribution comes from ``scripts/cancel_probe.py``.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

from feathergate.app import create_app
from feathergate.config import Config, parse_config
from feathergate.gateway import Gateway
from tests.conftest import run_gateway
from tests.fakes.tcp_upstream import Behaviour, Mode, TCPUpstream, hang_connect, tcp_upstream
from tests.support.rawclient import RawClient, read_sse_until

BOUND = 0.5  # seconds: "at once" with room for a slow CI machine
MESSAGES = [{"role": "user", "content": "hi"}]


def config(api_base: str, **params: Any) -> Config:
    settings = params.pop("settings", {})
    raw = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {
                    "model": "openai/up",
                    "api_base": api_base,
                    "api_key": "k",
                    **params,
                },
            }
        ],
        "feathergate_settings": {"shutdown_grace_period": 1, **settings},
    }
    return parse_config(raw, {})


@asynccontextmanager
async def gateway(cfg: Config) -> AsyncIterator[tuple[Gateway, int]]:
    app = create_app(cfg)
    async with run_gateway(cfg, app) as base:
        yield app, int(base.rsplit(":", 1)[1])


def disconnects(app: Gateway, phase: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("feathergate_client_disconnects_total", {"phase": phase})
    return value or 0.0


async def settle() -> None:
    """Let every task run until it blocks on I/O (the gateway reaches its next await)."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.02)


async def drop_and_time_upstream_close(
    client: RawClient, upstream: TCPUpstream, *, rst: bool
) -> float:
    conn = upstream.conns[-1]
    dropped = await client.drop(rst=rst)
    with trio.fail_after(5):
        await conn.closed.wait()
    assert conn.closed_at is not None
    return conn.closed_at - dropped


@pytest.fixture
async def upstream() -> AsyncIterator[TCPUpstream]:
    async with tcp_upstream() as up:
        yield up


# -- disconnects at every phase ------------------------------------------------------


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
async def test_disconnect_while_connecting_cancels_the_connect(rst: bool) -> None:
    async with hang_connect() as base, gateway(config(base)) as (app, port):
        before = disconnects(app, "connect")
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES})
        await settle()
        assert len(app.runtime.drain) == 1
        dropped = await client.drop(rst=rst)
        with trio.fail_after(5):
            await app.runtime.drain.wait_empty()
        assert trio.current_time() - dropped < BOUND
        assert disconnects(app, "connect") == before + 1


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize(
    ("behaviour", "stream", "phase"),
    [
        (Behaviour(Mode.HANG_HEADERS), False, "upstream_headers"),
        (Behaviour(Mode.HANG_HEADERS), True, "upstream_headers"),
        (Behaviour(Mode.HANG_BODY, partial_events=0), True, "first_token"),
    ],
    ids=["headers-json", "headers-stream", "first-token"],
)
async def test_disconnect_while_waiting_on_the_upstream(
    upstream: TCPUpstream, behaviour: Behaviour, stream: bool, phase: str, rst: bool
) -> None:
    upstream.behaviour = behaviour
    async with gateway(config(upstream.url)) as (app, port):
        arrived = upstream.new_request
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES, "stream": stream})
        with trio.fail_after(5):
            await arrived.wait()
        await settle()
        before = disconnects(app, phase)
        assert await drop_and_time_upstream_close(client, upstream, rst=rst) < BOUND
        assert disconnects(app, phase) == before + 1


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
async def test_disconnect_mid_stream(upstream: TCPUpstream, rst: bool) -> None:
    upstream.behaviour = Behaviour(Mode.STREAM, events=10_000, interval=0.01)
    async with gateway(config(upstream.url)) as (app, port):
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES, "stream": True})
        with trio.fail_after(5):
            await read_sse_until(client, 3)
        before = disconnects(app, "streaming")
        assert await drop_and_time_upstream_close(client, upstream, rst=rst) < BOUND
        assert disconnects(app, "streaming") == before + 1
        with trio.fail_after(5):
            await app.runtime.drain.wait_empty()


async def test_a_thousand_mixed_cancel_cycles_leave_nothing_behind(upstream: TCPUpstream) -> None:
    rng = random.Random(1234)
    behaviours = {
        "headers": Behaviour(Mode.HANG_HEADERS),
        "first_token": Behaviour(Mode.HANG_BODY, partial_events=0),
        "streaming": Behaviour(Mode.HANG_BODY, partial_events=2),
    }

    async def cycle(phase: str, stream: bool, rst: bool) -> None:
        upstream.behaviour = behaviours[phase]
        arrived = upstream.new_request
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES, "stream": stream})
        if phase == "streaming":
            await read_sse_until(client, 2)
        else:
            await arrived.wait()
        await drop_and_time_upstream_close(client, upstream, rst=rst)

    async with gateway(config(upstream.url)) as (app, port):
        await cycle("headers", False, False)  # warm up lazily created objects
        with trio.fail_after(5):
            await app.runtime.drain.wait_empty()
        fds = len(os.listdir("/proc/self/fd"))
        with trio.fail_after(120):
            for _ in range(1000):
                phase = rng.choice(list(behaviours))
                stream = phase != "headers" or rng.random() < 0.5
                await cycle(phase, stream, rng.random() < 0.5)
            await app.runtime.drain.wait_empty()
        assert upstream.open_connections == 0
        assert len(os.listdir("/proc/self/fd")) == fds
        upstream.behaviour = Behaviour(Mode.JSON)
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "m", "messages": MESSAGES},
            )
        assert response.status_code == 200


# -- slow readers ------------------------------------------------------------------------


async def test_a_client_that_stops_reading_cannot_pin_the_upstream(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.FLOOD, event_size=16_384)
    cfg = config(upstream.url, settings={"client_stall_timeout": 0.3, "tcp_user_timeout": 1})
    async with gateway(cfg) as (app, port):
        client = await RawClient.post(
            port, {"model": "m", "messages": MESSAGES, "stream": True}, rcvbuf=4096
        )
        with trio.fail_after(5):
            await read_sse_until(client, 1)
        # The client now reads nothing more; its socket stays open.
        conn = upstream.conns[-1]
        with trio.fail_after(10):
            await conn.closed.wait()
        # TCP_USER_TIMEOUT then frees the gateway's side of the stuck client.
        with trio.fail_after(20):
            await app.runtime.drain.wait_empty()
        await client.stream.aclose()


# -- deadlines ---------------------------------------------------------------------------


async def post(port: int, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)


def assert_timeout(response: httpx.Response, kind: str) -> None:
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout"
    assert kind.replace("_", " ") in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_connect_deadline_is_a_504(stream: bool) -> None:
    async with hang_connect() as base, gateway(config(base, connect_timeout=0.2)) as (_, port):
        response = await post(port, {"model": "m", "messages": MESSAGES, "stream": stream})
        assert_timeout(response, "connect")


@pytest.mark.parametrize(
    ("mode", "stream"),
    [(Mode.HANG_HEADERS, False), (Mode.HANG_HEADERS, True), (Mode.HANG_BODY, True)],
    ids=["headers-json", "headers-stream", "body-stream"],
)
async def test_first_token_deadline_is_a_504(
    upstream: TCPUpstream, mode: Mode, stream: bool
) -> None:
    upstream.behaviour = Behaviour(mode, partial_events=0)
    async with gateway(config(upstream.url, first_token_timeout=0.2)) as (_, port):
        response = await post(port, {"model": "m", "messages": MESSAGES, "stream": stream})
        assert_timeout(response, "first_token")
        with trio.fail_after(5):
            await upstream.conns[-1].closed.wait()


async def test_total_deadline_without_a_stream_is_a_504(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.HANG_HEADERS)
    async with gateway(config(upstream.url, timeout=0.3)) as (_, port):
        assert_timeout(await post(port, {"model": "m", "messages": MESSAGES}), "total")


@pytest.mark.parametrize(
    ("behaviour", "params", "kind"),
    [
        (Behaviour(Mode.HANG_BODY, partial_events=2), {"stream_timeout": 0.3}, "idle"),
        (Behaviour(Mode.STREAM, events=10_000, interval=0.02), {"timeout": 0.4}, "total"),
    ],
    ids=["idle", "total"],
)
async def test_deadline_mid_stream_is_an_sse_error_and_a_clean_end(
    upstream: TCPUpstream, behaviour: Behaviour, params: dict[str, float], kind: str
) -> None:
    upstream.behaviour = behaviour
    async with gateway(config(upstream.url, **params)) as (_, port):
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": "m", "messages": MESSAGES, "stream": True}
            async with http.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body
            ) as response:
                assert response.status_code == 200
                raw = b"".join([part async for part in response.aiter_raw()])
        events = [e for e in raw.split(b"\n\n") if e]
        assert events[0].startswith(b'data: {"id"')
        assert events[-1].startswith(b'data: {"error"')
        assert kind.replace("_", " ") in events[-1].decode()
        assert b"[DONE]" not in raw
        with trio.fail_after(5):
            await upstream.conns[-1].closed.wait()


# -- shutdown ---------------------------------------------------------------------------


@asynccontextmanager
async def serving(cfg: Config) -> AsyncIterator[tuple[int, trio.Event]]:
    """Serve ``cfg`` as ``feathergate serve`` does; setting the event starts the shutdown.

    Leaving the block waits until the server has returned.
    """
    from feathergate.server import Bind, make_sockets, serve

    sockets = make_sockets(Bind("127.0.0.1", 0), cfg)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, cfg, sockets, shutdown_trigger=stop.wait))
        yield sockets.insecure_sockets[0].getsockname()[1], stop


async def test_shutdown_lets_streams_finish_within_the_grace_period(upstream: TCPUpstream) -> None:
    upstream.behaviour = Behaviour(Mode.STREAM, events=40, interval=0.01)
    async with serving(config(upstream.url, settings={"shutdown_grace_period": 20})) as (
        port,
        stop,
    ):
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES, "stream": True})
        await read_sse_until(client, 1)
        stop.set()
        with trio.fail_after(10):
            raw = await client.read_all()
        await client.stream.aclose()
    assert raw.rstrip(b"\r\n0").endswith(b"data: [DONE]")  # complete, despite shutdown


async def test_shutdown_ends_streams_past_the_grace_period_with_an_error(
    upstream: TCPUpstream,
) -> None:
    upstream.behaviour = Behaviour(Mode.HANG_BODY, partial_events=2)
    async with serving(config(upstream.url, settings={"shutdown_grace_period": 0.3})) as (
        port,
        stop,
    ):
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES, "stream": True})
        await read_sse_until(client, 2)
        stop.set()
        with trio.fail_after(10):
            raw = await client.read_all()
        await client.stream.aclose()
        with trio.fail_after(5):
            await upstream.conns[-1].closed.wait()
    assert b'"code": "shutting_down"' in raw


# -- slow uploads ---------------------------------------------------------------------


@pytest.mark.parametrize(("body_timeout", "status"), [(5.0, b" 200 "), (0.3, b" 408 ")])
async def test_slow_uploads_are_bounded_by_body_timeout_only(
    upstream: TCPUpstream, body_timeout: float, status: bytes
) -> None:
    """A body that trickles in is accepted within ``body_timeout``, then answered 408."""
    import json

    upstream.behaviour = Behaviour(Mode.JSON)
    cfg = config(upstream.url, settings={"body_timeout": body_timeout})
    # At 16 bytes every 0.1 s the body takes about 2 s whatever MESSAGES holds:
    # far past 0.3 s (a body that came whole inside it would make the 408 a race)
    # and well inside 5 s.
    payload = json.dumps({"model": "m", "messages": MESSAGES, "user": "u" * 256}).encode()
    async with gateway(cfg) as (_, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(payload)
        )
        try:
            for i in range(0, len(payload), 16):  # a slow client: its pace, not a sync point
                await stream.send_all(payload[i : i + 16])
                await trio.sleep(0.1)
        except trio.BrokenResourceError:
            pass  # the gateway gave up on the body and closed the connection
        client = RawClient(stream)
        head = await client.read_until(b"\r\n\r\n")
        await stream.aclose()
    assert head.startswith(b"HTTP/1.1" + status)


# -- connections --------------------------------------------------------------------


async def test_a_client_that_leaves_takes_its_socket_with_it() -> None:
    """No socket waits out the keep-alive timer once its client has gone (Hypercorn would)."""
    from tests.fakes.openai import FakeOpenAI
    from tests.support.servers import serve_asgi

    fake = FakeOpenAI()
    rng = random.Random(7)
    async with serve_asgi(fake) as url:
        raw = {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/up",
                        "api_base": f"{url}/v1",
                        "api_key": fake.api_key,
                    },
                }
            ],
            "feathergate_settings": {"keep_alive_timeout": 600, "shutdown_grace_period": 1},
        }
        async with gateway(parse_config(raw, {})) as (app, port):
            async with httpx.AsyncClient() as warm:  # open the upstream pool's connection
                await warm.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json={"model": "m", "messages": MESSAGES},
                )
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            fds = len(os.listdir("/proc/self/fd"))
            for i in range(100):
                body = {"model": "m", "messages": MESSAGES, "stream": i % 2 == 0}
                client = await RawClient.post(port, body)
                if i % 3 == 0:
                    await client.read_until(b"\r\n\r\n")  # served, then the client closes
                else:
                    for _ in range(rng.randrange(40)):  # leaves at a random moment
                        await trio.lowlevel.checkpoint()
                await client.drop(rst=i % 4 == 0)
            with trio.fail_after(5):
                await app.runtime.drain.wait_empty()
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            assert len(os.listdir("/proc/self/fd")) <= fds + 1  # + at most one pooled upstream


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    cfg = parse_config(
        {
            "model_list": [
                {"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "hi"}}
            ],
            "feathergate_settings": {"keep_alive_timeout": 0.3, "shutdown_grace_period": 1},
        },
        {},
    )
    async with gateway(cfg) as (_, port):
        client = await RawClient.post(port, {"model": "m", "messages": MESSAGES})
        await client.read_until(b'"finish_reason"')
        served = trio.current_time()
        second = await RawClient.post(port, {"model": "m", "messages": MESSAGES})  # busy ...
        await second.read_until(b'"finish_reason"')
        with trio.fail_after(5):
            await client.read_all()  # ... and the idle one is closed by the server
        assert trio.current_time() - served >= 0.15  # by its timer, not at once
        await client.stream.aclose()
        await second.stream.aclose()


async def test_shutdown_closes_idle_connections_at_once() -> None:
    cfg = parse_config(
        {
            "model_list": [
                {"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "hi"}}
            ],
            "feathergate_settings": {"keep_alive_timeout": 600, "shutdown_grace_period": 30},
        },
        {},
    )
    with trio.fail_after(5):  # far below both the keep-alive and the grace period
        async with serving(cfg) as (port, stop):
            client = await RawClient.post(port, {"model": "m", "messages": MESSAGES})
            await client.read_until(b'"finish_reason"')
            stop.set()
            await client.read_all()
            await client.stream.aclose()


async def test_drain_wakes_a_waiter_that_started_before_the_last_relay() -> None:
    from feathergate.relay import Drain

    drain = Drain()
    done = trio.Event()
    first_open, second_open, release = trio.Event(), trio.Event(), trio.Event()

    async def relay(opened: trio.Event) -> None:
        with drain.scope():
            opened.set()
            await release.wait()

    async def waiter() -> None:
        await drain.wait_empty()
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, first_open)
        await first_open.wait()
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(relay, second_open)
        await second_open.wait()
        release.set()
        with trio.fail_after(5):
            await done.wait()
    assert len(drain) == 0
