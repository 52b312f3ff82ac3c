"""Logging and tracing settings, in LiteLLM's spelling where LiteLLM has one.

``litellm_settings.json_logs: true`` makes every log line JSON;
``litellm_settings.callbacks: ["otel"]`` (or ``success_callback`` /
``failure_callback``, which LiteLLM also reads) turns tracing on;
``feathergate_settings.access_log: false`` turns the access log off.
Callbacks FeatherGate does not have are warned about, not refused: a LiteLLM
config that names Langfuse still serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.config.model import ObservabilitySettings
from feathergate.config.readers import Reader
from feathergate.errors import ConfigError

__all__ = ["LITELLM_KEYS", "OURS", "read_observability"]

LITELLM_KEYS = {"json_logs", "callbacks", "success_callback", "failure_callback"}
OURS = {"access_log"}

_OTEL = {"otel", "opentelemetry"}
_BUILT_IN = {"prometheus"}  # /metrics serves these without a callback


def read_observability(
    reader: Reader, litellm: Mapping[Any, Any], ours: Mapping[Any, Any]
) -> ObservabilitySettings:
    otel = False
    for key in ("callbacks", "success_callback", "failure_callback"):
        path = f"litellm_settings.{key}"
        for i, name in enumerate(_names(litellm.get(key), path)):
            if name.lower() in _OTEL:
                otel = True
            elif name.lower() not in _BUILT_IN:
                reader.warn(f"{path}[{i}]", f"FeatherGate has no {name!r} callback; ignored")
    access = ours.get("access_log", True)
    return ObservabilitySettings(
        json_logs=reader.flag(litellm.get("json_logs", False), "litellm_settings.json_logs"),
        access_log=reader.flag(access, "feathergate_settings.access_log"),
        otel=otel,
    )


def _names(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, f"expected a list of callback names, got {value!r}")
    return value
