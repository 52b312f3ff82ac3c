"""The settings of keys and spend, read from LiteLLM's ``general_settings`` and
``litellm_settings``: a pure function over those two mappings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feathergate.errors import ConfigError

__all__ = ["GENERAL_KEYS", "LITELLM_KEYS", "KeySettings", "parse_key_settings"]

GENERAL_KEYS = frozenset(
    {"database_url", "always_include_stream_usage", "disable_spend_logs", "user_api_key_cache_ttl"}
)
LITELLM_KEYS = frozenset({"timezone", "budget_exceeded_status_code"})

DEFAULT_DB_NAME = "feathergate.db"


@dataclass(frozen=True, slots=True)
class KeySettings:
    database_url: str | None = None  # None: virtual keys are off (master key only, or open)
    timezone: tzinfo = UTC
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


def _env(value: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(value, str) and value.startswith("os.environ/"):
        var = value[len("os.environ/") :]
        if var not in environ:
            raise ConfigError(path, f"environment variable {var} is not set")
        return environ[var]
    return value


def parse_key_settings(
    general: Mapping[str, Any],
    litellm: Mapping[str, Any],
    environ: Mapping[str, str],
    source: str,
    *,
    has_master_key: bool,
) -> KeySettings:
    url = _env(general.get("database_url"), environ, "general_settings.database_url")
    if url is None:
        url = environ.get("DATABASE_URL") or None
    if url is None and has_master_key and source != "<memory>":
        # Beside the config file. A config built in memory (tests, embedding) has no
        # file to sit beside: it gets a store only when it names one.
        url = f"sqlite:///{Path(source).resolve().parent / DEFAULT_DB_NAME}"
    if url is not None and not (
        isinstance(url, str) and url.startswith(("postgresql://", "postgres://", "sqlite:///"))
    ):
        raise ConfigError(
            "general_settings.database_url",
            "expected postgresql://user:password@host/db or sqlite:///path",
        )
    zone: tzinfo = UTC
    name = litellm.get("timezone")
    if name is not None:
        try:
            zone = ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("litellm_settings.timezone", f"unknown time zone {name!r}") from None
    status = litellm.get("budget_exceeded_status_code", 422)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ConfigError(
            "litellm_settings.budget_exceeded_status_code", "expected an HTTP status 400-599"
        )
    ttl = general.get("user_api_key_cache_ttl", 60)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise ConfigError("general_settings.user_api_key_cache_ttl", "expected seconds > 0")

    def flag(key: str, default: bool) -> bool:
        value = general.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"general_settings.{key}", "expected true or false")
        return value

    return KeySettings(
        database_url=url,
        timezone=zone,
        budget_exceeded_status=status,
        always_include_stream_usage=flag("always_include_stream_usage", True),
        disable_spend_logs=flag("disable_spend_logs", False),
        cache_ttl=float(ttl),
    )
