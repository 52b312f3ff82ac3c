"""Connections to upstreams: a small HTTP/1.1 client, pooled per origin."""

from feathergate.upstream.base import Transport, UpstreamResponse
from feathergate.upstream.pool import UpstreamPool

__all__ = ["Transport", "UpstreamPool", "UpstreamResponse"]
