"""The upstream HTTP/1.1 client over real sockets: keep-alive, the connection limit, origins, TLS.

The framing itself is tested against h11 in ``test_upstream_h1.py``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from feathergate.config import Deployment, parse_config
from feathergate.errors import (
    ConfigError,
    InvalidUpstreamRequest,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from feathergate.upstream import Transport, UpstreamPool
from feathergate.upstream.http1 import HTTP1Response, HTTP1Transport
from feathergate.upstream.origin import Origin
from tests.fakes.tcp_upstream import hang_connect

# -- over real sockets ------------------------------------------------------------------

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def server(
    handler: Handler, host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[tuple[HTTP1Transport, list[int]]]:
    connections: list[int] = []

    async def serve_one(stream: trio.SocketStream) -> None:
        connections.append(1)
        async with stream:
            await handler(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve_one, 0, host=host))
        port = listeners[0].socket.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        transport = HTTP1Transport(f"http://{shown}:{port}", None, **options)
        yield transport, connections
        transport.close()
        nursery.cancel_scope.cancel()


async def read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = await stream.receive_some(65536)
        if not more:
            return b""
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def keep_alive(stream: trio.SocketStream) -> None:
    while await read_request(stream):
        await stream.send_all(OK)


async def send(transport: HTTP1Transport) -> bytes:
    response = await transport.send("POST", "/v1/c", [], b"{}", connect_timeout=5)
    try:
        return await response.read()
    finally:
        response.close()


async def test_connections_are_reused() -> None:
    async with server(keep_alive) as (transport, connections):
        for _ in range(5):
            assert await send(transport) == b"ok"
    assert len(connections) == 1


async def test_a_connection_closed_by_the_server_while_idle_is_not_reused() -> None:
    async def one_per_connection(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(OK)  # keep-alive announced, then closed anyway

    async with server(one_per_connection) as (transport, connections):
        for _ in range(3):
            assert await send(transport) == b"ok"
            await trio.testing.wait_all_tasks_blocked()  # the server's close has landed
    assert len(connections) == 3


async def test_a_request_the_upstream_read_but_never_answered_is_not_sent_again() -> None:
    served = 0

    async def close_after_reading_second(stream: trio.SocketStream) -> None:
        nonlocal served
        while await read_request(stream):
            served += 1
            if served == 2:
                return  # read, maybe processed, never answered: a resend could run it twice
            await stream.send_all(OK)

    async with server(close_after_reading_second) as (transport, connections):
        assert await send(transport) == b"ok"
        with pytest.raises(UpstreamProtocolError, match="before answering"):
            await send(transport)
        assert served == 2  # the router may retry it, counted; the client itself did not
        assert await send(transport) == b"ok"  # and the pool recovers on a fresh connection
    assert len(connections) == 2


async def test_an_interim_response_in_the_same_read_as_the_final_one() -> None:
    async def continue_then_ok(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)

    async with server(continue_then_ok) as (transport, _):
        with trio.fail_after(5):
            assert await send(transport) == b"ok"


async def test_a_garbled_ending_drops_the_connection() -> None:
    async def trailing_garbage(stream: trio.SocketStream) -> None:
        while await read_request(stream):
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nJUNK"
            )

    async with server(trailing_garbage) as (transport, connections):
        response = await transport.send("POST", "/", [], b"", connect_timeout=5)
        with pytest.raises(UpstreamProtocolError):
            await response.read()
        response.close()
        with pytest.raises(UpstreamProtocolError):
            await send(transport)
    assert len(connections) == 2  # the out-of-sync connection was not reused


async def test_a_body_cut_short_is_a_protocol_error_and_the_connection_is_dropped() -> None:
    async def cut(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")

    async with server(cut) as (transport, _):
        response = await transport.send("POST", "/", [], b"", connect_timeout=5)
        with pytest.raises(UpstreamProtocolError, match="mid-body"):
            await response.read()
        response.close()


async def test_an_unread_body_closes_its_connection() -> None:
    async def stream_forever(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                await stream.send_all(b"5\r\nhello\r\n")
                await trio.sleep(0.01)  # the upstream's pace
        except trio.BrokenResourceError:
            pass

    async with server(stream_forever) as (transport, connections):
        response = await transport.send("POST", "/", [], b"", connect_timeout=5)
        assert await response.next_chunk() == b"hello"
        response.close()  # mid-body: this connection cannot carry another request
        again = await transport.send("POST", "/", [], b"", connect_timeout=5)
        again.close()
    assert len(connections) == 2


async def test_connect_errors_and_timeouts() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = HTTP1Transport(f"http://127.0.0.1:{port}", None)
    with pytest.raises(UpstreamUnreachable):
        await refused.send("POST", "/", [], b"", connect_timeout=5)
    async with hang_connect() as base:
        hanging = HTTP1Transport(base.removesuffix("/v1"), None)
        with pytest.raises(UpstreamTimeout, match="connect"):
            await hanging.send("POST", "/", [], b"", connect_timeout=0.1)


# -- the connection limit and idle expiry ----------------------------------------------


async def read_all(response: HTTP1Response) -> bytes:
    try:
        return await response.read()
    finally:
        response.close()


async def test_a_full_pool_queues_requests_first_come_first_served() -> None:
    async with server(keep_alive, max_connections=2) as (transport, connections):
        first = await transport.send("POST", "/", [], b"", connect_timeout=5)
        second = await transport.send("POST", "/", [], b"", connect_timeout=5)
        served: list[str] = []

        async def queued(name: str) -> None:
            response = await transport.send("POST", "/", [], b"", connect_timeout=5)
            served.append(name)
            assert await read_all(response) == b"ok"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(queued, "a")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(queued, "b")
            await trio.testing.wait_all_tasks_blocked()
            assert served == []  # both wait: two connections are open, two is the limit
            assert await read_all(first) == b"ok"  # its connection goes to "a", then to "b"
        assert served == ["a", "b"]
        assert await read_all(second) == b"ok"
        assert await send(transport) == b"ok"
    assert len(connections) == 2


async def test_a_wait_for_a_connection_counts_towards_the_connect_deadline() -> None:
    async with server(keep_alive, max_connections=1) as (transport, connections):
        held = await transport.send("POST", "/", [], b"", connect_timeout=5)
        with pytest.raises(UpstreamTimeout, match="connect"):
            await transport.send("POST", "/", [], b"", connect_timeout=0.05)
        async with trio.open_nursery() as nursery:  # a waiter cancelled from outside
            nursery.start_soon(partial(transport.send, "POST", "/", [], b"", connect_timeout=None))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert await read_all(held) == b"ok"
        assert await send(transport) == b"ok"  # nobody left in the queue to take it
    assert len(connections) == 1


async def test_a_failed_connect_frees_its_place() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = HTTP1Transport(f"http://127.0.0.1:{port}", None, max_connections=1)
    for _ in range(3):  # a leaked place would make the second one wait, then time out
        with pytest.raises(UpstreamUnreachable):
            await refused.send("POST", "/", [], b"", connect_timeout=5)


async def test_idle_connections_expire_at_checkout_and_when_another_comes_back(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 1.0  # only to end the test if a close never comes
    ended: list[trio.Event] = []

    async def tracked(stream: trio.SocketStream) -> None:
        done = trio.Event()
        ended.append(done)
        await keep_alive(stream)  # until the client closes the connection
        done.set()

    async with server(tracked, idle_expiry=60) as (transport, connections):
        first = await transport.send("POST", "/", [], b"", connect_timeout=5)
        second = await transport.send("POST", "/", [], b"", connect_timeout=5)
        assert await read_all(first) == b"ok"  # idle from now
        mock_clock.jump(61)
        assert await read_all(second) == b"ok"  # back to the pool: the expired one goes
        with trio.fail_after(10):
            await ended[0].wait()
        assert not ended[1].is_set()
        assert await send(transport) == b"ok"  # the fresh one is reused
        assert len(connections) == 2
        mock_clock.jump(61)
        assert await send(transport) == b"ok"  # expired at checkout: a new connection
        assert len(connections) == 3
        with trio.fail_after(10):
            await ended[1].wait()


# -- origins ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "api.example.com/v1",  # no scheme: was plaintext to localhost:80
        "localhost:8000",
        "ftp://api.example.com",
        "http://",
        "https://user:secret@api.example.com",
        "http://exa mple.com",
        "http://api.example.com:99999",
        "http://api.example.com:0",
    ],
)
def test_an_origin_that_is_not_http_with_a_host_is_refused(origin: str) -> None:
    with pytest.raises(ValueError, match=r"http|host|credentials|port") as caught:
        HTTP1Transport(origin, None)
    assert "secret" not in str(caught.value)


def test_origins_are_compared_and_written_canonically() -> None:
    idna = Origin.parse("https://Bücher.example:443/v1")
    assert (str(idna), idna.authority) == ("https://xn--bcher-kva.example", "xn--bcher-kva.example")
    ipv6 = Origin.parse("http://[::1]:8080")
    assert (ipv6.host, ipv6.authority) == ("::1", "[::1]:8080")
    assert ipv6.request_target("HTTP://[::1]:8080?a=1", str(ipv6)) == "/?a=1"


async def test_a_url_on_another_origin_is_refused_not_sent_to_this_one() -> None:
    heads: list[bytes] = []

    async def recording(stream: trio.SocketStream) -> None:
        while head := await read_request(stream):
            heads.append(head)
            await stream.send_all(OK)

    async with server(recording) as (transport, connections):
        port = transport.origin.port
        for url in [
            "http://evil.example/v1/c",
            f"https://127.0.0.1:{port}/v1/c",
            f"http://127.0.0.1:{port + 1}/v1/c",
            "//evil.example/v1/c",
            "mailto:x@evil.example",
        ]:
            with pytest.raises(InvalidUpstreamRequest, match="not on the origin"):
                await transport.send("POST", url, [], b"", connect_timeout=5)
        for url in [
            f"http://127.0.0.1:{port}/v1/c?a=1#fragment",
            f"HTTP://127.0.0.1:{port}/v1/c",
            f"http://127.0.0.1:{port}/deployments/日本 x/chat",  # the client's model name
        ]:
            response = await transport.send("POST", url, [], b"", connect_timeout=5)
            assert await read_all(response) == b"ok"
    assert [head.split(b"\r\n")[0] for head in heads] == [
        b"POST /v1/c?a=1 HTTP/1.1",
        b"POST /v1/c HTTP/1.1",
        b"POST /deployments/%E6%97%A5%E6%9C%AC%20x/chat HTTP/1.1",
    ]
    assert len(connections) == 1


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:  # pragma: no cover - a host without IPv6
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_an_ipv6_literal_origin_connects_with_a_bracketed_host() -> None:
    heads: list[bytes] = []

    async def recording(stream: trio.SocketStream) -> None:
        while head := await read_request(stream):
            heads.append(head)
            await stream.send_all(OK)

    async with server(recording, host="::1") as (transport, _):
        assert await send(transport) == b"ok"
        port = transport.origin.port
    assert f"\r\nhost: [::1]:{port}\r\n".encode() in heads[0]


class LocalTransport:
    """A transport of the caller's own, as the gateway's mock is."""

    def __init__(self) -> None:
        self.closed = False

    async def send(self, *args: Any, **kwargs: Any) -> HTTP1Response:
        raise AssertionError("not called here")

    def close(self) -> None:
        self.closed = True


async def test_the_pool_shares_origins_and_refuses_what_it_cannot_call() -> None:
    entries = [
        {"model_name": "m", "litellm_params": {"model": "openai/x"}, "model_info": {"id": name}}
        for name in "abcd"
    ]
    config = parse_config(
        {"model_list": entries, "feathergate_settings": {"upstream_max_connections": 7}},
        {"OPENAI_API_KEY": "k"},
    )
    local = LocalTransport()
    routes: dict[str, str | Transport] = {
        "a": "http://127.0.0.1:9/v1",
        "b": "HTTP://127.0.0.1:9/other",
        "c": "api.example.com/v1",
        "d": local,
    }
    pool = UpstreamPool(config, lambda dep: routes[dep.id])
    by_id: dict[str, Deployment] = {dep.id: dep for dep in config.deployments}
    shared = pool.transport(by_id["a"])
    assert isinstance(shared, HTTP1Transport)
    assert shared.max_connections == 7
    assert pool.transport(by_id["b"]) is shared
    assert pool.transport(by_id["d"]) is local
    with pytest.raises(InvalidUpstreamRequest, match=r"api_base 'api\.example\.com/v1'"):
        await pool.transport(by_id["c"]).send("POST", "/", [], b"", connect_timeout=1)
    await pool.aclose()
    assert local.closed


def test_the_connection_limit_is_a_feathergate_setting() -> None:
    assert parse_config({}).server.upstream_max_connections == 10_000
    with pytest.raises(ConfigError, match="upstream_max_connections"):
        parse_config({"feathergate_settings": {"upstream_max_connections": -1}})


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for ``localhost``, made with the openssl command."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:  # pragma: no cover - Debian images ship it
        pytest.fail("the TLS tests need the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@asynccontextmanager
async def tls_server(
    certificate: tuple[str, str],
    respond: Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]],
) -> AsyncIterator[tuple[int, list[str | None], list[int]]]:
    """A TLS upstream on 127.0.0.1: its port, the SNI names it was sent, its connections."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(*certificate)
    names: list[str | None] = []
    accepted: list[int] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def handler(raw: trio.SocketStream) -> None:
        accepted.append(1)
        try:
            await respond(trio.SSLStream(raw, server_ctx, server_side=True))
        except trio.BrokenResourceError:
            return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], names, accepted
        nursery.cancel_scope.cancel()


