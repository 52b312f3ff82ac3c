"""Where an upstream lives: the scheme, host and port of a base URL, and request targets on it.

Only ``http`` and ``https`` with a host are origins. A scheme-less base such as
``api.example.com/v1`` is refused rather than read the way ``urlsplit`` does
(no host, so ``localhost:80`` in plaintext, with the API key on it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from feathergate.errors import InvalidUpstreamRequest

__all__ = ["Origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 reg-name, IPv4 and (unbracketed) IPv6 characters: what a Host header may hold.
_HOST = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:-]+")
# A request-target h11 accepts as is (``vchar+``); anything else is percent-encoded.
_TARGET = re.compile(r"/[\x21-\x7e]*")
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str  # ASCII (IDNA for a non-ASCII name); an IPv6 literal without brackets
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of ``url``; ``ValueError`` if it has none FeatherGate can call."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"{_shown(url)} is not an http:// or https:// URL")
        host = parts.hostname
        if not host:
            raise ValueError(f"{_shown(url)} has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{_shown(url)}: credentials in the URL are not sent; use a header")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError
        if _HOST.fullmatch(host) is None:
            raise ValueError(f"{_shown(url)} has an invalid host")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"{_shown(url)} has an invalid port")
        return cls(scheme, host, port or _DEFAULT_PORTS[scheme])

    @property
    def authority(self) -> str:
        """The ``Host`` header: brackets around an IPv6 literal, no default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"

    def request_target(self, url: str, prefix: str) -> str:
        """The path and query of ``url``, which must be on this origin.

        ``prefix`` is ``str(self)``, passed in so the usual URL (built from the
        same base) costs one ``startswith``. A URL on another origin is an
        error, never a request sent to this one; a bare path is on this one.
        Characters a request line cannot carry (spaces, controls, non-ASCII)
        are percent-encoded, as httpx does: an Azure path holds the client's
        model name.
        """
        if url.startswith("/") and not url.startswith("//"):
            rest = url  # origin-relative: no authority to disagree with
        elif url.startswith(prefix) and url[len(prefix) : len(prefix) + 1] in ("/", "?", ""):
            rest = url[len(prefix) :]
        else:
            try:
                other: Origin | None = Origin.parse(url)
            except ValueError:
                other = None
            if other != self:
                raise InvalidUpstreamRequest(f"an upstream URL is not on the origin {self}")
            parts = urlsplit(url)
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
        rest = rest.partition("#")[0]
        if not rest.startswith("/"):
            rest = "/" + rest
        if _TARGET.fullmatch(rest) is None:
            rest = quote(rest, safe=_TARGET_SAFE)
        return rest


def _shown(url: str) -> str:
    # Enough to find the config entry; a URL with credentials in it is cut before them.
    return repr(url.split("@", 1)[-1][:60]) if "@" in url else repr(url[:60])
