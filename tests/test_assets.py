"""Image downloads: no SSRF (feathergate.assets), tested against real servers on 127.0.0.1.

The fetcher's resolver is injected: :class:`FakeDNS` answers for names that
exist nowhere else, so a fetch that succeeds for such a name proves the
connection went to the address the policy checked (nothing looked it up again).
The gateway tests at the end run the real app in front of the strict Gemini
fake, which needs images inline.
"""

from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from ipaddress import ip_address, ip_network
from typing import Any
from urllib.parse import parse_qs

import openai
import pytest
import trio

from feathergate.address_policy import AddressPolicy, IPAddress
from feathergate.assets import (
    MAX_ASSET_BYTES,
    MAX_REDIRECTS,
    ImageFetcher,
    Resolver,
    system_resolver,
)
from feathergate.errors import InvalidRequest
from tests.fakes.asgi import Receive, Scope, Send, headers_of, lifespan, read_body
from tests.support.providers import LOOPBACK_IMAGES, PNG, provider_gateway
from tests.support.servers import serve_asgi

SECRET = b"internal secret: hunter2"
LOOPBACK = AddressPolicy(allowed_networks=(ip_network("127.0.0.1/32"),))


# -- an internal server and a fake DNS ---------------------------------------------------


@dataclass
class Internal:
    """Stands for a service inside the operator's network; records every request."""

    hits: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        await read_body(receive)
        path = scope["path"]
        self.hits.append(path)
        self.hosts.append(headers_of(scope)["host"])
        query = parse_qs(scope["query_string"].decode())
        if path == "/cat.png":
            await _answer(send, 200, "image/png", PNG)
        elif path == "/secret":
            await _answer(send, 200, "text/plain", SECRET)
        elif path == "/missing":
            await _answer(send, 404, "text/html", b"<h1>internal 404 page</h1>")
        elif path == "/to":
            await _answer(send, 302, "text/plain", SECRET, location=query["url"][0])
        elif path == "/loop":
            await _answer(send, 301, "text/plain", b"", location="/loop")
        elif path == "/gzip":
            await _answer(send, 200, "image/png", gzip.compress(PNG), encoding="gzip")
        elif path == "/huge":
            start = {"type": "http.response.start", "status": 200}
            await send({**start, "headers": [(b"content-type", b"image/png")]})
            piece = b"\0" * (1024 * 1024)
            for _ in range(MAX_ASSET_BYTES // len(piece) + 1):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _answer(send, 404, "text/plain", b"")


async def _answer(
    send: Send,
    status: int,
    content_type: str,
    body: bytes,
    *,
    location: str | None = None,
    encoding: str | None = None,
) -> None:
    headers = [(b"content-type", content_type.encode())]
    if location is not None:
        headers.append((b"location", location.encode()))
    if encoding is not None:
        headers.append((b"content-encoding", encoding.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class FakeDNS:
    """A resolver for the fetcher: fixed answers, and a record of every question."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    hang: bool = False

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.calls.append(host)
        if self.hang:
            await trio.sleep_forever()
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip_address(a) for a in self.answers[host]]


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@asynccontextmanager
async def fetcher(
    policy: AddressPolicy | None = None,
    dns: Resolver | None = None,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[ImageFetcher]:
    images = ImageFetcher(tls or _tls(), policy or AddressPolicy(), dns or system_resolver)
    try:
        yield images
    finally:
        await images.aclose()


@pytest.fixture
async def internal() -> AsyncIterator[tuple[Internal, int]]:
    server = Internal()
    async with serve_asgi(server) as url:
        yield server, int(url.rsplit(":", 1)[1])


async def refused(images: ImageFetcher, url: str) -> str:
    """The reason a fetch of ``url`` failed, after checking the error's shape."""
    with pytest.raises(InvalidRequest) as info:
        await images.fetch(url, connect_timeout=5)
    err = info.value
    assert err.status == 400
    assert err.param == "messages"
    prefix = f"could not fetch image {url[:200]}: "
    assert err.message.startswith(prefix)
    reason = err.message.removeprefix(prefix)
    for leak in ("hunter2", "secret", "text/plain", "text/html", "404", "302", "internal"):
        assert leak not in reason
    return reason


# -- loopback and internal addresses -----------------------------------------------------

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/secret",
    "http://localhost:{port}/secret",
    "http://2130706433:{port}/secret",  # decimal
    "http://0x7f.1:{port}/secret",  # hex
    "http://0177.1:{port}/secret",  # octal
    "http://127.1:{port}/secret",
    "http://0.0.0.0:{port}/secret",  # reaches local listeners on Linux
    "http://0:{port}/secret",
    "http://[::1]:{port}/secret",
    "http://[::ffff:127.0.0.1]:{port}/secret",
    "http://[::ffff:7f00:1]:{port}/secret",
    "http://[::]:{port}/secret",
    "https://127.0.0.1:{port}/secret",
]


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
async def test_loopback_is_refused_however_it_is_spelled(
    internal: tuple[Internal, int], template: str
) -> None:
    server, port = internal
    async with fetcher() as images:  # the system resolver: these never reach DNS
        assert await refused(images, template.format(port=port)) == "address not allowed"
    assert server.hits == []


@pytest.mark.parametrize(
    "answer",
    [
        ["10.0.0.7"],
        ["172.20.1.1"],
        ["192.168.0.10"],
        ["100.64.12.1"],  # CGNAT
        ["169.254.169.254"],  # cloud metadata
        ["127.0.0.1"],
        ["0.0.0.0"],
        ["224.0.0.251"],
        ["255.255.255.255"],
        ["::1"],
        ["fe80::1"],
        ["fd00:ec2::254"],  # unique-local (AWS's IPv6 metadata address)
        ["::ffff:127.0.0.1"],
        ["::ffff:169.254.169.254"],
        ["64:ff9b::7f00:1"],  # NAT64 of loopback
        ["93.184.216.34", "127.0.0.1"],  # one internal answer spoils the name
    ],
)
async def test_a_name_that_resolves_to_an_internal_address_is_refused(
    internal: tuple[Internal, int], answer: list[str]
) -> None:
    server, port = internal
    dns = FakeDNS({"images.example": answer})
    async with fetcher(dns=dns) as images:
        reason = await refused(images, f"http://images.example:{port}/cat.png")
    assert reason == "address not allowed"
    assert dns.calls == ["images.example"]
    assert server.hits == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://images.example/cat.png",
        "file:///etc/passwd",
        "gopher://images.example:70/_GET",
        "http:///cat.png",
        "http://[::1/cat.png",
        "http://0177.0.0.1/cat.png",  # octal in dotted-quad form: httpx calls it invalid
        "http://user:pw@images.example/cat.png",
        "http://a@images.example/cat.png",
    ],
)
async def test_other_schemes_and_credentials_are_refused_without_a_lookup(url: str) -> None:
    dns = FakeDNS({"images.example": ["93.184.216.34"]})
    async with fetcher(dns=dns) as images:
        reason = await refused(images, url)
    assert reason in (
        "not an http(s) URL",
        "user names and passwords in image URLs are not allowed",
    )
    assert dns.calls == []