async def tls_keep_alive(stream: trio.SSLStream[trio.SocketStream]) -> None:
    while True:
        data = b""
        while b"\r\n\r\n" not in data:
            more = await stream.receive_some(65536)
            if not more:
                return
            data += more
        await stream.send_all(OK)


async def test_https_upstream_with_sni_and_keep_alive(certificate: tuple[str, str]) -> None:
    client_ctx = ssl.create_default_context(cafile=certificate[0])
    async with tls_server(certificate, tls_keep_alive) as (port, names, accepted):
        transport = HTTP1Transport(f"https://localhost:{port}", client_ctx)
        for _ in range(3):
            response = await transport.send("POST", "/v1/c", [], b"", connect_timeout=5)
            assert await read_all(response) == b"ok"
        transport.close()
        assert names == ["localhost"]  # the server was told which name to prove
        untrusted = HTTP1Transport(f"https://localhost:{port}", None)  # the system's CAs
        with pytest.raises(UpstreamUnreachable, match="TLS handshake"):
            await untrusted.send("POST", "/", [], b"", connect_timeout=5)
    assert len(accepted) == 2  # three requests on one TLS connection; one refused handshake


async def test_a_certificate_for_another_name_is_refused(certificate: tuple[str, str]) -> None:
    # Trusted, but for "localhost" only: reached as 127.0.0.1, it proves the wrong name.
    client_ctx = ssl.create_default_context(cafile=certificate[0])
    async with tls_server(certificate, tls_keep_alive) as (port, _, _):
        transport = HTTP1Transport(f"https://127.0.0.1:{port}", client_ctx)
        with pytest.raises(UpstreamUnreachable, match="TLS handshake"):
            await transport.send("POST", "/", [], b"", connect_timeout=5)


