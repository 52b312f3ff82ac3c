"""Where the shared state lives: LiteLLM's Redis settings, read into one frozen object.

A pure function of the raw config sections and the environment, so every
rule below is tested without a server. The first source that names a server
wins; later ones are not merged into it:

1. ``general_settings.coordination_redis`` (LiteLLM's newest, explicit key)
2. ``router_settings.redis_url``, else ``redis_host`` (+ ``redis_port``,
   ``redis_password``, ``redis_db``, ``cache_kwargs``)
3. ``litellm_settings.cache_params`` when ``cache: true`` and ``type: redis``
4. ``REDIS_URL``, else ``REDIS_CLUSTER_NODES``, else ``REDIS_HOST``

As in LiteLLM, a URL carries everything (host, port, password, database,
``rediss://`` for TLS) and the separate keys beside it are dropped; a source
given by host takes what it leaves unset from ``REDIS_PORT``,
``REDIS_PASSWORD``, ``REDIS_USERNAME``, ``REDIS_DB`` and ``REDIS_SSL``; TLS
options (``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_check_hostname``) fall
back to their ``REDIS_*`` variables whatever the source.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from feathergate.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEOUT",
    "FEATHERGATE_KEYS",
    "GENERAL_KEYS",
    "LITELLM_KEYS",
    "ROUTER_KEYS",
    "RedisNode",
    "SharedStateSettings",
    "parse_shared_state",
]

DEFAULT_TIMEOUT = 0.25
DEFAULT_NAMESPACE = "feathergate"
DEFAULT_PORT = 6379

# The keys read here, so that config.py does not warn about them.
ROUTER_KEYS = frozenset(
    {"redis_host", "redis_port", "redis_password", "redis_url", "redis_db", "cache_kwargs"}
)
LITELLM_KEYS = frozenset({"cache", "cache_params"})
GENERAL_KEYS = frozenset({"coordination_redis", "fail_closed_rate_limit_enforcement"})
FEATHERGATE_KEYS = frozenset({"redis_timeout"})
MAX_TIMEOUT = 60.0  # a Redis call on the request path; more would hold requests hostage

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_PREFIX = "os.environ/"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Keys of a connection mapping (cache_params, coordination_redis, cache_kwargs)
# that are read; LiteLLM's others (ttl, supported_call_types, ...) are the
# response cache's and are left alone.
_CONNECTION_KEYS = {
    "url",
    "host",
    "port",
    "password",
    "username",
    "db",
    "ssl",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "ssl_ca_certs",
    "namespace",
    "socket_timeout",
    "startup_nodes",
    "redis_startup_nodes",
    "max_connections",
}
_UNSUPPORTED = ("service_name", "sentinel_nodes", "gcp_service_account")


@dataclass(frozen=True, slots=True)
class RedisNode:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SharedStateSettings:
    """A Redis (or Valkey) server, or cluster, that every process of the gateway shares.

    ``enabled`` is false when no source names a server: every limit then
    lives in one process. ``password`` never shows in ``repr`` or
    :meth:`describe`.
    """

    enabled: bool = False
    source: str = ""  # the config key or variable the server came from
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    ssl_cert_reqs: str | None = None  # "required" (default with ssl), "optional", "none"
    ssl_check_hostname: bool | None = None
    ssl_ca_certs: str | None = None
    startup_nodes: tuple[RedisNode, ...] = ()  # set: Redis Cluster
    namespace: str = DEFAULT_NAMESPACE
    timeout: float = DEFAULT_TIMEOUT  # the longest a request waits on Redis
    max_connections: int | None = None
    fail_closed: bool = False  # general_settings.fail_closed_rate_limit_enforcement
    processes: int = 1  # this instance's worker processes (set by ``serve --workers``)

    @property
    def cluster(self) -> bool:
        return bool(self.startup_nodes)

    def describe(self) -> str:
        """Where, for ``feathergate check`` and the startup log: never the password."""
        if not self.enabled:
            return "off"
        scheme = "rediss" if self.ssl else "redis"
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}{':***' if self.password else ''}@"
        if self.cluster:
            nodes = ",".join(str(n) for n in self.startup_nodes)
            where = f"cluster {scheme}://{auth}{nodes}"
        else:
            where = f"{scheme}://{auth}{RedisNode(self.host, self.port)}/{self.db}"
        closed = "; fail closed" if self.fail_closed else ""
        return (
            f"{where} (from {self.source}; namespace {self.namespace!r}; "
            f"timeout {self.timeout:g} s{closed})"
        )


class _Reader:
    """Typed reads with key paths; ``os.environ/VAR`` and ``${VAR}`` resolved."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.warnings: list[str] = []
        self.missing: list[tuple[str, str]] = []  # (path, variable)

    def value(self, raw: Any, path: str) -> Any:
        if not isinstance(raw, str):
            return raw
        if raw.startswith(_ENV_PREFIX):
            var = raw[len(_ENV_PREFIX) :]
            if var not in self.env:
                self.missing.append((path, var))
                return None
            return self.env[var]
        absent: list[str] = []

        def sub(match: re.Match[str]) -> str:
            if match.group(1) not in self.env:
                absent.append(match.group(1))
                return ""
            return self.env[match.group(1)]

        text = _ENV_REF.sub(sub, raw)
        if absent:
            self.missing.append((path, absent[0]))
            return None
        return text

    def mapping(self, raw: Any, path: str) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise ConfigError(path, f"expected a mapping, got {type(raw).__name__}")
        return raw

    def text(self, raw: Any, path: str) -> str | None:
        value = self.value(raw, path)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(path, f"expected a string, got {type(value).__name__}")
        return str(value) or None

    def integer(self, raw: Any, path: str, *, low: int = 0, high: int | None = None) -> int | None:
        value = self.value(raw, path)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected a whole number, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ConfigError(path, f"expected a number {bound}, got {value}")
        return value

    def seconds(self, raw: Any, path: str) -> float | None:
        value = self.value(raw, path)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(path, f"expected seconds, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(path, f"expected a positive number of seconds, got {value!r}")
        if not math.isfinite(value) or value > MAX_TIMEOUT:
            # .nan would switch the timeout off and .inf would wait forever on a dead Redis.
            raise ConfigError(path, f"expected at most {MAX_TIMEOUT:g} seconds, got {value!r}")
        return float(value)

    def flag(self, raw: Any, path: str) -> bool | None:
        value = self.value(raw, path)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(path, f"expected true or false, got {value!r}")

    def nodes(self, raw: Any, path: str) -> tuple[RedisNode, ...]:
        value = self.value(raw, path)
        if isinstance(value, str):  # REDIS_CLUSTER_NODES is JSON
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(path, "expected a JSON list of {host, port}") from None
        if not isinstance(value, list) or not value:
            raise ConfigError(path, "expected a list of {host, port}")
        nodes = []
        for i, item in enumerate(value):
            item = self.mapping(item, f"{path}[{i}]")
            host = self.text(item.get("host"), f"{path}[{i}].host")
            if host is None:
                raise ConfigError(f"{path}[{i}].host", "required")
            port = self.integer(item.get("port", DEFAULT_PORT), f"{path}[{i}].port", low=1)
            nodes.append(RedisNode(host, port or DEFAULT_PORT))
        return tuple(nodes)


def _from_url(read: _Reader, url: str, path: str) -> SharedStateSettings:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "valkey", "valkeys"):
        raise ConfigError(path, "expected a redis:// or rediss:// URL")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(path, "the URL's port is not a number") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    db_text = parts.path.strip("/") or query.get("db", "0")
    db = read.integer(db_text, f"{path} (database)")
    return SharedStateSettings(
        enabled=True,
        source=path,
        host=parts.hostname or "127.0.0.1",
        port=port,
        db=db or 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme.endswith("s"),
        ssl_cert_reqs=query.get("ssl_cert_reqs"),
    )