async def test_the_address_checked_is_the_address_connected(
    internal: tuple[Internal, int],
) -> None:
    server, port = internal

    class Rebinding(FakeDNS):
        """Answers an allowed address once, then the metadata service."""

        async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
            first = await super().__call__(host, port)
            self.answers[host] = ["169.254.169.254"]
            return first

    dns = Rebinding({"rebind.example": ["127.0.0.1"]})
    async with fetcher(LOOPBACK, dns) as images:
        asset = await images.fetch(f"http://rebind.example:{port}/cat.png", connect_timeout=5)
    assert (asset.mime_type, asset.data) == ("image/png", PNG)
    # No other lookup: the system resolver knows no rebind.example, and a second
    # question to this one would have been answered with the metadata address.
    assert dns.calls == ["rebind.example"]
    assert server.hosts == [f"rebind.example:{port}"]  # the name, not the IP, in Host


async def test_the_next_address_is_tried_when_a_connect_fails(
    internal: tuple[Internal, int],
) -> None:
    server, port = internal
    dns = FakeDNS({"two.example": ["127.0.0.2", "127.0.0.1"]})  # nothing listens on .2
    policy = AddressPolicy(allowed_networks=(ip_network("127.0.0.0/8"),))
    async with fetcher(policy, dns) as images:
        asset = await images.fetch(f"http://two.example:{port}/cat.png", connect_timeout=5)
    assert asset.data == PNG
    assert server.hits == ["/cat.png"]


