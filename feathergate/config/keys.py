"""Virtual keys and spend: ``general_settings`` and ``litellm_settings`` keys LiteLLM reads.

``database_url`` (or ``DATABASE_URL``) turns virtual keys on. With a master
key and neither, a config read from a file keeps its keys in a SQLite file
beside it; a config built in memory (tests, embedding) gets a store only
when it names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feathergate.config.model import KeySettings
from feathergate.config.readers import MAX_SECONDS, Reader
from feathergate.errors import ConfigError

__all__ = ["GENERAL_KEYS", "LITELLM_KEYS", "read_keys"]

GENERAL_KEYS = {
    "database_url",
    "always_include_stream_usage",
    "disable_spend_logs",
    "user_api_key_cache_ttl",
}
LITELLM_KEYS = {"timezone", "budget_exceeded_status_code"}

DEFAULT_DB_NAME = "feathergate.db"
_SCHEMES = ("postgresql://", "postgres://", "sqlite:///")


def read_keys(
    reader: Reader,
    general: Mapping[Any, Any],
    litellm: Mapping[Any, Any],
    source: str,
    *,
    has_master_key: bool,
) -> KeySettings:
    path = "general_settings.database_url"
    url, missing = reader.text(general.get("database_url"), path)
    if missing:
        raise ConfigError(path, f"environment variable {missing} is not set")
    if url is None:
        url = reader.env.get("DATABASE_URL") or None
        path = "DATABASE_URL"
    if url is None and has_master_key and source != "<memory>":
        url = f"sqlite:///{Path(source).resolve().parent / DEFAULT_DB_NAME}"
    if url is not None and not url.startswith(_SCHEMES):
        # Never the value: it holds the database password.
        raise ConfigError(path, "expected postgresql://user:password@host/db or sqlite:///path")
    defaults = KeySettings()
    ttl = reader.finite(
        general.get("user_api_key_cache_ttl"),
        "general_settings.user_api_key_cache_ttl",
        maximum=MAX_SECONDS,
    )
    if ttl == 0:
        raise ConfigError("general_settings.user_api_key_cache_ttl", "expected seconds > 0")
    status = reader.count(
        litellm.get("budget_exceeded_status_code"),
        "litellm_settings.budget_exceeded_status_code",
        maximum=599,
    )
    if status is not None and status < 400:
        raise ConfigError(
            "litellm_settings.budget_exceeded_status_code", "expected an HTTP status 400-599"
        )

    def flag(key: str, default: bool) -> bool:
        value = general.get(key)
        return default if value is None else reader.flag(value, f"general_settings.{key}")

    return KeySettings(
        database_url=url,
        timezone=_zone(reader, litellm.get("timezone")),
        budget_exceeded_status=defaults.budget_exceeded_status if status is None else status,
        always_include_stream_usage=flag(
            "always_include_stream_usage", defaults.always_include_stream_usage
        ),
        disable_spend_logs=flag("disable_spend_logs", defaults.disable_spend_logs),
        cache_ttl=defaults.cache_ttl if ttl is None else ttl,
    )


def _zone(reader: Reader, raw: Any) -> tzinfo:
    name, missing = reader.text(raw, "litellm_settings.timezone")
    if missing:
        raise ConfigError("litellm_settings.timezone", f"environment variable {missing} is not set")
    if name is None:
        return KeySettings().timezone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("litellm_settings.timezone", f"unknown time zone {name!r}") from None
