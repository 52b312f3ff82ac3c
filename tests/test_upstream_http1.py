"""The upstream HTTP/1.1 client over real sockets; its framing is in ``test_upstream_h1.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from feathergate.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from feathergate.upstream.http1 import HTTP1Transport
from tests.fakes.tcp_upstream import hang_connect

# -- over real sockets ------------------------------------------------------------------

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[HTTP1Transport, list[int]]]:
    connections: list[int] = []

    async def serve_one(stream: trio.SocketStream) -> None:
        connections.append(1)
        async with stream:
            await handler(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        transport = HTTP1Transport(f"http://127.0.0.1:{port}", None)
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


async def test_https_upstream_with_sni_and_keep_alive(certificate: tuple[str, str]) -> None:
    import ssl

    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    accepted: list[int] = []

    async def handler(raw: trio.SocketStream) -> None:
        accepted.append(1)
        stream = trio.SSLStream(raw, server_ctx, server_side=True)
        try:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = await stream.receive_some(65536)
                    if not more:
                        return
                    data += more
                await stream.send_all(OK)
        except trio.BrokenResourceError:
            return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        transport = HTTP1Transport(f"https://localhost:{port}", client_ctx)
        for _ in range(3):
            response = await transport.send("POST", "/v1/c", [], b"", connect_timeout=5)
            assert await response.read() == b"ok"
            response.close()
        untrusted = HTTP1Transport(f"https://localhost:{port}", ssl.create_default_context())
        with pytest.raises(UpstreamUnreachable, match="TLS handshake"):
            await untrusted.send("POST", "/", [], b"", connect_timeout=5)
        transport.close()
        nursery.cancel_scope.cancel()
    assert len(accepted) == 2  # three requests on one TLS connection; one refused handshake