async def test_a_tls_body_ended_by_a_close_without_close_notify_is_whole(
    certificate: tuple[str, str],
) -> None:
    async def close_delimited(stream: trio.SSLStream[trio.SocketStream]) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nthe whole body")
        await stream.transport_stream.aclose()  # TCP FIN, no TLS close_notify, as many servers do

    client_ctx = ssl.create_default_context(cafile=certificate[0])
    async with tls_server(certificate, close_delimited) as (port, _, _):
        transport = HTTP1Transport(f"https://localhost:{port}", client_ctx)
        response = await transport.send("POST", "/", [], b"", connect_timeout=5)
        assert await read_all(response) == b"the whole body"


async def test_a_handshake_cancelled_midway_frees_its_place(certificate: tuple[str, str]) -> None:
    stalled = trio.Event()

    async def first_stalls(stream: trio.SSLStream[trio.SocketStream]) -> None:
        if not stalled.is_set():
            stalled.set()
            await trio.sleep_forever()  # accepts TCP, never answers the TLS hello
        await tls_keep_alive(stream)

    client_ctx = ssl.create_default_context(cafile=certificate[0])
    async with tls_server(certificate, first_stalls) as (port, _, accepted):
        transport = HTTP1Transport(f"https://localhost:{port}", client_ctx, max_connections=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(transport.send, "POST", "/", [], b"", connect_timeout=None))
            await stalled.wait()
            nursery.cancel_scope.cancel()
        response = await transport.send("POST", "/", [], b"", connect_timeout=5)
        assert await read_all(response) == b"ok"
        transport.close()
    assert len(accepted) == 2
