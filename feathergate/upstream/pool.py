"""One pooled transport per upstream origin, opened at startup, closed at shutdown.

The caller says where each deployment's calls go (``Route``): a base URL, and
deployments whose URLs share a scheme, host and port share one pool; or a
transport of its own (``mock_response`` answers locally). A base URL that is
not an http(s) URL with a host gets a transport that refuses every call.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from feathergate.address_policy import AddressPolicy
from feathergate.assets import ImageFetcher
from feathergate.config import Config, Deployment
from feathergate.upstream.base import Refused, Transport
from feathergate.upstream.http1 import HTTP1Transport
from feathergate.upstream.origin import Origin

__all__ = ["Route", "UpstreamPool"]

Route = Callable[[Deployment], "str | Transport"]
"""A deployment's base URL, or the transport that serves it."""


class UpstreamPool:
    def __init__(self, config: Config, route: Route) -> None:
        self._tls: ssl.SSLContext | None = None
        self._transports: list[Transport] = []
        self._origins: dict[Origin, Transport] = {}
        self._by_deployment: dict[str, Transport] = {}
        for dep in config.deployments:
            target = route(dep)
            if isinstance(target, str):
                transport = self._origin(target, config.server.upstream_max_connections)
            else:
                transport = target
                self._transports.append(transport)
            self._by_deployment[dep.id] = transport
        # Image downloads are rare, and go where clients say: httpx, behind an address policy.
        server = config.server
        self._image_policy = AddressPolicy.from_settings(
            server.image_url_allowed_hosts, server.image_url_allowed_networks
        )
        self._assets: ImageFetcher | None = None

    def _origin(self, base: str, max_connections: int) -> Transport:
        try:
            origin = Origin.parse(base)
        except ValueError as exc:
            return Refused(f"the deployment's api_base {exc}")
        if origin not in self._origins:
            tls = self.tls() if origin.scheme == "https" else None
            transport = HTTP1Transport(str(origin), tls, max_connections=max_connections)
            self._origins[origin] = transport
            self._transports.append(transport)
        return self._origins[origin]

    def tls(self) -> ssl.SSLContext:
        # One context for every pool: loading the CA bundle costs ~25 ms each time.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def transport(self, dep: Deployment) -> Transport:
        return self._by_deployment.get(dep.id) or Refused("the deployment has no upstream")

    @property
    def assets(self) -> ImageFetcher:
        """The fetcher that downloads images for providers that need inline data."""
        if self._assets is None:
            self._assets = ImageFetcher(self.tls(), self._image_policy)
        return self._assets

    async def aclose(self) -> None:
        for transport in self._transports:
            transport.close()
        if self._assets is not None:
            await self._assets.aclose()
