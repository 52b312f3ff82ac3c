"""``POST /v1/completions`` end to end: the official openai SDK -> FeatherGate -> a strict fake.

The legacy Completions API is a passthrough to OpenAI-compatible upstreams
(vLLM, OpenAI's instruct models): the body byte for byte but for ``model``,
the answer (or each streamed event) with only ``model`` renamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import trio

from feathergate.config import parse_config
from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.fakes.tcp_upstream import Behaviour, Mode, tcp_upstream
from tests.support.rawclient import RawClient, read_sse_until
from tests.support.sdk import SDK
from tests.support.servers import serve_asgi


@dataclass
class Setup:
    openai: FakeOpenAI  # strict: OpenAI's own parameters only
    vllm: FakeOpenAI  # lax: vLLM takes its sampling extras
    sdk: SDK
    base: str


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    strict, lax = FakeOpenAI(), FakeOpenAI(strict=False)
    async with serve_asgi(strict) as openai_url, serve_asgi(lax) as vllm_url:
        key = strict.api_key

        def entry(name: str, model: str, base: str, **params: Any) -> dict[str, Any]:
            litellm = {"model": model, "api_base": base, "api_key": key, **params}
            return {"model_name": name, "litellm_params": litellm}

        models = [
            entry("instruct", "text-completion-openai/gpt-3.5-turbo-instruct", f"{openai_url}/v1"),
            entry("bare-instruct", "gpt-3.5-turbo-instruct", f"{openai_url}/v1"),
            entry("openai-prefix", "openai/gpt-3.5-turbo-instruct", f"{openai_url}/v1"),
            entry("llama", "hosted_vllm/meta-llama/Llama-3.1-8B", f"{vllm_url}/v1"),
            entry("azure-instruct", "azure/instruct-dep", openai_url, api_version="2024-10-21"),
            entry("groq", "groq/llama-3.1-8b-instant", f"{openai_url}/v1"),
            entry("gem", "gemini/gemini-2.5-flash", openai_url),
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-x"}},
            {
                "model_name": "mock",
                "litellm_params": {"model": "openai/x", "mock_response": "a b c"},
            },
        ]
        raw = {"model_list": models, "feathergate_settings": {"shutdown_grace_period": 1}}
        async with run_gateway(parse_config(raw, {"ANTHROPIC_API_KEY": "k"})) as base:
            sdk = SDK(base)
            yield Setup(strict, lax, sdk, base)
            sdk.close()


@pytest.mark.parametrize("alias", ["instruct", "bare-instruct", "openai-prefix"])
async def test_non_streaming_passes_through_with_the_alias(setup: Setup, alias: str) -> None:
    result = await setup.sdk.complete(
        model=alias, prompt=["Say", "hello"], max_tokens=7, logprobs=2, echo=False, seed=3
    )
    assert result.model == alias
    assert result.object == "text_completion"
    assert result.choices[0].text == "Hello there, friend"
    assert result.usage is not None
    assert result.usage.total_tokens == 13
    sent = setup.openai.requests[-1]
    assert sent.path == "/v1/completions"
    assert sent.body == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": ["Say", "hello"],
        "max_tokens": 7,
        "logprobs": 2,
        "echo": False,
        "seed": 3,
    }


async def test_the_body_reaches_the_upstream_byte_for_byte_but_for_model(setup: Setup) -> None:
    body = (
        b'{"model": "llama", "prompt": [[1, 2], [3]], "top_k": 40, "min_p": 0.05,'
        b' "temperature": 1.50, "stop": "\\u00e9"}'
    )
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post("/v1/completions", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "llama"
    assert setup.vllm.requests[-1].raw == body.replace(b'"llama"', b'"meta-llama/Llama-3.1-8B"')


@pytest.mark.parametrize("include_usage", [False, True])
async def test_streaming_relays_each_event_with_the_alias(
    setup: Setup, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = await setup.sdk.complete_stream(model="instruct", prompt="Say", **options)
    assert {c.model for c in chunks} == {"instruct"}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello there, friend"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert [u.total_tokens for u in usage] == ([13] if include_usage else [])
    assert setup.openai.requests[-1].body["stream"] is True


async def test_vllm_extras_pass_through(setup: Setup) -> None:
    chunks = await setup.sdk.complete_stream(
        model="llama", prompt="x", extra_body={"top_k": 5, "repetition_penalty": 1.1}
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    sent = setup.vllm.requests[-1].body
    assert (sent["top_k"], sent["repetition_penalty"]) == (5, 1.1)


async def test_azure_deployment_path(setup: Setup) -> None:
    result = await setup.sdk.complete(model="azure-instruct", prompt="x")
    assert result.model == "azure-instruct"
    sent = setup.openai.requests[-1]
    assert sent.path == "/openai/deployments/instruct-dep/completions"
    assert sent.query == {"api-version": ["2024-10-21"]}


@pytest.mark.parametrize(
    ("alias", "provider"), [("claude", "anthropic"), ("gem", "gemini"), ("groq", "groq")]
)
async def test_a_provider_without_completions_is_a_clear_400(
    setup: Setup, alias: str, provider: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await setup.sdk.complete(model=alias, prompt="x")
    assert f"provider '{provider}'" in caught.value.message
    assert "no legacy completions API" in caught.value.message
    assert setup.openai.requests == []


async def test_upstream_refusal_keeps_its_status_and_message(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await setup.sdk.complete_stream(model="instruct", prompt="x", best_of=3)
    assert "best_of" in caught.value.message


async def test_unknown_model_and_malformed_requests(setup: Setup) -> None:
    with pytest.raises(openai.NotFoundError):
        await setup.sdk.complete(model="nope", prompt="x")
    async with httpx.AsyncClient(base_url=setup.base) as http:
        for body, param in [
            ({"prompt": "x"}, "model"),
            ({"model": "instruct", "prompt": "x", "stream": "yes"}, "stream"),
            (
                {"model": "instruct", "prompt": "x", "stream": True, "stream_options": 1},
                "stream_options",
            ),
        ]:
            response = await http.post("/completions", json=body)
            assert response.status_code == 400
            assert response.json()["error"]["param"] == param
        not_json = await http.post("/v1/completions", content=b"{")
        assert not_json.status_code == 400


async def test_an_error_inside_the_stream_ends_it_with_an_error_event(setup: Setup) -> None:
    event = {"error": {"message": "the model crashed", "type": "server_error", "code": 500}}
    setup.openai.script(Reply(error_event=event))
    with pytest.raises(openai.APIError) as caught:
        await setup.sdk.complete_stream(model="instruct", prompt="x")
    assert "the model crashed" in caught.value.message


async def test_a_stream_cut_short_ends_with_an_error_event(setup: Setup) -> None:
    chunk = (
        b'data: {"id":"c","object":"text_completion","model":"m",'
        b'"choices":[{"text":"a","index":0,"finish_reason":null}]}\n\n'
    )
    setup.openai.script(Reply(raw=[chunk]))
    port = int(setup.base.rsplit(":", 1)[1])
    with trio.fail_after(20):
        client = await RawClient.post(
            port, {"model": "instruct", "prompt": "x", "stream": True}, path="/v1/completions"
        )
        raw = await client.read_until(b"\r\n0\r\n\r\n")  # the chunked body's end
        await client.stream.aclose()
    assert b'"model":"instruct"' in raw
    assert b'"code": "bad_upstream_response"' in raw
    assert not raw.endswith(b"data: [DONE]\n\n")


async def test_a_client_that_leaves_mid_stream_releases_the_upstream() -> None:
    async with tcp_upstream() as upstream:
        upstream.behaviour = Behaviour(Mode.STREAM, events=10_000, interval=0.01)
        entry = {"model": "hosted_vllm/up", "api_base": upstream.url, "api_key": "k"}
        raw = {
            "model_list": [{"model_name": "m", "litellm_params": entry}],
            "feathergate_settings": {"shutdown_grace_period": 1},
        }
        async with run_gateway(parse_config(raw, {})) as base:
            port = int(base.rsplit(":", 1)[1])
            body = {"model": "m", "prompt": "x", "stream": True}
            with trio.fail_after(10):
                client = await RawClient.post(port, body, path="/v1/completions")
                await read_sse_until(client, 3)
                assert b'"model": "m"' in client.received  # the upstream's spacing, kept
                await client.drop(rst=True)
                await upstream.conns[-1].closed.wait()


@pytest.mark.parametrize("stream", [False, True])
async def test_mock_response_answers_locally(setup: Setup, stream: bool) -> None:
    if stream:
        chunks = await setup.sdk.complete_stream(
            model="mock", prompt="x", stream_options={"include_usage": True}
        )
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "a b c"
        assert chunks[-1].usage is not None
    else:
        result = await setup.sdk.complete(model="mock", prompt="x")
        assert (result.model, result.choices[0].text) == ("mock", "a b c")
