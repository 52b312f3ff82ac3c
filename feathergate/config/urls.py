"""``api_base`` and ``api_version``: what FeatherGate puts into an upstream URL.

An ``api_base`` must say ``http://`` or ``https://``: a base without a scheme
was once sent in plaintext to ``localhost:80`` with the API key, and
``ftp://`` as plaintext HTTP. It must have a host (a name, an IPv4 address or
a bracketed IPv6 literal, ``http://[::1]:8000/v1``) and may have a port from 1
to 65535 and a path. It may not have:

* ``user:password@``: it would be logged with the URL and is not how any
  provider takes a key (``api_key`` is);
* a query or fragment: FeatherGate appends the endpoint's path
  (``/chat/completions``), which would land inside them;
* anything outside printable ASCII: the URL goes into the request line and the
  ``Host`` header as is (write an international name in its ``xn--`` form, and
  percent-encode the path).

Messages never repeat the URL, which may carry a token in its path.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from feathergate.errors import ConfigError

__all__ = ["check_api_base", "check_api_version"]

_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_HOST = re.compile(r"[A-Za-z0-9._-]+")
_PATH = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*")  # RFC 3986 §3.3
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 §2.3


def check_api_base(value: str, path: str) -> str:
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise ConfigError(
            path, "must be printable ASCII without spaces (an international host in xn-- form)"
        )
    try:
        parts = urlsplit(value)
    except ValueError:  # unbalanced or invalid [IPv6] brackets
        raise ConfigError(path, "is not a valid URL (check the [IPv6] brackets)") from None
    if parts.scheme.lower() not in ("http", "https") or "://" not in value:
        got = f"; got scheme {parts.scheme!r}" if parts.scheme and "://" in value else ""
        raise ConfigError(path, f"expected a URL starting with http:// or https://{got}")
    if "@" in parts.netloc:
        raise ConfigError(path, "must not hold user:password@; give the key as api_key")
    if "?" in value or "#" in value:
        raise ConfigError(path, "must not have a query or fragment (the endpoint path follows)")
    _check_host(parts.netloc, parts.hostname or "", path)
    _check_port(parts, path)
    if not _PATH.fullmatch(parts.path):
        raise ConfigError(path, "the path may hold only RFC 3986 characters (percent-encode)")
    return value


def _check_host(netloc: str, host: str, path: str) -> None:
    if netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(path, "[...] must hold an IPv6 address") from None
    elif not host:
        raise ConfigError(path, "has no host")
    elif not _HOST.fullmatch(host):
        raise ConfigError(path, "the host may hold only letters, digits, '.', '-' and '_'")


def _check_port(parts: SplitResult, path: str) -> None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(path, "the port must be a number from 1 to 65535")


def check_api_version(value: str, path: str) -> str:
    if not _UNRESERVED.fullmatch(value):
        raise ConfigError(
            path, "may hold only letters, digits, '-', '.', '_' and '~' (it goes into the URL)"
        )
    return value
