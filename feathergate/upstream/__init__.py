"""Connections to upstreams: a small HTTP/1.1 client, pooled per origin."""

from feathergate.upstream.base import Transport, UpstreamResponse
from feathergate.upstream.pool import Origins, Route, UpstreamPool

__all__ = ["Origins", "Route", "Transport", "UpstreamPool", "UpstreamResponse"]
