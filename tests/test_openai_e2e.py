"""End to end: the official openai SDK -> FeatherGate (Hypercorn) -> a fake OpenAI server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import gateway_config, run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support.sdk import SDK

UPSTREAM_KEY = "sk-upstream-secret"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


def config_for(upstream: str, **extra: Any) -> Any:
    models = [
        {
            "model_name": "my-gpt",
            "litellm_params": {
                "model": "openai/gpt-real",
                "api_base": f"{upstream}/v1",
                "api_key": "os.environ/UPSTREAM_KEY",
            },
        }
    ]
    from feathergate.config import parse_config

    raw = {"model_list": models, "feathergate_settings": {"shutdown_grace_period": 1}, **extra}
    return parse_config(raw, {"UPSTREAM_KEY": UPSTREAM_KEY})


@pytest.fixture
async def setup(
    openai_upstream: tuple[FakeOpenAI, str],
) -> AsyncIterator[tuple[FakeOpenAI, SDK, str]]:
    fake, upstream = openai_upstream
    async with run_gateway(config_for(upstream)) as base:
        client = SDK(base)
        yield fake, client, base
        client.close()


async def test_non_streaming_maps_alias_both_ways(setup: Any) -> None:
    fake, client, _ = setup
    result = await client.create(model="my-gpt", messages=MESSAGES, temperature=0.3, seed=7)
    assert result.model == "my-gpt"
    assert result.choices[0].message.content == "Hello there, friend"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.total_tokens == 13
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-real"
    assert sent.body["temperature"] == 0.3
    assert sent.body["seed"] == 7
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_streaming_chunks_keep_the_contract(setup: Any) -> None:
    _, client, _ = setup
    chunks = await client.stream(model="my-gpt", messages=MESSAGES)
    assert {c.model for c in chunks} == {"my-gpt"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there, friend"
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)


async def test_stream_include_usage_ends_with_usage_chunk(setup: Any) -> None:
    _, client, _ = setup
    chunks = await client.stream(
        model="my-gpt", messages=MESSAGES, stream_options={"include_usage": True}
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 13


async def test_raw_stream_ends_with_done(setup: Any) -> None:
    _, _, base = setup
    async with httpx.AsyncClient() as http:
        body = {"model": "my-gpt", "messages": MESSAGES, "stream": True}
        async with http.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = b"".join([part async for part in response.aiter_raw()])
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert all(e.startswith(b"data: ") for e in events)


async def test_streamed_tool_calls_pass_through(setup: Any) -> None:
    fake, client, _ = setup
    fake.script(Reply(text="", tool_calls=[("get_weather", '{"city": "Paris"}')]))
    calls: dict[int, str] = {}
    for chunk in await client.stream(model="my-gpt", messages=MESSAGES):
        for delta in chunk.choices[0].delta.tool_calls or []:
            calls[delta.index] = calls.get(delta.index, "") + (delta.function.arguments or "")
    assert json.loads(calls[0]) == {"city": "Paris"}


async def test_models_and_health(setup: Any) -> None:
    _, client, base = setup
    assert await client.models() == ["my-gpt"]
    async with httpx.AsyncClient() as http:
        for path in ("/health", "/health/liveliness", "/health/readiness"):
            assert (await http.get(base + path)).status_code == 200
        assert (await http.get(f"{base}/models")).json()["data"][0]["id"] == "my-gpt"
        missing = await http.get(f"{base}/v1/models/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"


async def test_metrics_count_requests_by_model_and_status(setup: Any) -> None:
    _, client, base = setup
    await client.create(model="my-gpt", messages=MESSAGES)
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    assert 'feathergate_requests_total{model="my-gpt",status="200"}' in text
    assert "feathergate_request_duration_seconds_bucket" in text
    assert UPSTREAM_KEY not in text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "my-gpt"}', 400, "messages"),
        (b'{"model": "my-gpt", "messages": [], "stream": "yes"}', 400, "messages"),
        (b'{"model": "my-gpt", "messages": [{"role": "user"}], "stream": "yes"}', 400, "stream"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
async def test_bad_requests_get_openai_errors(
    setup: Any, body: bytes, status: int, param: str | None
) -> None:
    _, _, base = setup
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{base}/v1/chat/completions", content=body)
        assert response.status_code == status
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == param
        if status == 404:
            assert error["code"] == "model_not_found"
        # the server keeps serving
        ok = await http.post(
            f"{base}/v1/chat/completions", json={"model": "my-gpt", "messages": MESSAGES}
        )
        assert ok.status_code == 200


async def test_sdk_raises_on_unknown_model(setup: Any) -> None:
    _, client, _ = setup
    with pytest.raises(openai.NotFoundError):
        await client.create(model="nope", messages=MESSAGES)


@pytest.mark.parametrize(
    ("reply", "status", "exception"),
    [
        (
            Reply(
                status=400,
                error={
                    "error": {
                        "message": "bad field",
                        "type": "invalid_request_error",
                        "param": "temperature",
                        "code": None,
                    }
                },
            ),
            400,
            openai.BadRequestError,
        ),
        (Reply(status=429, headers={"retry-after": "7"}), 429, openai.RateLimitError),
        (
            Reply(status=503, error={"object": "error", "message": "vllm overloaded", "code": 503}),
            503,
            openai.InternalServerError,
        ),
        (Reply(status=500, error=b"plain text failure"), 500, openai.InternalServerError),
    ],
)
async def test_upstream_errors_keep_status_with_normalised_body(
    setup: Any, reply: Reply, status: int, exception: type[Exception]
) -> None:
    fake, client, _base = setup
    fake.script(reply)
    with pytest.raises(exception) as info:
        await client.create(model="my-gpt", messages=MESSAGES)
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.status_code == status
    body = info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"
    if status == 503:
        assert body["error"]["message"] == "vllm overloaded"


async def test_upstream_error_before_stream_keeps_status(setup: Any) -> None:
    fake, client, _ = setup
    fake.script(Reply(status=429))
    with pytest.raises(openai.RateLimitError):
        await client.stream(model="my-gpt", messages=MESSAGES)


async def test_error_inside_stream_becomes_sdk_error(setup: Any) -> None:
    fake, client, _ = setup
    fake.script(
        Reply(
            error_event={
                "error": {
                    "message": "model crashed",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )
    )
    with pytest.raises(openai.APIError, match="model crashed"):
        await client.stream(model="my-gpt", messages=MESSAGES)


async def test_truncated_stream_ends_with_error_event(setup: Any) -> None:
    fake, client, _ = setup
    head = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-real",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}
        ],
    }
    fake.script(Reply(raw=[b"data: " + json.dumps(head).encode() + b"\n\n"]))
    with pytest.raises(openai.APIError, match="ended before it was complete"):
        await client.stream(model="my-gpt", messages=MESSAGES)


async def test_unreachable_upstream_is_502_and_server_keeps_serving() -> None:
    import trio

    with trio.socket.socket() as sock:  # a port nothing listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = gateway_config(
        [
            {
                "model_name": "down",
                "litellm_params": {
                    "model": "openai/x",
                    "api_base": f"http://127.0.0.1:{port}/v1",
                    "api_key": "sk-x",
                },
            },
            {
                "model_name": "demo",
                "litellm_params": {"model": "openai/demo", "mock_response": "still here"},
            },
        ]
    )
    async with run_gateway(config) as base:
        client = SDK(base)
        with pytest.raises(openai.APIStatusError) as info:
            await client.create(model="down", messages=MESSAGES)
        assert info.value.status_code == 502
        result = await client.create(model="demo", messages=MESSAGES)
        assert result.choices[0].message.content == "still here"
        client.close()


async def test_body_over_limit_is_413(openai_upstream: tuple[FakeOpenAI, str]) -> None:
    _, upstream = openai_upstream
    config = config_for(upstream, general_settings={"max_request_size_mb": 0.001})
    async with run_gateway(config) as base, httpx.AsyncClient() as http:
        big = {"model": "my-gpt", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await http.post(f"{base}/v1/chat/completions", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "invalid_request_error"
        small = await http.post(
            f"{base}/v1/chat/completions", json={"model": "my-gpt", "messages": MESSAGES}
        )
        assert small.status_code == 200


async def test_master_key_guards_v1_but_not_health(openai_upstream: tuple[FakeOpenAI, str]) -> None:
    _, upstream = openai_upstream
    config = config_for(upstream, general_settings={"master_key": "sk-gateway-master"})
    async with run_gateway(config) as base:
        bad = SDK(base, api_key="wrong")
        with pytest.raises(openai.AuthenticationError):
            await bad.create(model="my-gpt", messages=MESSAGES)
        with pytest.raises(openai.AuthenticationError):
            await bad.models()
        good = SDK(base, api_key="sk-gateway-master")
        result = await good.create(model="my-gpt", messages=MESSAGES)
        assert result.model == "my-gpt"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/health")).status_code == 200
            unauth = await http.post(f"{base}/chat/completions", json={})
            assert unauth.status_code == 401
            assert unauth.json()["error"]["type"] == "authentication_error"
        bad.close()
        good.close()


async def test_missing_key_variable_is_named_in_the_error() -> None:
    config = gateway_config(
        [
            {
                "model_name": "needs-key",
                "litellm_params": {"model": "openai/x", "api_key": "os.environ/NOT_SET_ANYWHERE"},
            },
        ]
    )
    async with run_gateway(config) as base, httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/v1/chat/completions", json={"model": "needs-key", "messages": MESSAGES}
        )
        assert response.status_code == 500
        assert "NOT_SET_ANYWHERE" in response.json()["error"]["message"]
        assert response.headers["x-should-retry"] == "false"


async def test_mock_response_streams_without_upstream() -> None:
    config = gateway_config(
        [
            {
                "model_name": "demo",
                "litellm_params": {"model": "anthropic/claude-x", "mock_response": "one two three"},
            },
        ]
    )
    async with run_gateway(config) as base:
        client = SDK(base)
        chunks = await client.stream(model="demo", messages=MESSAGES)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "one two three"
        client.close()


async def test_api_keys_never_reach_logs_or_errors(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake, client, _base = setup
    caplog.set_level("DEBUG")
    fake.script(
        Reply(
            status=401,
            error={"error": {"message": "denied", "type": "x", "param": None, "code": None}},
        )
    )
    with pytest.raises(openai.AuthenticationError) as info:
        await client.create(model="my-gpt", messages=MESSAGES)
    assert UPSTREAM_KEY not in info.value.response.text
    await client.create(model="my-gpt", messages=MESSAGES, stream=True)
    assert UPSTREAM_KEY not in caplog.text


async def test_wrong_method_on_the_chat_route_is_a_405(setup: Any) -> None:
    _, _, base = setup
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/v1/chat/completions")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
