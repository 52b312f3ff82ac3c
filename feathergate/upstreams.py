"""One pooled HTTP client per upstream host, opened at startup, closed at shutdown.

Deployments that share a scheme, host and port share a pool; ``mock_response``
deployments get a client whose transport answers locally.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from feathergate.config import Config, Deployment
from feathergate.mock import mock_transport
from feathergate.providers.catalog import CATALOG

__all__ = ["UpstreamPool"]

# The relay owns every deadline; httpx keeps only the connect timeout (set per request).
_NO_TIMEOUTS = httpx.Timeout(None)
_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=60)


def _origin(dep: Deployment) -> str:
    base = dep.api_base or (
        CATALOG[dep.provider].default_api_base if dep.provider in CATALOG else ""
    )
    parts = urlsplit(base or "")
    return f"{parts.scheme}://{parts.netloc}"


class UpstreamPool:
    def __init__(self, config: Config) -> None:
        # One TLS context for every pool: loading the CA bundle costs ~25 ms each.
        tls = httpx.create_ssl_context()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._by_deployment: dict[str, httpx.AsyncClient] = {}
        for dep in config.deployments:
            if dep.mock_response is not None:
                key = f"mock:{dep.id}"
                if key not in self._clients:
                    self._clients[key] = httpx.AsyncClient(
                        transport=mock_transport(dep.mock_response),
                        timeout=_NO_TIMEOUTS,
                        verify=tls,
                    )
            else:
                key = _origin(dep)
                if key not in self._clients:
                    self._clients[key] = httpx.AsyncClient(
                        timeout=_NO_TIMEOUTS, limits=_LIMITS, trust_env=False, verify=tls
                    )
            self._by_deployment[dep.id] = self._clients[key]
        self._assets = httpx.AsyncClient(timeout=_NO_TIMEOUTS, trust_env=False, verify=tls)

    def client(self, dep: Deployment) -> httpx.AsyncClient:
        return self._by_deployment[dep.id]

    @property
    def assets(self) -> httpx.AsyncClient:
        """The client that downloads images for providers that need inline data."""
        return self._assets

    async def aclose(self) -> None:
        for client in [*self._clients.values(), self._assets]:
            await client.aclose()
