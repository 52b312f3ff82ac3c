"""The access log: one line per request when it ends, built from what the relay recorded.

A record says who asked for what (request id, method, path, client, the
key's label: never a key), where it went (model alias, deployment id,
retries and fallbacks), what came back (upstream status, status sent,
tokens in and out, cost when known) and how long it took (latency; time
to first token for streams), and how it ended:

=========================  ==============================================
``completed``              the response went out whole
``error``                  an error status, or an error event mid-stream
``deadline:<kind>``        a deadline expired: ``connect``, ``first_token``,
                           ``idle``, ``total``, ``request_body``, or
                           ``client_stall`` (the client stopped reading)
``client_left:<phase>``    the client went away; the phase it was in
``shutdown``               ended by the drain at the end of the grace period
``internal_error``         a bug (its traceback is logged under the same id)
=========================  ==============================================

The record is built on the event loop (a few attribute reads) and rendered
by the log writer's thread: text by ``str()``, JSON by :meth:`fields`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

from feathergate.errors import GatewayError, RequestTimeout

__all__ = ["ACCESS", "AccessRecord", "log_access", "outcome"]

ACCESS = logging.getLogger("feathergate.access")


def log_access(record: AccessRecord) -> None:
    """``ACCESS.info(record)`` without looking up the caller's frame: a line per request."""
    ACCESS.handle(logging.LogRecord(ACCESS.name, logging.INFO, __file__, 0, record, None, None))


@dataclass(frozen=True, slots=True)
class AccessRecord:
    request_id: str
    method: str
    path: str
    status: int
    latency: float  # seconds, request start to the response's end
    end: str
    client: str | None = None
    model: str | None = None  # the alias the client asked for
    deployment: str | None = None  # the id of the last deployment tried
    upstream_status: int | None = None
    ttft: float | None = None  # streams: seconds to the first chunk sent
    retries: int = 0
    fallbacks: int = 0
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None  # filled once spend tracking knows prices
    key: str | None = None  # "master", a virtual key's alias, or "sk-...abcd": never a key
    error: str | None = None  # the error's code, else its type

    def fields(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _FIELDS}

    def __str__(self) -> str:
        ms = f"{self.latency * 1000:.1f}ms"
        ttft = f"{self.ttft * 1000:.1f}ms" if self.ttft is not None else "-"
        return (
            f'{self.client or "-"} "{self.method} {self.path}" {self.status} {ms} '
            f"id={self.request_id} model={_dash(self.model)} "
            f"deployment={_dash(self.deployment)} upstream={_dash(self.upstream_status)} "
            f"ttft={ttft} retries={self.retries} fallbacks={self.fallbacks} "
            f"tokens={_dash(self.tokens_in)}/{_dash(self.tokens_out)} cost={_dash(self.cost)} "
            f"key={_dash(self.key)} end={self.end}" + (f" error={self.error}" if self.error else "")
        )


_FIELDS = tuple(f.name for f in fields(AccessRecord))


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def outcome(status: int, ended: str | None, error: GatewayError | None) -> str:
    """The record's ``end``; ``ended`` is what the relay saw, when it saw something."""
    if ended:
        return ended
    if isinstance(error, RequestTimeout):
        return "deadline:request_body"
    if error is None and status < 400:
        return "completed"
    return "error"


def error_label(error: GatewayError | None) -> str | None:
    return None if error is None else error.error_code or error.error_type
