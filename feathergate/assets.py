"""Downloading images for providers that only take inline data (Gemini).

Design note
-----------
An image URL in a request makes the gateway connect wherever the client says,
from inside the operator's network (SSRF). So for the URL, and again for every
redirect hop (at most :data:`MAX_REDIRECTS`):

* only ``http`` and ``https``, and no user name or password in the URL;
* the host is resolved once, by the injectable :class:`Resolver`, and every
  address it gives must pass the :class:`~feathergate.address_policy.AddressPolicy`
  (one refused address refuses the host: a name that answers with both a
  public and an internal address is not one to trust with either);
* the request goes to the checked address itself: the URL's host is replaced
  by the IP, while the ``Host`` header and TLS keep the name (httpx's
  ``sni_hostname`` extension: SNI and the certificate check). Nothing looks
  the name up a second time, so a DNS answer that changes between the check
  and the connect (rebinding) changes nothing. Keep-alive is off, because a
  pooled connection is keyed by the IP and must not carry a second name over a
  TLS session whose certificate was checked for the first.

This uses httpx's stock transport and public request extensions only; a custom
httpcore network backend could check inside the connection pool instead, but
would leave httpcore's exceptions to map by hand. The transport is used
without an ``AsyncClient``: no cookie jar shared between clients' requests, no
proxy or ``.netrc`` taken from the environment, no redirects behind our back.

Every failure is a 400 that names the URL (cut at 200 characters) with a
generic reason. What the server answered (status, content type, body, a
redirect's target) is never echoed: for an internal address that is exactly
what the attacker is after. The relay bounds the whole download by the
attempt's total deadline; this module bounds each name lookup and connect.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from ipaddress import ip_address
from typing import Protocol, cast

import httpx
import trio

from feathergate.address_policy import AddressPolicy, IPAddress
from feathergate.errors import InvalidRequest
from feathergate.providers.base import Asset

__all__ = [
    "MAX_ASSET_BYTES",
    "MAX_REDIRECTS",
    "ImageFetcher",
    "Resolver",
    "fetch_assets",
    "system_resolver",
]

MAX_ASSET_BYTES = 20 * 1024 * 1024
MAX_REDIRECTS = 3
_MAX_ADDRESSES = 4  # tried in order when a connect fails; bounds the time a bad name costs
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MEDIA = ("image/", "application/pdf", "audio/")
_HEADERS = [
    (b"accept", b"image/*, application/pdf, audio/*"),
    # Compressed bodies could expand far past the size cap before it is checked.
    (b"accept-encoding", b"identity"),
    (b"user-agent", b"feathergate"),
]


class Resolver(Protocol):
    """Host name -> addresses to connect to. Tests pass a fake; DNS is the default.

    A name that does not resolve raises :class:`OSError` (``socket.gaierror``)
    or :class:`ValueError` (a name the IDNA codec refuses), or answers nothing.
    """

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]: ...


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return list(dict.fromkeys(ip_address(info[4][0]) for info in infos))


class _Refused(Exception):
    """One reason, worded for the client; turned into :class:`InvalidRequest` once."""


class ImageFetcher:
    """Downloads one URL at a time under the address policy."""

    def __init__(
        self,
        tls: ssl.SSLContext,
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._transport = httpx.AsyncHTTPTransport(
            verify=tls,
            trust_env=False,
            retries=0,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def fetch(self, url: str, connect_timeout: float) -> Asset:
        try:
            return await self._fetch(url, connect_timeout)
        except _Refused as why:
            reason = str(why)
        except (httpx.HTTPError, httpx.InvalidURL):  # InvalidURL: an IPv6 scope in an IP URL
            reason = "could not be fetched"
        raise InvalidRequest(f"could not fetch image {url[:200]}: {reason}", param="messages")

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _fetch(self, url: str, connect_timeout: float) -> Asset:
        target = _parse(url)
        timeouts = httpx.Timeout(None, connect=connect_timeout).as_dict()
        for _ in range(MAX_REDIRECTS + 1):
            addresses = await self._addresses(target, connect_timeout)
            response = await self._send(target, addresses, timeouts)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    target = _parse(response.headers["location"], base=target)
                    continue
                return await _read(response)
            finally:
                await response.aclose()
        raise _Refused("too many redirects")

    async def _addresses(self, url: httpx.URL, seconds: float) -> list[IPAddress]:
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        with trio.move_on_after(seconds):
            try:
                found = [ip_address(host)]  # an IP in the URL needs no lookup
            except ValueError:
                try:
                    found = list(await self._resolve(host, port))
                except (OSError, ValueError):
                    found = []
            if not found:
                raise _Refused("could not be fetched")
            named = self._policy.allows_host(host) or self._policy.allows_host(url.host)
            if not named and not all(self._policy.allows_address(a) for a in found):
                raise _Refused("address not allowed")
            return found[:_MAX_ADDRESSES]
        raise _Refused("could not be fetched")

    async def _send(
        self, url: httpx.URL, addresses: list[IPAddress], timeouts: dict[str, float | None]
    ) -> httpx.Response:
        extensions: dict[str, object] = {"timeout": timeouts}
        if url.scheme == "https":
            extensions["sni_hostname"] = url.raw_host.decode("ascii")
        headers = [(b"host", url.netloc), *_HEADERS]

        def to(address: IPAddress) -> httpx.Request:
            return httpx.Request(
                "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
            )

        *others, last = addresses
        for address in others:
            try:
                return await self._transport.handle_async_request(to(address))
            except httpx.ConnectError:
                pass  # the next address may answer
        return await self._transport.handle_async_request(to(last))


def _parse(url: str, base: httpx.URL | None = None) -> httpx.URL:
    try:
        parsed = httpx.URL(url) if base is None else base.join(url)
    except httpx.InvalidURL:
        raise _Refused("not an http(s) URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise _Refused("not an http(s) URL")
    if parsed.userinfo:
        raise _Refused("user names and passwords in image URLs are not allowed")
    return parsed


async def _read(response: httpx.Response) -> Asset:
    if response.status_code != 200:
        raise _Refused("could not be fetched")
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        raise _Refused("could not be fetched")
    mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not mime.startswith(_MEDIA):
        raise _Refused("not an image")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ASSET_BYTES:
        raise _Refused(f"larger than {MAX_ASSET_BYTES} bytes")
    data = bytearray()
    # An async generator (httpx types it as an iterator): closed here, not by the GC.
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    async with aclosing(raw) as pieces:
        async for piece in pieces:
            data += piece
            if len(data) > MAX_ASSET_BYTES:
                raise _Refused(f"larger than {MAX_ASSET_BYTES} bytes")
    return Asset(mime, bytes(data))


async def fetch_assets(
    fetcher: ImageFetcher, urls: list[str], connect_timeout: float
) -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for url in dict.fromkeys(urls):
        assets[url] = await fetcher.fetch(url, connect_timeout)
    return assets
