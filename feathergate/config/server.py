"""``general_settings`` and ``feathergate_settings``: how the server itself behaves."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from feathergate.config.model import ServerSettings
from feathergate.config.readers import MAX_SECONDS, Reader
from feathergate.config.secrets import read_master_key
from feathergate.errors import ConfigError

__all__ = ["FEATHERGATE_KEYS", "GENERAL_KEYS", "read_server"]

GENERAL_KEYS = {
    "master_key",
    "max_request_size_mb",
    "background_health_checks",
    "health_check_interval",
}
FEATHERGATE_KEYS = {
    "shutdown_grace_period",
    "keep_alive_timeout",
    "header_timeout",
    "body_timeout",
    "body_idle_timeout",
    "backlog",
    "tcp_user_timeout",
    "client_stall_timeout",
    "provider_defaults",  # read with the deployments' deadlines
    "image_url_allowed_hosts",
    "image_url_allowed_networks",
    "upstream_max_connections",
    "max_messages",
}
# 1 TiB: far above any chat request, and the byte count stays an exact int.
MAX_REQUEST_MB = 1024 * 1024
# Far above any useful pool; a bound keeps a typo from meaning "unlimited".
MAX_UPSTREAM_CONNECTIONS = 1_000_000
# listen(2) takes an int; the kernel caps it at net.core.somaxconn anyway.
MAX_BACKLOG = 2**31 - 1
# The kernel takes TCP_USER_TIMEOUT in milliseconds, as a C int.
MAX_TCP_USER_TIMEOUT = (2**31 - 1) // 1000

_DEFAULTS = ServerSettings()


def read_server(
    reader: Reader, general: Mapping[Any, Any], ours: Mapping[Any, Any]
) -> ServerSettings:
    size_mb = reader.finite(
        general.get("max_request_size_mb"),
        "general_settings.max_request_size_mb",
        maximum=MAX_REQUEST_MB,
    )

    def seconds(key: str, *, maximum: int = MAX_SECONDS) -> float | None:
        return reader.finite(ours.get(key), f"feathergate_settings.{key}", maximum=maximum)

    def nonzero(key: str, default: float) -> float:
        return seconds(key) or default  # 0 would end every connection at once

    def optional(key: str, default: float | None, maximum: int = MAX_SECONDS) -> float | None:
        value = seconds(key, maximum=maximum)
        return default if value is None else value or None  # 0 switches it off

    grace = seconds("shutdown_grace_period")
    interval = reader.finite(
        general.get("health_check_interval"), "general_settings.health_check_interval"
    )
    checks = general.get("background_health_checks", False)
    return ServerSettings(
        master_key=read_master_key(reader, general.get("master_key")),
        max_request_bytes=int((size_mb or 32) * 1024 * 1024),
        shutdown_grace_period=_DEFAULTS.shutdown_grace_period if grace is None else grace,
        keep_alive_timeout=nonzero("keep_alive_timeout", _DEFAULTS.keep_alive_timeout),
        header_timeout=optional("header_timeout", _DEFAULTS.header_timeout),
        body_timeout=nonzero("body_timeout", _DEFAULTS.body_timeout),
        body_idle_timeout=optional("body_idle_timeout", _DEFAULTS.body_idle_timeout),
        backlog=_backlog(reader, ours.get("backlog")),
        tcp_user_timeout=optional(
            "tcp_user_timeout", _DEFAULTS.tcp_user_timeout, maximum=MAX_TCP_USER_TIMEOUT
        ),
        client_stall_timeout=nonzero("client_stall_timeout", _DEFAULTS.client_stall_timeout),
        max_messages=reader.count(ours.get("max_messages"), "feathergate_settings.max_messages")
        or _DEFAULTS.max_messages,
        upstream_max_connections=reader.count(
            ours.get("upstream_max_connections"),
            "feathergate_settings.upstream_max_connections",
            maximum=MAX_UPSTREAM_CONNECTIONS,
        )
        or _DEFAULTS.upstream_max_connections,
        image_url_allowed_hosts=tuple(
            _allowed_host(v, p) for v, p in _items(ours, "image_url_allowed_hosts")
        ),
        image_url_allowed_networks=tuple(
            _network(v, p) for v, p in _items(ours, "image_url_allowed_networks")
        ),
        background_health_checks=reader.flag(checks, "general_settings.background_health_checks"),
        health_check_interval=interval or _DEFAULTS.health_check_interval,  # 0 would spin
    )


def _backlog(reader: Reader, value: Any) -> int:
    path = "feathergate_settings.backlog"
    backlog = reader.count(value, path, maximum=MAX_BACKLOG)
    if backlog is None:
        return _DEFAULTS.backlog
    if backlog < 1:
        raise ConfigError(path, f"must be at least 1, got {backlog}")
    return backlog


def _items(ours: Mapping[Any, Any], key: str) -> list[tuple[Any, str]]:
    """``feathergate_settings.<key>``'s items, each with its key path."""
    path = f"feathergate_settings.{key}"
    values = ours.get(key)
    if values is None:
        return []
    if not isinstance(values, list):
        raise ConfigError(path, f"expected a list, got {type(values).__name__}")
    return [(value, f"{path}[{i}]") for i, value in enumerate(values)]


def _allowed_host(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " /:@[]"):
        # A URL or host:port would silently match nothing; IPs go in the networks list.
        raise ConfigError(path, f"expected a bare host name, got {value!r}")
    return value


def _network(value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a network like '10.0.0.0/8', got {value!r}")
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        raise ConfigError(path, f"not a network: {exc}") from None
