"""One pooled transport per upstream origin, opened at startup, closed at shutdown.

Deployments that share a scheme, host and port share a pool; ``mock_response``
deployments get a transport that answers locally.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from feathergate.address_policy import AddressPolicy
from feathergate.assets import ImageFetcher
from feathergate.catalog import CATALOG
from feathergate.config import Config, Deployment
from feathergate.mock import MockTransport
from feathergate.upstream.base import Transport
from feathergate.upstream.http1 import HTTP1Transport

__all__ = ["UpstreamPool"]


def _origin(dep: Deployment) -> str:
    base = dep.api_base or (
        CATALOG[dep.provider].default_api_base if dep.provider in CATALOG else ""
    )
    parts = urlsplit(base or "")
    return f"{parts.scheme}://{parts.netloc}"


class UpstreamPool:
    def __init__(self, config: Config) -> None:
        self._tls: ssl.SSLContext | None = None
        self._transports: dict[str, Transport] = {}
        self._by_deployment: dict[str, Transport] = {}
        for dep in config.deployments:
            if dep.mock_response is not None:
                key = f"mock:{dep.id}"
                if key not in self._transports:
                    self._transports[key] = MockTransport(dep.mock_response)
            else:
                key = _origin(dep)
                if key not in self._transports:
                    tls = self.tls() if key.startswith("https:") else None
                    self._transports[key] = HTTP1Transport(key, tls)
            self._by_deployment[dep.id] = self._transports[key]
        # Image downloads are rare, and go where clients say: httpx, behind an address policy.
        server = config.server
        self._image_policy = AddressPolicy.from_settings(
            server.image_url_allowed_hosts, server.image_url_allowed_networks
        )
        self._assets: ImageFetcher | None = None

    def tls(self) -> ssl.SSLContext:
        # One context for every pool: loading the CA bundle costs ~25 ms each time.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def transport(self, dep: Deployment) -> Transport:
        return self._by_deployment[dep.id]

    @property
    def assets(self) -> ImageFetcher:
        """The fetcher that downloads images for providers that need inline data."""
        if self._assets is None:
            self._assets = ImageFetcher(self.tls(), self._image_policy)
        return self._assets

    async def aclose(self) -> None:
        for transport in self._transports.values():
            transport.close()
        if self._assets is not None:
            await self._assets.aclose()