def _connection(
    read: _Reader, raw: Mapping[str, Any], path_of: Callable[[str], str]
) -> SharedStateSettings | None:
    """One connection mapping (``host``/``url``/``startup_nodes``...); ``None`` if it names none.

    ``path_of`` turns a key of ``raw`` into the key path the user wrote.
    """
    for key in _UNSUPPORTED:
        if raw.get(key) is not None:
            read.warnings.append(
                f"{path_of(key)}: Redis Sentinel and cloud IAM are not supported by "
                "FeatherGate; this source is ignored"
            )
            return None
    env = read.env
    url = read.text(raw.get("url"), path_of("url"))
    nodes_key = "startup_nodes" if "startup_nodes" in raw else "redis_startup_nodes"
    host = read.text(raw.get("host"), path_of("host"))
    if url is not None:
        settings = _from_url(read, url, path_of("url"))
    elif raw.get(nodes_key) is not None:
        settings = SharedStateSettings(
            enabled=True,
            source=path_of(nodes_key),
            startup_nodes=read.nodes(raw[nodes_key], path_of(nodes_key)),
        )
    elif host is not None:
        port = read.integer(raw.get("port", env.get("REDIS_PORT")), path_of("port"), low=1)
        settings = SharedStateSettings(
            enabled=True, source=path_of("host"), host=host, port=port or DEFAULT_PORT
        )
    else:
        return None
    if url is None:
        db = read.integer(raw.get("db", env.get("REDIS_DB")), path_of("db"))
        password = raw.get("password", env.get("REDIS_PASSWORD"))
        username = raw.get("username", env.get("REDIS_USERNAME"))
        ssl = read.flag(raw.get("ssl", env.get("REDIS_SSL")), path_of("ssl"))
        settings = replace(
            settings,
            db=db or 0,
            password=read.text(password, path_of("password")),
            username=read.text(username, path_of("username")),
            ssl=bool(ssl),
        )

    def ssl_option(key: str) -> Any:
        return raw.get(key, env.get(f"REDIS_{key.upper()}"))

    cert_reqs = read.text(ssl_option("ssl_cert_reqs"), path_of("ssl_cert_reqs"))
    if cert_reqs is not None and cert_reqs.lower() not in ("required", "optional", "none"):
        raise ConfigError(path_of("ssl_cert_reqs"), "expected required, optional or none")
    return replace(
        settings,
        ssl_cert_reqs=cert_reqs.lower() if cert_reqs else settings.ssl_cert_reqs,
        ssl_check_hostname=read.flag(
            ssl_option("ssl_check_hostname"), path_of("ssl_check_hostname")
        ),
        ssl_ca_certs=read.text(ssl_option("ssl_ca_certs"), path_of("ssl_ca_certs")),
        namespace=read.text(raw.get("namespace"), path_of("namespace")) or DEFAULT_NAMESPACE,
        timeout=read.seconds(raw.get("socket_timeout"), path_of("socket_timeout"))
        or DEFAULT_TIMEOUT,
        max_connections=read.integer(raw.get("max_connections"), path_of("max_connections"), low=1),
    )


