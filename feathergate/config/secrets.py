"""API keys and the master key: read once, cleaned, and never shown.

A key travels in a request header (``Authorization: Bearer <key>``,
``x-api-key``, ``api-key``, ``x-goog-api-key``), so it may hold only visible
ASCII: a line break would end the header (request smuggling on a pooled
connection), and non-ASCII has no agreed byte form in a header. Surrounding
whitespace, the trailing newline of a secret file, is removed with a warning;
anything else is a config error. Neither the warning nor the error shows the
value.
"""

from __future__ import annotations

import re
from typing import Any

from feathergate.config.model import Secret
from feathergate.config.readers import Reader
from feathergate.errors import ConfigError

__all__ = ["check_secret", "read_master_key", "read_secret"]

MASTER_KEY_PATH = "general_settings.master_key"

_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]*")


def check_secret(reader: Reader, value: str, path: str) -> str:
    clean = reader.stripped(value, path)
    if not _VISIBLE_ASCII.fullmatch(clean):
        raise ConfigError(
            path,
            "a key may hold only visible ASCII characters, without spaces, line breaks "
            "or control characters (the value is not shown)",
        )
    return clean


def read_secret(reader: Reader, raw: Any, path: str) -> tuple[str | None, str | None]:
    """The cleaned secret, or ``None``; and the environment variable that is not set."""
    value, missing = reader.text(raw, path)
    return (None if value is None else check_secret(reader, value, path)), missing


def read_master_key(reader: Reader, raw: Any) -> Secret | None:
    if raw is None:
        return None
    # Failing open would expose every model: an unset or empty key refuses to start.
    value, missing = read_secret(reader, raw, MASTER_KEY_PATH)
    if missing:
        raise ConfigError(MASTER_KEY_PATH, f"environment variable {missing} is not set")
    if not value:
        raise ConfigError(MASTER_KEY_PATH, "is empty; remove the key to serve without one")
    return Secret(value)
