"""``extra_headers``: names and values that can go on the wire exactly as written.

The upstream client writes them into the request head verbatim, so they are
checked here, once, against RFC 9110 (the rules h11 enforces, ``h11/_abnf.py``):

* a name is a ``token`` (§5.6.2): no ``:``, space, CR, LF or NUL;
* a value is visible ASCII with inner spaces and tabs (§5.5). ``obs-text``
  (bytes 0x80-0xFF) is refused too: a YAML string has no agreed byte form
  in a header, and the wire would send Latin-1 where the author meant UTF-8;
* names that frame the message or belong to the connection are refused,
  because the client sets them itself and a second copy splits the message
  differently for the upstream and any proxy in between: ``content-length``,
  ``transfer-encoding``, ``host``, ``connection``, ``keep-alive``,
  ``proxy-connection``, ``te``, ``trailer``, ``upgrade`` (RFC 9110 §7.6.1's
  hop-by-hop set) and ``expect`` (the client never waits for ``100 Continue``);
* a name given twice, in any case, is refused: which copy wins would
  depend on the provider.

A value may hold a secret, so it is cleaned like one (surrounding whitespace
removed with a warning) and never shown in a message.
"""

from __future__ import annotations

import re
from typing import Any

from feathergate.config.readers import Reader
from feathergate.errors import ConfigError

__all__ = ["FORBIDDEN", "check_name", "check_value", "read_headers"]

FORBIDDEN = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?")


def check_name(name: Any, path: str) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ConfigError(
            path,
            f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)",
        )
    if name.lower() in FORBIDDEN:
        raise ConfigError(f"{path}.{name}", "is set by FeatherGate itself and may not be given")
    return name


def check_value(value: str, path: str) -> str:
    if not _FIELD_VALUE.fullmatch(value):
        raise ConfigError(
            path,
            "a header value may hold only visible ASCII with inner spaces or tabs, "
            "without line breaks, NUL or other control characters (the value is not shown)",
        )
    return value


def read_headers(
    reader: Reader, raw: Any, path: str, missing: list[str]
) -> tuple[tuple[str, str], ...]:
    """The checked headers; unset variables are appended to ``missing``."""
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, raw_value in reader.mapping(raw, path).items():
        name = check_name(name, path)
        where = f"{path}.{name}"
        if name.lower() in seen:
            raise ConfigError(where, "given twice (header names are case-insensitive)")
        seen.add(name.lower())
        value, var = reader.text(raw_value, where)
        if var:
            missing.append(var)
        headers.append((name, check_value(reader.stripped(value or "", where), where)))
    return tuple(headers)
