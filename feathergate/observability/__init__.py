"""What the gateway tells its operator: log lines, the access log, traces.

* :mod:`~feathergate.observability.logs`: text or JSON lines, written off the
  event loop by a thread of their own; dropped (and counted), never waited for.
* :mod:`~feathergate.observability.access`: one line per request when it ends.
* :mod:`~feathergate.observability.tracing`: OpenTelemetry spans, imported only
  when tracing is on (``pip install feathergate[otel]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from feathergate.config import Config

if TYPE_CHECKING:
    from feathergate.observability.tracing import Tracing

__all__ = ["start_tracing", "tracing_wanted"]

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_wanted(config: Config, environ: Mapping[str, str]) -> bool:
    """``callbacks: ["otel"]`` or an OTLP endpoint set; the SDK's off switches win."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return config.observability.otel or any(environ.get(name) for name in _ENDPOINTS)


def start_tracing(config: Config) -> Tracing | None:
    if not tracing_wanted(config, os.environ):
        return None
    try:
        from feathergate.observability.tracing import Tracing
    except ImportError as exc:
        log.error(
            "tracing was asked for, but OpenTelemetry is not installed (%s): "
            "pip install 'feathergate[otel]'; serving without traces",
            exc,
        )
        return None
    return Tracing.from_environment()
