"""OpenTelemetry: a span per request, a child per upstream attempt (the ``otel`` extra).

Imported only when tracing is on (:func:`feathergate.observability.start_tracing`):
without ``pip install feathergate[otel]`` nothing here is loaded, and the
relay's only cost is one ``is None`` test per attempt.

Spans follow the GenAI semantic conventions: the request's span (kind
SERVER) is named ``"{gen_ai.operation.name} {alias}"`` and carries
``gen_ai.request.model`` (the alias the client asked for),
``gen_ai.response.model`` (the upstream model that answered) and
``gen_ai.usage.input_tokens`` / ``output_tokens``; each attempt's span (kind
CLIENT) is named after the upstream model and carries the provider, the
upstream's status and ``error.type`` when it failed. The client's W3C
``traceparent`` (any propagator ``OTEL_PROPAGATORS`` names) is the request
span's parent, and each attempt sends its own span's ``traceparent``
upstream. No prompt or completion text is recorded.

Everything else is the SDK's, configured by the standard ``OTEL_*``
variables (endpoint, headers, sampler, resource, ``OTEL_SERVICE_NAME``,
default ``feathergate``). The BatchSpanProcessor exports from its own thread
and drops spans when its queue is full: a request never waits for a collector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import trio
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from feathergate.config import Deployment
from feathergate.errors import GatewayError, UpstreamStatusError
from feathergate.observability.access import AccessRecord
from feathergate.relay import ClientGone, Exchange
from feathergate.typing import Scope

__all__ = ["Tracing"]

_OPERATIONS = {"chat completions": "chat", "messages": "chat", "count tokens": "count_tokens"}
# LiteLLM's provider prefixes -> gen_ai.provider.name's well-known values.
_PROVIDERS = {"gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "azure": "azure.ai.openai"}
_CARRIED = (b"traceparent", b"tracestate", b"baggage")
_SHUTDOWN_WAIT = 10.0  # seconds close waits for the last batch to export


@dataclass(slots=True)
class _Trace:
    span: Span
    operation: str
    attempt: Span | None = None
    upstream_model: str | None = None


class Tracing:
    """The request and attempt spans; the relay sees it as its AttemptObserver."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("feathergate")

    @classmethod
    def from_environment(cls) -> Tracing:
        """The SDK as the ``OTEL_*`` variables configure it, exporting OTLP/HTTP by default."""
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "feathergate"}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(_exporter()))
        return cls(provider)

    def request_started(self, scope: Scope, endpoint: str) -> _Trace:
        carrier = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _CARRIED
        }
        parent = propagate.extract(carrier) if carrier else None
        operation = _OPERATIONS.get(endpoint, endpoint.replace(" ", "_"))
        span = self.tracer.start_span(
            operation,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": operation,
                "http.request.method": scope["method"],
                "url.path": scope["path"],
            },
        )
        return _Trace(span, operation)

    def request_ended(self, trace: _Trace, record: AccessRecord) -> None:
        span = trace.span
        if record.model is not None:
            span.update_name(f"{trace.operation} {record.model}")
        attributes: dict[str, Any] = {
            "http.response.status_code": record.status,
            "feathergate.request_id": record.request_id,
            "feathergate.end": record.end,
            "feathergate.retries": record.retries,
            "feathergate.fallbacks": record.fallbacks,
        }
        optional = {
            "gen_ai.request.model": record.model,
            "gen_ai.response.model": trace.upstream_model if record.status < 400 else None,
            "gen_ai.usage.input_tokens": record.tokens_in,
            "gen_ai.usage.output_tokens": record.tokens_out,
            "feathergate.deployment_id": record.deployment,
            "feathergate.ttft": record.ttft,
            "client.address": record.client,
        }
        attributes.update((k, v) for k, v in optional.items() if v is not None)
        if record.error is not None or record.end != "completed":
            attributes["error.type"] = record.error or record.end
        span.set_attributes(attributes)
        if record.status >= 500 or record.error is not None:
            span.set_status(Status(StatusCode.ERROR, record.error or record.end))
        span.end()

    # -- the relay's AttemptObserver ------------------------------------------------------
    def attempt_started(self, ex: Exchange, dep: Deployment) -> None:
        trace: _Trace = ex.trace
        provider = _PROVIDERS.get(dep.provider, dep.provider)
        span = self.tracer.start_span(
            f"{trace.operation} {dep.model}",
            context=set_span_in_context(trace.span),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": trace.operation,
                "gen_ai.request.model": dep.model,
                "gen_ai.provider.name": provider,
                "gen_ai.system": provider,  # the attribute's name before semconv 1.37
                "feathergate.deployment_id": dep.id,
            },
        )
        trace.attempt = span
        trace.upstream_model = dep.model
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=set_span_in_context(span))
        ex.traceparent = carrier.get("traceparent")

    def attempt_ended(self, ex: Exchange, dep: Deployment, error: BaseException | None) -> None:
        trace: _Trace = ex.trace
        span = trace.attempt
        if span is None:
            return
        trace.attempt = None
        attributes: dict[str, Any] = {}
        if ex.upstream_status is not None:
            attributes["http.response.status_code"] = ex.upstream_status
        if ex.tokens is not None:
            attributes["gen_ai.response.model"] = dep.model
            attributes["gen_ai.usage.input_tokens"] = ex.tokens.input
            attributes["gen_ai.usage.output_tokens"] = ex.tokens.output
        if error is not None:
            kind = _error_type(error)
            attributes["error.type"] = kind
            span.set_status(Status(StatusCode.ERROR, kind))
        span.set_attributes(attributes)
        span.end()

    async def aclose(self) -> None:
        """Export what is left, from a thread, for a bounded time."""
        with trio.move_on_after(_SHUTDOWN_WAIT):
            await trio.to_thread.run_sync(self.provider.shutdown, abandon_on_cancel=True)


def _error_type(error: BaseException) -> str:
    if isinstance(error, UpstreamStatusError):
        return str(error.http_status)
    if isinstance(error, GatewayError):
        return error.error_code or error.error_type
    if isinstance(error, trio.Cancelled | ClientGone):
        return "cancelled"  # the client left or stalled, or shutdown ended the relay
    return type(error).__qualname__


def _exporter() -> SpanExporter:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
