"""OpenTelemetry: spans in the SDK's in-memory exporter, and OTLP/HTTP to a local receiver."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from feathergate.app import create_app
from feathergate.config import Config, parse_config
from feathergate.observability import tracing_wanted
from feathergate.observability.tracing import Tracing
from tests.conftest import run_gateway
from tests.fakes.asgi import FakeServer, Receive, Scope, Send, read_body
from tests.fakes.openai import FakeOpenAI, Reply
from tests.fakes.tcp_upstream import Behaviour, Mode, tcp_upstream
from tests.support.cli import gateway_process
from tests.support.rawclient import RawClient, read_sse_until
from tests.support.servers import serve_asgi

UPSTREAM_KEY = "sk-upstream-secret-0004"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PROMPT = "the secret prompt text"
BODY: dict[str, Any] = {"model": "my-gpt", "messages": [{"role": "user", "content": PROMPT}]}


def config_for(upstream: str, **litellm: Any) -> Config:
    def model(name: str) -> dict[str, Any]:
        params = {"model": "openai/gpt-real", "api_base": f"{upstream}/v1", "api_key": UPSTREAM_KEY}
        return {"model_name": name, "litellm_params": params}

    raw = {
        "model_list": [model("my-gpt"), model("backup")],
        "router_settings": {"fallbacks": [{"my-gpt": ["backup"]}]},
        "litellm_settings": litellm,
        "feathergate_settings": {"shutdown_grace_period": 1},
    }
    return parse_config(raw, {})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(UPSTREAM_KEY)
    async with serve_asgi(fake) as url:
        yield fake, url


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_span_per_request_and_one_per_attempt(upstream: tuple[FakeOpenAI, str]) -> None:
    fake, url = upstream
    fake.script(Reply(status=500, error={"message": "down", "type": "server_error"}))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = config_for(url)
    app = create_app(config, Tracing(provider))
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    async with run_gateway(config, app) as base, httpx.AsyncClient(base_url=base) as http:
        sent = {"traceparent": traceparent, "x-request-id": "traced-1"}
        response = await http.post("/v1/chat/completions", json=BODY, headers=sent)
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.kind == SpanKind.SERVER]
    attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time)
    assert len(attempts) == 2

    # The client's trace continues: same trace id, the client's span as parent.
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None
    assert format(request.parent.span_id, "016x") == PARENT_ID
    assert request.name == "chat my-gpt"
    attrs = _attrs(request)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "my-gpt"
    assert attrs["gen_ai.response.model"] == "gpt-real"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (9, 4)
    assert attrs["feathergate.request_id"] == "traced-1"
    assert attrs["feathergate.fallbacks"] == 1
    assert "error.type" not in attrs

    first, second = attempts
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == request.context.span_id
        assert attempt.name == "chat gpt-real"
        assert _attrs(attempt)["gen_ai.provider.name"] == "openai"
    assert _attrs(first)["error.type"] == "500"
    assert first.status.status_code == StatusCode.ERROR
    assert _attrs(first)["http.response.status_code"] == 500
    assert "error.type" not in _attrs(second)
    assert _attrs(second)["gen_ai.usage.output_tokens"] == 4

    # Each upstream request carried its own attempt's span as the parent.
    sent_parents = [r.headers["traceparent"] for r in fake.requests[-2:]]
    assert sent_parents == [
        f"00-{TRACE_ID}-{format(a.context.span_id, '016x')}-01" for a in attempts
    ]
    assert all(PROMPT not in str(_attrs(s)) for s in spans)


async def test_an_error_is_on_the_request_span(upstream: tuple[FakeOpenAI, str]) -> None:
    fake, url = upstream
    bad = Reply(status=400, error={"message": "bad", "type": "invalid_request_error"})
    fake.script(bad)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = config_for(url)
    app = create_app(config, Tracing(provider))
    async with run_gateway(config, app) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 400
    [request] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert _attrs(request)["error.type"] == "invalid_request_error"
    assert request.status.status_code == StatusCode.ERROR
    assert "gen_ai.response.model" not in _attrs(request)


def test_what_turns_tracing_on() -> None:
    plain = config_for("http://127.0.0.1:9")
    otel = config_for("http://127.0.0.1:9", callbacks=["otel"])
    assert not tracing_wanted(plain, {})
    assert tracing_wanted(otel, {})
    assert tracing_wanted(plain, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing_wanted(otel, {"OTEL_SDK_DISABLED": "true"})
    assert not tracing_wanted(otel, {"OTEL_TRACES_EXPORTER": "none"})


class Receiver(FakeServer):
    """A tiny OTLP/HTTP collector: POST /v1/traces, protobuf, recorded."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self.received = trio.Event()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        assert scope["path"] == "/v1/traces"
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.exports.append(export)
        self.received.set()
        headers = [(b"content-type", b"application/x-protobuf")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def test_spans_reach_an_otlp_http_receiver(
    upstream: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    _, url = upstream
    receiver = Receiver()
    raw = {
        "model_list": [
            {
                "model_name": "my-gpt",
                "litellm_params": {
                    "model": "openai/gpt-real",
                    "api_base": f"{url}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "litellm_settings": {"callbacks": ["otel"]},
        "feathergate_settings": {"shutdown_grace_period": 1},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    async with serve_asgi(receiver) as collector:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "gateway-under-test",
        }
        async with gateway_process("--config", str(config), env=env) as gateway:
            async with httpx.AsyncClient(base_url=gateway.url) as http:
                response = await http.post("/v1/chat/completions", json=BODY)
                assert response.status_code == 200
            with trio.fail_after(30):
                await receiver.received.wait()
            gateway.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                await gateway.read_log()
                await gateway.process.wait()
    spans = [
        (resource, span)
        for export in receiver.exports
        for resource in export.resource_spans
        for scoped in resource.scope_spans
        for span in scoped.spans
    ]
    names = {span.name for _, span in spans}
    assert {"chat my-gpt", "chat gpt-real"} <= names
    services = {
        attr.value.string_value
        for resource, _ in spans
        for attr in resource.resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"gateway-under-test"}


async def test_an_attempt_whose_client_stalls_ends_as_cancelled() -> None:
    # The pump, not the disconnect watcher, sees this client go: its attempt
    # span must say so as a cancelled attempt does, not end as a success.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with tcp_upstream() as up:
        up.behaviour = Behaviour(Mode.FLOOD, event_size=16_384)
        settings = {"client_stall_timeout": 0.3, "tcp_user_timeout": 0}
        config = stall_config(up.url, settings)
        app = create_app(config, Tracing(provider))
        async with run_gateway(config, app) as base:
            port = int(base.rsplit(":", 1)[1])
            client = await RawClient.post(port, {**BODY, "stream": True}, rcvbuf=4096)
            with trio.fail_after(5):
                await read_sse_until(client, 1)
            with trio.fail_after(10):
                await app.runtime.drain.wait_empty()
            await client.stream.aclose()
    [attempt] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert _attrs(attempt)["error.type"] == "cancelled"
    assert attempt.status.status_code == StatusCode.ERROR


def stall_config(api_base: str, settings: dict[str, Any]) -> Config:
    params = {"model": "openai/up", "api_base": api_base, "api_key": UPSTREAM_KEY}
    raw = {
        "model_list": [{"model_name": "my-gpt", "litellm_params": params}],
        "feathergate_settings": {"shutdown_grace_period": 1, **settings},
    }
    return parse_config(raw, {})