def _under(prefix: str) -> Callable[[str], str]:
    return lambda key: f"{prefix}.{key}"


def _router_source(read: _Reader, router: Mapping[str, Any]) -> SharedStateSettings | None:
    kwargs = read.mapping(router.get("cache_kwargs"), "router_settings.cache_kwargs")
    raw: dict[str, Any] = {k: v for k, v in kwargs.items() if k in _CONNECTION_KEYS}
    for key in ("url", "host", "port", "password", "db"):
        if f"redis_{key}" in router:
            raw[key] = router[f"redis_{key}"]

    def path_of(key: str) -> str:
        if f"redis_{key}" in router:
            return f"router_settings.redis_{key}"
        return f"router_settings.cache_kwargs.{key}"

    return _connection(read, raw, path_of)


def _cache_source(read: _Reader, litellm: Mapping[str, Any]) -> SharedStateSettings | None:
    params = read.mapping(litellm.get("cache_params"), "litellm_settings.cache_params")
    if not params:
        return None
    kind = read.text(params.get("type", "redis"), "litellm_settings.cache_params.type")
    if kind != "redis":
        return None
    if not read.flag(litellm.get("cache"), "litellm_settings.cache"):
        read.warnings.append(
            "litellm_settings.cache_params: ignored because litellm_settings.cache is not true "
            "(as in LiteLLM)"
        )
        return None
    return _connection(read, params, _under("litellm_settings.cache_params"))


def _env_source(read: _Reader) -> SharedStateSettings | None:
    env = read.env
    raw: dict[str, Any] = {}
    if env.get("REDIS_URL"):
        raw["url"] = env["REDIS_URL"]
    elif env.get("REDIS_CLUSTER_NODES"):
        raw["startup_nodes"] = env["REDIS_CLUSTER_NODES"]
    elif env.get("REDIS_HOST"):
        raw["host"] = env["REDIS_HOST"]
    else:
        return None
    names = {"startup_nodes": "REDIS_CLUSTER_NODES"}
    return _connection(read, raw, lambda key: names.get(key, f"REDIS_{key.upper()}"))


def parse_shared_state(
    router: Mapping[str, Any],
    litellm: Mapping[str, Any],
    general: Mapping[str, Any],
    feathergate: Mapping[str, Any],
    environ: Mapping[str, str],
) -> tuple[SharedStateSettings, list[str]]:
    """The shared-state settings and the warnings to print; raises :class:`ConfigError`."""
    read = _Reader(environ)
    coordination = read.mapping(
        general.get("coordination_redis"), "general_settings.coordination_redis"
    )
    found = (
        _connection(read, coordination, _under("general_settings.coordination_redis"))
        or _router_source(read, router)
        or _cache_source(read, litellm)
        or _env_source(read)
    )
    if read.flag(litellm.get("cache"), "litellm_settings.cache"):
        read.warnings.append(
            "litellm_settings.cache: FeatherGate has no response cache yet; "
            "a Redis named in cache_params is used for shared router state only"
        )
    for path, var in read.missing:
        read.warnings.append(f"{path}: environment variable {var} is not set")
    settings = found or SharedStateSettings()
    fail_closed = read.flag(
        general.get("fail_closed_rate_limit_enforcement"),
        "general_settings.fail_closed_rate_limit_enforcement",
    )
    timeout = read.seconds(feathergate.get("redis_timeout"), "feathergate_settings.redis_timeout")
    settings = replace(settings, fail_closed=bool(fail_closed), timeout=timeout or settings.timeout)
    return settings, read.warnings
