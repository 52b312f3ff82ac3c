"""LiteLLM's proxy YAML, parsed once into frozen objects.

Validation messages name the key path (``model_list[2].litellm_params.model:
unknown provider 'foo'``). Keys LiteLLM knows and FeatherGate does not use
yet load with one warning each, so a team's existing config keeps working.

Secrets are written ``os.environ/VAR`` (LiteLLM) or ``${VAR}`` (anywhere in
a string). A variable that is not set is a warning, and the deployment that
needs it answers every request with an error naming the variable.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from feathergate.errors import ConfigError
from feathergate.keys.settings import GENERAL_KEYS, LITELLM_KEYS, KeySettings, parse_key_settings
from feathergate.providers.catalog import CATALOG, KNOWN_ELSEWHERE, split_model

__all__ = [
    "Config",
    "Deadlines",
    "Deployment",
    "FallbackRule",
    "RouterSettings",
    "Secret",
    "ServerSettings",
    "load_config",
    "parse_config",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_PREFIX = "os.environ/"

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
class RouterSettings:
    routing_strategy: str = "simple-shuffle"
    routing_strategy_args: Mapping[str, Any] = field(default_factory=dict)
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
    body_timeout: float = 600.0
    tcp_user_timeout: float | None = 30.0
    client_stall_timeout: float = 30.0
    # Image URLs may reach these despite the address policy (feathergate.address_policy).
    image_url_allowed_hosts: tuple[str, ...] = ()
    image_url_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    deployments: tuple[Deployment, ...]
    router: RouterSettings = RouterSettings()
    server: ServerSettings = ServerSettings()
    drop_params: bool = False
    warnings: tuple[str, ...] = ()
    source: str = "<memory>"
    keys: KeySettings = field(default_factory=KeySettings)


# Keys FeatherGate reads. Anything else in a known section is warned about once.
_TOP_KEYS = {
    "model_list",
    "litellm_settings",
    "router_settings",
    "general_settings",
    "environment_variables",
    "feathergate_settings",
}
_PARAM_KEYS = {
    "model",
    "api_key",
    "api_base",
    "api_version",
    "timeout",
    "stream_timeout",
    "connect_timeout",
    "first_token_timeout",
    "max_retries",
    "rpm",
    "tpm",
    "weight",
    "order",
    "extra_headers",
    "mock_response",
    "drop_params",
}
_ENTRY_KEYS = {"model_name", "litellm_params", "model_info"}
_LITELLM_KEYS = {
    *LITELLM_KEYS,
    "drop_params",
    "request_timeout",
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
}
_ROUTER_KEYS = {
    "routing_strategy",
    "routing_strategy_args",
    "num_retries",
    "retry_policy",
    "timeout",
    "stream_timeout",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "max_fallbacks",
}
_GENERAL_KEYS = {"master_key", "max_request_size_mb", *GENERAL_KEYS}
_FEATHERGATE_KEYS = {
    "shutdown_grace_period",
    "keep_alive_timeout",
    "body_timeout",
    "tcp_user_timeout",
    "client_stall_timeout",
    "provider_defaults",
    "image_url_allowed_hosts",
    "image_url_allowed_networks",
}
_DEADLINE_KEYS = {"timeout", "stream_timeout", "connect_timeout", "first_token_timeout"}
_STRATEGIES = {
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
}


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config {str(path)!r}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, environ, source=str(path))


def parse_config(
    raw: Any, environ: Mapping[str, str] | None = None, *, source: str = "<memory>"
) -> Config:
    return _Parser(os.environ if environ is None else environ).parse(raw, source)


class _Parser:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = dict(environ)
        self.warnings: list[str] = []

    # -- small typed readers -------------------------------------------------
    def _unknown(self, where: str, data: Mapping[str, Any], known: set[str]) -> None:
        for key in data:
            if key not in known:
                path = f"{where}.{key}" if where else str(key)
                self.warnings.append(f"{path}: not used by FeatherGate; ignored")

    def _map(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
        return value

    def _number(self, value: Any, path: str, *, integer: bool = False) -> float | None:
        value = self._expand(value, path)[0]
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(path, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {type(value).__name__}")
        if value < 0:
            raise ConfigError(path, f"must not be negative, got {value}")
        if integer and value != int(value):
            raise ConfigError(path, f"expected a whole number, got {value}")
        return float(value)

    def _int(self, value: Any, path: str) -> int | None:
        number = self._number(value, path, integer=True)
        return None if number is None else int(number)

    def _bool(self, value: Any, path: str) -> bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value

    def _expand(self, value: Any, path: str) -> tuple[Any, str | None]:
        """Resolve ``os.environ/VAR`` and ``${VAR}``; returns (value, missing variable)."""
        if not isinstance(value, str):
            return value, None
        if value.startswith(_ENV_PREFIX):
            var = value[len(_ENV_PREFIX) :]
            return (self.env[var], None) if var in self.env else (None, var)
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in self.env:
                missing.append(var)
                return ""
            return self.env[var]

        expanded = _ENV_REF.sub(sub, value)
        return (None, missing[0]) if missing else (expanded, None)

    def _str(self, value: Any, path: str) -> tuple[str | None, str | None]:
        value, missing = self._expand(value, path)
        if value is not None and not isinstance(value, str | int | float):
            raise ConfigError(path, f"expected a string, got {type(value).__name__}")
        return (None if value is None else str(value)), missing

    # -- sections --------------------------------------------------------------
    def parse(self, raw: Any, source: str) -> Config:
        if raw is None:
            raw = {}
        root = self._map(raw, "")
        self._unknown("", root, _TOP_KEYS)
        for key, value in self._map(
            root.get("environment_variables"), "environment_variables"
        ).items():
            # LiteLLM exports these before reading the rest; the process's own env wins.
            self.env.setdefault(str(key), str(value))
        litellm = self._map(root.get("litellm_settings"), "litellm_settings")
        self._unknown("litellm_settings", litellm, _LITELLM_KEYS)
        router_raw = self._map(root.get("router_settings"), "router_settings")
        self._unknown("router_settings", router_raw, _ROUTER_KEYS)
        general = self._map(root.get("general_settings"), "general_settings")
        self._unknown("general_settings", general, _GENERAL_KEYS)
        ours = self._map(root.get("feathergate_settings"), "feathergate_settings")
        self._unknown("feathergate_settings", ours, _FEATHERGATE_KEYS)

        drop_params = self._bool(litellm.get("drop_params", False), "litellm_settings.drop_params")
        global_deadlines = self._deadlines(
            {
                "timeout": router_raw.get("timeout", litellm.get("request_timeout")),
                "stream_timeout": router_raw.get("stream_timeout"),
            },
            "router_settings",
            Deadlines(),
        )
        provider_defaults = self._provider_defaults(ours.get("provider_defaults"), global_deadlines)
        entries = root.get("model_list")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise ConfigError("model_list", "expected a list of model entries")
        deployments = tuple(
            self._deployment(
                entry, f"model_list[{i}]", drop_params, global_deadlines, provider_defaults
            )
            for i, entry in enumerate(entries)
        )
        ids = [d.id for d in deployments]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            raise ConfigError("model_list", f"model_info.id {dup!r} is used by more than one entry")
        server = self._server(general, ours)
        return Config(
            deployments=deployments,
            router=self._router(router_raw, litellm),
            server=server,
            drop_params=drop_params,
            warnings=tuple(self.warnings),
            source=source,
            keys=parse_key_settings(
                general, litellm, self.env, source, has_master_key=bool(server.master_key)
            ),
        )

    def _deadlines(self, raw: Mapping[str, Any], path: str, base: Deadlines) -> Deadlines:
        def get(key: str, current: float | None) -> float | None:
            if raw.get(key) is None:
                return current
            value = self._number(raw[key], f"{path}.{key}")
            return value if value else None  # 0 switches a deadline off

        return Deadlines(
            connect=get("connect_timeout", base.connect),
            first_token=get("first_token_timeout", base.first_token),
            idle=get("stream_timeout", base.idle),
            total=get("timeout", base.total),
        )

    def _provider_defaults(self, raw: Any, base: Deadlines) -> dict[str, Deadlines]:
        path = "feathergate_settings.provider_defaults"
        result: dict[str, Deadlines] = {}
        for name, values in self._map(raw, path).items():
            if name not in CATALOG:
                raise ConfigError(f"{path}.{name}", f"unknown provider {name!r}")
            values = self._map(values, f"{path}.{name}")
            self._unknown(f"{path}.{name}", values, _DEADLINE_KEYS)
            result[name] = self._deadlines(values, f"{path}.{name}", base)
        return result

    def _deployment(
        self,
        entry: Any,
        path: str,
        drop_params: bool,
        global_deadlines: Deadlines,
        provider_defaults: Mapping[str, Deadlines],
    ) -> Deployment:
        entry = self._map(entry, path)
        self._unknown(path, entry, _ENTRY_KEYS)
        name = entry.get("model_name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}.model_name", "required: the name clients ask for")
        params = self._map(entry.get("litellm_params"), f"{path}.litellm_params")
        ppath = f"{path}.litellm_params"
        self._unknown(ppath, params, _PARAM_KEYS)
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{ppath}.model", "required: '<provider>/<model>'")
        provider, upstream_model = split_model(model)
        unavailable = None
        info = CATALOG.get(provider)
        if info is None:
            if provider not in KNOWN_ELSEWHERE:
                raise ConfigError(f"{ppath}.model", f"unknown provider {provider!r}")
            unavailable = f"provider {provider!r} is not supported by FeatherGate yet"
            self.warnings.append(f"{ppath}.model: {unavailable}; requests to {name!r} will fail")
            adapter = "none"
        else:
            adapter = info.adapter

        missing: list[str] = []

        def text(key: str) -> str | None:
            value, var = self._str(params.get(key), f"{ppath}.{key}")
            if var:
                missing.append(var)
            return value

        api_base = text("api_base")
        api_version = text("api_version")
        mock = params.get("mock_response")
        if mock is not None and not isinstance(mock, str):
            raise ConfigError(f"{ppath}.mock_response", "expected a string")
        if "api_key" in params:
            key_value, key_var = self._str(params["api_key"], f"{ppath}.api_key")
            if key_var:
                missing.append(key_var)
        elif info is not None and info.key_env:
            # LiteLLM falls back to the provider's usual variable; so do we.
            key_value, key_var = self.env.get(info.key_env), None
            if key_value is None and info.key_required and mock is None and api_base is None:
                key_var = info.key_env
                missing.append(info.key_env)
        else:
            key_value, key_var = None, None
        needs_base = info is not None and info.default_api_base is None and mock is None
        if needs_base and api_base is None and not missing:
            raise ConfigError(f"{ppath}.api_base", f"required for provider {provider!r}")
        headers = self._map(params.get("extra_headers"), f"{ppath}.extra_headers")
        header_items: list[tuple[str, str]] = []
        for hname, hvalue in headers.items():
            value, var = self._str(hvalue, f"{ppath}.extra_headers.{hname}")
            if var:
                missing.append(var)
            header_items.append((str(hname), value or ""))
        for var in dict.fromkeys(missing):
            self.warnings.append(
                f"{ppath}: environment variable {var} is not set; requests to {name!r} will fail"
            )
        model_info = dict(self._map(entry.get("model_info"), f"{path}.model_info"))
        dep_id = model_info.get("id")
        if dep_id is None:
            # Stable across restarts; the path keeps identical entries apart.
            digest = hashlib.sha256(f"{path}\0{name}\0{model}\0{api_base}".encode()).hexdigest()
            dep_id = digest[:16]
        deadlines = self._deadlines(
            params, ppath, provider_defaults.get(provider, global_deadlines)
        )
        drop = params.get("drop_params")
        return Deployment(
            model_name=name,
            provider=provider,
            adapter=adapter,
            model=upstream_model,
            api_base=api_base.rstrip("/") if api_base else None,
            api_key=Secret(key_value, key_var),
            id=str(dep_id),
            api_version=api_version,
            deadlines=deadlines,
            max_retries=self._int(params.get("max_retries"), f"{ppath}.max_retries"),
            rpm=self._int(params.get("rpm"), f"{ppath}.rpm"),
            tpm=self._int(params.get("tpm"), f"{ppath}.tpm"),
            weight=self._number(params.get("weight"), f"{ppath}.weight"),
            order=self._int(params.get("order"), f"{ppath}.order"),
            extra_headers=tuple(header_items),
            mock_response=mock,
            drop_params=drop_params if drop is None else self._bool(drop, f"{ppath}.drop_params"),
            model_info=model_info,
            unavailable=unavailable,
            missing_var=missing[0] if missing else None,
        )

    def _fallbacks(self, raw: Any, path: str) -> tuple[FallbackRule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise ConfigError(path, "expected a list of {model: [fallback, ...]} maps")
        rules: list[FallbackRule] = []
        for i, item in enumerate(raw):
            item = self._map(item, f"{path}[{i}]")
            for model, targets in item.items():
                if isinstance(targets, str):
                    targets = [targets]
                if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                    raise ConfigError(f"{path}[{i}].{model}", "expected a list of model names")
                rules.append(FallbackRule(str(model), tuple(targets)))
        return tuple(rules)

    def _router(self, raw: Mapping[str, Any], litellm: Mapping[str, Any]) -> RouterSettings:
        def pick(key: str) -> tuple[Any, str]:
            if key in raw:
                return raw[key], f"router_settings.{key}"
            return litellm.get(key), f"litellm_settings.{key}"

        strategy = raw.get("routing_strategy", "simple-shuffle")
        if strategy not in _STRATEGIES:
            raise ConfigError(
                "router_settings.routing_strategy",
                f"unknown strategy {strategy!r} (one of {', '.join(sorted(_STRATEGIES))})",
            )
        retries_raw, retries_path = pick("num_retries")
        default_raw, default_path = pick("default_fallbacks")
        default_fallbacks = default_raw or []
        if not isinstance(default_fallbacks, list):
            raise ConfigError(default_path, "expected a list of model names")

        def int_map(key: str) -> dict[str, int]:
            values = self._map(raw.get(key), f"router_settings.{key}")
            return {
                str(k): self._int(v, f"router_settings.{key}.{k}") or 0 for k, v in values.items()
            }

        return RouterSettings(
            routing_strategy=str(strategy),
            routing_strategy_args=self._map(
                raw.get("routing_strategy_args"), "router_settings.routing_strategy_args"
            ),
            num_retries=self._int(retries_raw, retries_path) or 0,
            retry_policy=int_map("retry_policy"),
            allowed_fails=self._int(raw.get("allowed_fails", 3), "router_settings.allowed_fails")
            or 0,
            allowed_fails_policy=int_map("allowed_fails_policy"),
            cooldown_time=self._number(raw.get("cooldown_time", 5), "router_settings.cooldown_time")
            or 0.0,
            fallbacks=self._fallbacks(*pick("fallbacks")),
            context_window_fallbacks=self._fallbacks(*pick("context_window_fallbacks")),
            content_policy_fallbacks=self._fallbacks(*pick("content_policy_fallbacks")),
            default_fallbacks=tuple(str(m) for m in default_fallbacks),
            max_fallbacks=self._int(raw.get("max_fallbacks", 5), "router_settings.max_fallbacks")
            or 0,
        )

    def _server(self, general: Mapping[str, Any], ours: Mapping[str, Any]) -> ServerSettings:
        master_key = None
        if general.get("master_key") is not None:
            value, var = self._str(general["master_key"], "general_settings.master_key")
            if var:
                # Failing open would expose every model; refuse to start instead.
                raise ConfigError(
                    "general_settings.master_key", f"environment variable {var} is not set"
                )
            master_key = Secret(value)
        size_mb = self._number(
            general.get("max_request_size_mb", 32), "general_settings.max_request_size_mb"
        )
        defaults = ServerSettings()

        def seconds(key: str, default: float | None) -> float | None:
            if key not in ours:
                return default
            value = self._number(ours[key], f"feathergate_settings.{key}")
            return value if value else None

        return ServerSettings(
            master_key=master_key,
            max_request_bytes=int((size_mb or 32) * 1024 * 1024),
            shutdown_grace_period=seconds("shutdown_grace_period", defaults.shutdown_grace_period)
            or 0.0,
            keep_alive_timeout=seconds("keep_alive_timeout", defaults.keep_alive_timeout)
            or defaults.keep_alive_timeout,
            body_timeout=seconds("body_timeout", defaults.body_timeout) or defaults.body_timeout,
            tcp_user_timeout=seconds("tcp_user_timeout", defaults.tcp_user_timeout),
            client_stall_timeout=seconds("client_stall_timeout", defaults.client_stall_timeout)
            or defaults.client_stall_timeout,
            image_url_allowed_hosts=tuple(
                self._allowed_host(v, p) for v, p in self._list(ours, "image_url_allowed_hosts")
            ),
            image_url_allowed_networks=tuple(
                self._network(v, p) for v, p in self._list(ours, "image_url_allowed_networks")
            ),
        )

    def _list(self, ours: Mapping[str, Any], key: str) -> list[tuple[Any, str]]:
        """``feathergate_settings.<key>``'s items, each with its key path."""
        path = f"feathergate_settings.{key}"
        values = ours.get(key)
        if values is None:
            return []
        if not isinstance(values, list):
            raise ConfigError(path, f"expected a list, got {type(values).__name__}")
        return [(value, f"{path}[{i}]") for i, value in enumerate(values)]

    def _allowed_host(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value or any(c in value for c in " /:@[]"):
            # A URL or host:port would silently match nothing; IPs go in the networks list.
            raise ConfigError(path, f"expected a bare host name, got {value!r}")
        return value

    def _network(self, value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a network like '10.0.0.0/8', got {value!r}")
        try:
            return ipaddress.ip_network(value)
        except ValueError as exc:
            raise ConfigError(path, f"not a network: {exc}") from None