# -- redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://internal.example:{port}/secret",
    ],
)
async def test_a_redirect_to_an_internal_address_is_refused(
    internal: tuple[Internal, int], target: str
) -> None:
    server, port = internal
    answers = {"cdn.example": ["127.0.0.1"], "internal.example": ["10.1.2.3"]}
    dns = FakeDNS({**answers, "localhost": ["::1", "127.0.0.1"]})
    policy = AddressPolicy.from_settings(("cdn.example",), ())  # the first hop only
    location = target.format(port=port)
    url = f"http://cdn.example:{port}/to?url={location}"
    async with fetcher(policy, dns) as images:
        assert await refused(images, url) == "address not allowed"
    assert server.hits == ["/to"]


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://cdn.example/cat.png", "gopher://127.0.0.1:6379/_x"]
)
async def test_a_redirect_to_another_scheme_is_refused(
    internal: tuple[Internal, int], location: str
) -> None:
    server, port = internal
    async with fetcher(LOOPBACK) as images:
        reason = await refused(images, f"http://127.0.0.1:{port}/to?url={location}")
    assert reason == "not an http(s) URL"
    assert server.hits == ["/to"]


async def test_redirects_are_followed_and_checked_at_every_hop(
    internal: tuple[Internal, int],
) -> None:
    server, port = internal
    dns = FakeDNS({"cdn.example": ["127.0.0.1"], "origin.example": ["127.0.0.1"]})
    policy = AddressPolicy.from_settings(("cdn.example", "origin.example"), ())
    second = f"http://origin.example:{port}/to?url=/cat.png"
    async with fetcher(policy, dns) as images:
        asset = await images.fetch(f"http://cdn.example:{port}/to?url={second}", 5)
    assert asset.data == PNG
    assert server.hits == ["/to", "/to", "/cat.png"]
    assert server.hosts == [f"cdn.example:{port}"] + [f"origin.example:{port}"] * 2
    assert dns.calls == ["cdn.example", "origin.example", "origin.example"]


async def test_redirects_are_bounded(internal: tuple[Internal, int]) -> None:
    server, port = internal
    async with fetcher(LOOPBACK) as images:
        assert await refused(images, f"http://127.0.0.1:{port}/loop") == "too many redirects"
    assert server.hits == ["/loop"] * (MAX_REDIRECTS + 1)


# -- what an allowed server answers ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/secret", "not an image"),
        ("/missing", "could not be fetched"),
        ("/to", "could not be fetched"),  # a redirect without a Location
        ("/gzip", "could not be fetched"),  # we asked for identity
        ("/huge", f"larger than {MAX_ASSET_BYTES} bytes"),
    ],
)
async def test_answers_are_never_echoed(
    internal: tuple[Internal, int], path: str, reason: str
) -> None:
    server, port = internal
    async with fetcher(LOOPBACK) as images:
        assert await refused(images, f"http://127.0.0.1:{port}{path}") == reason
    assert server.hits == [path]


async def test_the_allowlist_admits_named_hosts_and_networks(
    internal: tuple[Internal, int],
) -> None:
    server, port = internal
    dns = FakeDNS({"images.internal": ["127.0.0.1"], "other.internal": ["127.0.0.1"]})
    by_name = AddressPolicy.from_settings(("Images.Internal",), ())
    async with fetcher(by_name, dns) as images:
        asset = await images.fetch(f"http://IMAGES.internal:{port}/cat.png", 5)
        assert asset.data == PNG
        assert await refused(images, f"http://other.internal:{port}/cat.png") == (
            "address not allowed"
        )
        assert await refused(images, f"http://127.0.0.1:{port}/cat.png") == "address not allowed"
    async with fetcher(LOOPBACK) as images:
        assert (await images.fetch(f"http://127.0.0.1:{port}/cat.png", 5)).data == PNG
        assert (await images.fetch(f"http://[::ffff:127.0.0.1]:{port}/cat.png", 5)).data == PNG
    assert server.hits == ["/cat.png"] * 3


async def test_connect_and_lookup_failures_are_generic() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with fetcher(LOOPBACK, FakeDNS({"empty.example": []})) as images:
        assert await refused(images, f"http://127.0.0.1:{port}/x.png") == "could not be fetched"
        assert await refused(images, "http://unknown.example/x.png") == "could not be fetched"
        assert await refused(images, "http://empty.example/x.png") == "could not be fetched"
    async with fetcher() as images:  # names the system resolver's IDNA codec refuses
        for host in ("a" * 64 + ".example", "a..example"):
            assert await refused(images, f"http://{host}/x.png") == "could not be fetched"


