"""The Messages door on the router: retries, fallbacks across kinds of upstream, limits, mocks.

One gateway, two front doors: a Messages request fails over and falls back
exactly as a chat request does, and may land on another kind of upstream on
the way (an Anthropic deployment that is overloaded, then an OpenAI one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import pytest

from tests.conftest import gateway_config, run_gateway
from tests.fakes import anthropic as fa
from tests.fakes import openai as fo
from tests.support.messages import AnthropicSDK, check_grammar, frames, raw_post
from tests.support.servers import serve_asgi

USER: list[Any] = [{"role": "user", "content": "Hello"}]


@asynccontextmanager
async def two_upstreams(
    **sections: Any,
) -> AsyncIterator[tuple[fa.FakeAnthropic, fo.FakeOpenAI, AnthropicSDK]]:
    claude = fa.FakeAnthropic(api_key="sk-a")
    gpt = fo.FakeOpenAI("sk-o")
    async with serve_asgi(claude) as a_url, serve_asgi(gpt) as o_url:
        models = [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-up",
                    "api_base": a_url,
                    "api_key": "sk-a",
                },
            },
            {
                "model_name": "gpt",
                "litellm_params": {
                    "model": "openai/gpt-up",
                    "api_base": f"{o_url}/v1",
                    "api_key": "sk-o",
                },
            },
        ]
        async with run_gateway(gateway_config(models, **sections)) as base:
            sdk = AnthropicSDK(base)
            try:
                yield claude, gpt, sdk
            finally:
                sdk.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_overloaded_anthropic_falls_back_to_an_openai_deployment(stream: bool) -> None:
    router = {"fallbacks": [{"claude": ["gpt"]}]}
    async with two_upstreams(router_settings=router) as (claude, gpt, sdk):
        claude.script(fa.overloaded())
        gpt.script(fo.Reply(text="Hello from the fallback"))
        if stream:
            _, message = await sdk.stream(model="claude", messages=USER)
        else:
            message = await sdk.create(model="claude", messages=USER)
        assert message.model == "claude"  # the alias the client asked for
        assert message.content[0].text == "Hello from the fallback"  # type: ignore[union-attr]
        assert [r.status for r in claude.requests] == [529]
        assert len(gpt.requests) == 1


async def test_retries_go_to_the_same_passthrough_until_it_answers() -> None:
    async with two_upstreams(router_settings={"num_retries": 2}) as (claude, _, sdk):
        claude.script(fa.ErrorReply(429, "rate_limit_error", "slow down", retry_after="0"))
        claude.script(fa.Reply([fa.Text("Second time lucky")]))
        message = await sdk.create(model="claude", messages=USER)
        assert message.content[0].text == "Second time lucky"  # type: ignore[union-attr]
        assert [r.status for r in claude.requests] == [429, 200]


async def test_rpm_limits_apply_to_messages() -> None:
    claude = fa.FakeAnthropic(api_key="sk-a")
    async with serve_asgi(claude) as url:
        params = {"model": "anthropic/claude-up", "api_base": url, "api_key": "sk-a", "rpm": 1}
        config = gateway_config([{"model_name": "claude", "litellm_params": params}])
        async with run_gateway(config) as base:
            sdk = AnthropicSDK(base)
            try:
                await sdk.create(model="claude", messages=USER)
                with pytest.raises(anthropic.RateLimitError) as info:
                    await sdk.create(model="claude", messages=USER)
            finally:
                sdk.close()
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in info.value.response.headers


async def test_a_mock_response_deployment_speaks_messages_too() -> None:
    """The shipped ``demo`` model works with Claude Code, count_tokens included."""
    params = {"model": "openai/demo", "mock_response": "Hello from the mock"}
    config = gateway_config([{"model_name": "demo", "litellm_params": params}])
    async with run_gateway(config) as base:
        sdk = AnthropicSDK(base)
        try:
            message = await sdk.create(model="demo", messages=USER)
            assert message.content[0].text == "Hello from the mock"  # type: ignore[union-attr]
            assert await sdk.count(model="demo", messages=USER, system="Be kind.") > 0
        finally:
            sdk.close()
        body = {"model": "demo", "max_tokens": 10, "messages": USER, "stream": True}
        response = await raw_post(base, "/v1/messages", body)
        message_dict = check_grammar(frames(response.content))
        assert message_dict["content"] == [{"type": "text", "text": "Hello from the mock"}]
        assert message_dict["usage"]["output_tokens"] > 0
