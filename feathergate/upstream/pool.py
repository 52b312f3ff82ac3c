"""One pooled transport per upstream origin, shared by every config a reload brings in.

The caller says where each deployment's calls go (``Route``): a base URL, and
deployments whose URLs share a scheme, host and port share one pool; or a
transport of its own (``mock_response`` answers locally). A base URL that is
not an http(s) URL with a host gets a transport that refuses every call.

Transports live in :class:`Origins`, which outlives configs: an
:class:`UpstreamPool` is one config's view of it and holds a lease on each
origin it uses. A reload builds a new view beside the old one, so origins
still configured keep their open connections; the old view is released once
its last request has ended (see :mod:`feathergate.generation`), and an origin
no view leases any more is closed then. The connection limit is part of the
key: a reload that changes ``upstream_max_connections`` gets fresh pools.
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

__all__ = ["Origins", "Route", "UpstreamPool"]

Route = Callable[[Deployment], "str | Transport"]
"""A deployment's base URL, or the transport that serves it."""

_Key = tuple[Origin, int]


class Origins:
    """Transports per origin (and connection limit), leased by the views that use them."""

    def __init__(self) -> None:
        self._tls: ssl.SSLContext | None = None
        self._live: dict[_Key, HTTP1Transport] = {}
        self._leases: dict[_Key, int] = {}
        # Image downloads keep no connections (keep-alive is off), so one
        # fetcher per address policy can stay until shutdown.
        self._fetchers: dict[AddressPolicy, ImageFetcher] = {}

    def tls(self) -> ssl.SSLContext:
        # One context for every pool: loading the CA bundle costs ~25 ms each time.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def acquire(self, origin: Origin, max_connections: int) -> tuple[_Key, HTTP1Transport]:
        key = (origin, max_connections)
        transport = self._live.get(key)
        if transport is None:
            tls = self.tls() if origin.scheme == "https" else None
            transport = HTTP1Transport(str(origin), tls, max_connections=max_connections)
            self._live[key] = transport
        self._leases[key] = self._leases.get(key, 0) + 1
        return key, transport

    def release(self, key: _Key) -> None:
        left = self._leases.get(key, 0) - 1
        if left > 0:
            self._leases[key] = left
            return
        self._leases.pop(key, None)
        transport = self._live.pop(key, None)
        if transport is not None:
            transport.close()

    def fetcher(self, policy: AddressPolicy) -> ImageFetcher:
        fetcher = self._fetchers.get(policy)
        if fetcher is None:
            fetcher = self._fetchers[policy] = ImageFetcher(self.tls(), policy)
        return fetcher

    def __len__(self) -> int:
        return len(self._live)

    async def aclose(self) -> None:
        for transport in self._live.values():
            transport.close()
        self._live.clear()
        self._leases.clear()
        fetchers, self._fetchers = self._fetchers, {}
        for fetcher in fetchers.values():
            await fetcher.aclose()


class UpstreamPool:
    """One config's transports: origins leased from ``origins``, and local ones of its own."""

    def __init__(self, config: Config, route: Route, origins: Origins | None = None) -> None:
        self._owns_origins = origins is None
        self._origins = Origins() if origins is None else origins
        self._leases: list[_Key] = []
        self._own: list[Transport] = []
        self._by_deployment: dict[str, Transport] = {}
        limit = config.server.upstream_max_connections
        for dep in config.deployments:
            target = route(dep)
            if isinstance(target, str):
                transport = self._origin(target, limit)
            else:
                transport = target
                self._own.append(transport)
            self._by_deployment[dep.id] = transport
        server = config.server
        self._image_policy = AddressPolicy.from_settings(
            server.image_url_allowed_hosts, server.image_url_allowed_networks
        )
        self._closed = False

    def _origin(self, base: str, max_connections: int) -> Transport:
        try:
            origin = Origin.parse(base)
        except ValueError as exc:
            return Refused(f"the deployment's api_base {exc}")
        key, transport = self._origins.acquire(origin, max_connections)
        self._leases.append(key)
        return transport

    def transport(self, dep: Deployment) -> Transport:
        return self._by_deployment.get(dep.id) or Refused("the deployment has no upstream")

    @property
    def assets(self) -> ImageFetcher:
        """The fetcher that downloads images for providers that need inline data."""
        return self._origins.fetcher(self._image_policy)

    def release(self) -> None:
        """Done with this view: origins no other view uses are closed (no checkpoint)."""
        if self._closed:
            return
        self._closed = True
        for key in self._leases:
            self._origins.release(key)
        for transport in self._own:
            transport.close()

    async def aclose(self) -> None:
        self.release()
        if self._owns_origins:
            await self._origins.aclose()