async def test_a_lookup_that_hangs_ends_at_the_connect_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    dns = FakeDNS(hang=True)
    async with fetcher(dns=dns) as images:
        before = trio.current_time()
        assert await refused(images, "http://slow.example/x.png") == "could not be fetched"
        assert trio.current_time() - before == pytest.approx(5)  # the connect timeout
    assert dns.calls == ["slow.example"]


# -- TLS: the name, not the address, is what the certificate must match -------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for ``images.test`` only (no IP in it)."""
    if shutil.which("openssl") is None:  # pragma: no cover - Debian images ship it
        pytest.fail("the TLS tests need the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    args = ["-nodes", "-days", "1", "-subj", "/CN=images.test"]
    args += ["-addext", "subjectAltName=DNS:images.test"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", *args, "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_https_keeps_the_name_for_sni_and_the_certificate(
    certificate: tuple[str, str],
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    heads: list[bytes] = []

    def note_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    server_tls.sni_callback = note_sni

    async def handler(raw: trio.SocketStream) -> None:
        stream = trio.SSLStream(raw, server_tls, server_side=True)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                more = await stream.receive_some(65536)
                if not more:
                    return
                head += more
            heads.append(head)
            answer = b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\n"
            answer += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(PNG)
            await stream.send_all(answer + PNG)
            await stream.aclose()
        except trio.BrokenResourceError:
            return

    dns = FakeDNS({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    policy = AddressPolicy.from_settings(("images.test", "other.test"), ())
    client_tls = ssl.create_default_context(cafile=cert)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with fetcher(policy, dns, client_tls) as images:
            asset = await images.fetch(f"https://images.test:{port}/cat.png", 5)
            assert asset.data == PNG
            # The same address under a name the certificate does not cover.
            assert await refused(images, f"https://other.test:{port}/cat.png") == (
                "could not be fetched"
            )
        nursery.cancel_scope.cancel()
    assert names == ["images.test", "other.test"]
    assert len(heads) == 1
    assert f"\r\nhost: images.test:{port}\r\n".encode() in heads[0].lower()


# -- through the gateway -----------------------------------------------------------------


def _image_message(url: str) -> list[Any]:
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return [{"role": "user", "content": parts}]


async def test_gateway_answers_a_loopback_image_with_a_400_that_echoes_nothing(
    internal: tuple[Internal, int],
) -> None:
    server, port = internal
    settings = {"shutdown_grace_period": 1}  # no allowlist
    async with provider_gateway("gemini", feathergate_settings=settings) as case:
        for path in ("/secret", "/to?url=/secret"):
            url = f"http://127.0.0.1:{port}{path}"
            with pytest.raises(openai.BadRequestError) as info:
                await case.sdk.create(model="m", messages=_image_message(url))
            error = info.value.response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error"
            assert error["param"] == "messages"
            assert error["message"] == f"could not fetch image {url}: address not allowed"
            assert "hunter2" not in info.value.response.text
        case.upstream.text("Still here.")
        result = await case.sdk.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert result.choices[0].message.content == "Still here."
        assert len(case.upstream.paths) == 1  # no request went up for the refused ones
    assert server.hits == []


async def test_a_fallback_does_not_download_the_images_again(
    internal: tuple[Internal, int],
) -> None:
    server, port = internal
    # "m-drop" is another deployment on the same fake; a fallback to it waits no backoff.
    async with provider_gateway(
        "gemini",
        feathergate_settings=LOOPBACK_IMAGES,
        router_settings={"fallbacks": [{"m": ["m-drop"]}]},
    ) as case:
        case.upstream.http_error(500)
        case.upstream.text("A cat.")
        url = f"http://127.0.0.1:{port}/cat.png"
        result = await case.sdk.create(model="m", messages=_image_message(url))
        assert result.choices[0].message.content == "A cat."
        assert len(case.upstream.paths) == 2
        sent = [case.upstream.images(body) for body in case.upstream.bodies]
        assert sent[0] == sent[1] != []
    assert server.hits == ["/cat.png"]
