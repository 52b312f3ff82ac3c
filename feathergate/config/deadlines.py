"""Deadlines, inherited in three layers: router-wide, per provider, per deployment.

``router_settings.timeout`` (or LiteLLM's ``litellm_settings.request_timeout``)
and ``stream_timeout`` set the defaults; ``feathergate_settings.provider_defaults``
overrides them per provider; a deployment's ``litellm_params`` override both.
``0`` switches a deadline off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from feathergate.catalog import CATALOG
from feathergate.config.model import Deadlines
from feathergate.config.readers import Reader
from feathergate.errors import ConfigError

__all__ = ["DEADLINE_KEYS", "read_deadlines", "read_global_deadlines", "read_provider_defaults"]

DEADLINE_KEYS = {"timeout", "stream_timeout", "connect_timeout", "first_token_timeout"}

_FIELDS = {
    "connect_timeout": "connect",
    "first_token_timeout": "first_token",
    "stream_timeout": "idle",
    "timeout": "total",
}


def _seconds(reader: Reader, value: Any, path: str) -> float | None:
    return reader.finite(value, path) or None  # 0 switches a deadline off


def read_deadlines(reader: Reader, raw: Mapping[Any, Any], path: str, base: Deadlines) -> Deadlines:
    changes = {
        field: _seconds(reader, raw[key], f"{path}.{key}")
        for key, field in _FIELDS.items()
        if raw.get(key) is not None
    }
    return replace(base, **changes)


def read_global_deadlines(
    reader: Reader, router: Mapping[Any, Any], litellm: Mapping[Any, Any]
) -> Deadlines:
    deadlines = read_deadlines(
        reader, {"stream_timeout": router.get("stream_timeout")}, "router_settings", Deadlines()
    )
    if router.get("timeout") is not None:
        total = _seconds(reader, router["timeout"], "router_settings.timeout")
    elif litellm.get("request_timeout") is not None:
        total = _seconds(reader, litellm["request_timeout"], "litellm_settings.request_timeout")
    else:
        return deadlines
    return replace(deadlines, total=total)


def read_provider_defaults(reader: Reader, raw: Any, base: Deadlines) -> dict[str, Deadlines]:
    path = "feathergate_settings.provider_defaults"
    result: dict[str, Deadlines] = {}
    for name, values in reader.mapping(raw, path).items():
        if name not in CATALOG:
            raise ConfigError(f"{path}.{name}", f"unknown provider {name!r}")
        values = reader.mapping(values, f"{path}.{name}")
        reader.unknown(f"{path}.{name}", values, DEADLINE_KEYS)
        result[name] = read_deadlines(reader, values, f"{path}.{name}", base)
    return result
