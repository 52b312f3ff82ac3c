"""The last resort: an exception that no other handler knew.

Each route's outermost handler (the chat route in :mod:`feathergate.gateway`,
the Quart routes in :mod:`feathergate.app`) turns it into an
:class:`~feathergate.errors.InternalError`, an OpenAI-shaped 500 (or the
stream's last SSE event) that carries a request id, and logs it here, once,
with its traceback under that id. Nothing re-raises it, so Hypercorn never
logs it a second time or answers its empty 500.

The traceback is the exception's own text, which may quote what it choked
on; every configured key is masked out of it before it is logged.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from urllib.parse import urlsplit

from feathergate.config import Config
from feathergate.errors import InternalError
from feathergate.ids import new_request_id

__all__ = ["internal_error", "secrets_of"]

log = logging.getLogger(__name__)

# Shorter values would mask ordinary words of the traceback; no real key is this short.
_MIN_SECRET = 8


def secrets_of(config: Config) -> tuple[str, ...]:
    """The key values a log line must never show, longest first."""
    keys = {dep.api_key.value for dep in config.deployments}
    if config.server.master_key is not None:
        keys.add(config.server.master_key.value)
    if config.keys.database_url is not None:  # the key store's password
        keys.add(urlsplit(config.keys.database_url).password)
    return tuple(sorted((k for k in keys if k and len(k) >= _MIN_SECRET), key=len, reverse=True))


def internal_error(
    exc: BaseException, route: str, secrets: Iterable[str], request_id: str | None = None
) -> InternalError:
    """Log ``exc`` once under the request's id (a new one without); the error to answer with."""
    request_id = request_id or new_request_id()
    text = "".join(traceback.format_exception(exc)).rstrip()
    for secret in secrets:
        text = text.replace(secret, "***")
    log.error("internal error, request id %s, on %r\n%s", request_id, route, text)
    return InternalError(request_id)
