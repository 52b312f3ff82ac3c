"""The frozen objects a config parses into; everything downstream reads only these.

Every value here has been validated by the parser: numbers are finite and
bounded, URLs are ``http(s)`` with a host, header names and values and
secrets can go on the wire as they are. Mappings are plain ``dict`` (not
``MappingProxyType``) because ``--workers N`` pickles the config into each
worker process.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

from feathergate.state.settings import SharedStateSettings

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "Config",
    "Deadlines",
    "Deployment",
    "FallbackRule",
    "KeySettings",
    "ObservabilitySettings",
    "RouterSettings",
    "Secret",
    "ServerSettings",
    "StrategyArgs",
]

DEFAULT_TOTAL_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Secret:
    """A resolved secret. ``repr`` never shows the value."""

    value: str | None
    missing_var: str | None = None

    def __repr__(self) -> str:
        if self.missing_var:
            return f"Secret(missing ${{{self.missing_var}}})"
        return "Secret(***)" if self.value else "Secret(None)"

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds; ``None`` means no deadline of that kind (the total still holds)."""

    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    first_token: float | None = None
    idle: float | None = None
    total: float | None = DEFAULT_TOTAL_TIMEOUT


@dataclass(frozen=True, slots=True)
class Deployment:
    model_name: str
    provider: str
    adapter: str
    model: str
    api_base: str | None
    api_key: Secret
    id: str
    api_version: str | None = None
    deadlines: Deadlines = Deadlines()
    max_retries: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    order: int | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    mock_response: str | None = None
    drop_params: bool = False
    model_info: Mapping[str, Any] = field(default_factory=dict)
    unavailable: str | None = None
    missing_var: str | None = None


@dataclass(frozen=True, slots=True)
class FallbackRule:
    model: str
    fallbacks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StrategyArgs:
    """``router_settings.routing_strategy_args``, with LiteLLM's defaults."""

    ttl: float = 3600.0  # seconds a latency sample counts
    max_latency_list_size: int = 10  # samples kept per deployment and kind
    lowest_latency_buffer: float = 0.0  # pick among those within this fraction of the best


@dataclass(frozen=True, slots=True)
class RouterSettings:
    routing_strategy: str = "simple-shuffle"
    routing_strategy_args: StrategyArgs = StrategyArgs()
    num_retries: int = 0
    retry_policy: Mapping[str, int] = field(default_factory=dict)
    allowed_fails: int = 3
    allowed_fails_policy: Mapping[str, int] = field(default_factory=dict)
    cooldown_time: float = 5.0
    fallbacks: tuple[FallbackRule, ...] = ()
    context_window_fallbacks: tuple[FallbackRule, ...] = ()
    content_policy_fallbacks: tuple[FallbackRule, ...] = ()
    default_fallbacks: tuple[str, ...] = ()
    max_fallbacks: int = 5


@dataclass(frozen=True, slots=True)
class ServerSettings:
    master_key: Secret | None = None
    max_request_bytes: int = 32 * 1024 * 1024
    shutdown_grace_period: float = 30.0
    keep_alive_timeout: float = 75.0
    header_timeout: float | None = 30.0  # a request head, from its first byte (None: off)
    body_timeout: float = 600.0
    body_idle_timeout: float | None = 60.0  # the longest pause inside a request body
    backlog: int = 2048  # the listen queue; the kernel caps it at net.core.somaxconn
    tcp_user_timeout: float | None = 30.0
    client_stall_timeout: float = 30.0
    max_messages: int = 100_000  # per request; Anthropic's documented ceiling
    # Per upstream origin. LiteLLM's clients allow 1,000: at that many live
    # streams to one origin, every new request would wait for one to end.
    upstream_max_connections: int = 10_000
    # Image URLs may reach these despite the address policy (feathergate.address_policy).
    image_url_allowed_hosts: tuple[str, ...] = ()
    image_url_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # LiteLLM's general_settings: check every deployment in the background.
    background_health_checks: bool = False
    health_check_interval: float = 300.0


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    json_logs: bool = False  # litellm_settings.json_logs; --log-format json wins
    access_log: bool = True  # feathergate_settings.access_log
    otel: bool = False  # "otel" in litellm_settings.callbacks (or OTEL_EXPORTER_OTLP_ENDPOINT)


@dataclass(frozen=True, slots=True)
class KeySettings:
    """Virtual keys and spend (:mod:`feathergate.keys`); off without a ``database_url``."""

    database_url: str | None = field(default=None, repr=False)  # it holds a password
    timezone: tzinfo = UTC  # budget periods reset at this zone's midnight
    budget_exceeded_status: int = 422  # not retried by the SDKs; LiteLLM 1.106's default
    always_include_stream_usage: bool = True
    disable_spend_logs: bool = False
    cache_ttl: float = 60.0  # an entry's life without an invalidation; changes poll faster
    poll_interval: float = 0.5  # how often the store's change log is read
    flush_interval: float = 1.0  # spend rows reach the store at least this often
    buffer_limit: int = 100_000  # spend rows kept while the store is down

    @property
    def enabled(self) -> bool:
        return self.database_url is not None


@dataclass(frozen=True, slots=True)
class Config:
    deployments: tuple[Deployment, ...]
    router: RouterSettings = RouterSettings()
    server: ServerSettings = ServerSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    drop_params: bool = False
    shared_state: SharedStateSettings = field(default_factory=SharedStateSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    workers: int = 1  # processes serving this config (set by server.per_worker)
    warnings: tuple[str, ...] = ()
    source: str = "<memory>"
