"""``/v1/messages`` to an Anthropic upstream is lossless; the front door's own rules.

Fidelity is checked on the bytes: the fake records the body exactly as it
arrived, and the client reads the stream raw. Then what the gateway itself
answers on this door (its key, its 404/405/400s) in Anthropic's envelope, and
a request shaped like Claude Code's (INGRESS.md appendix) through every
kind of upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest

from feathergate.errors import GatewayError
from feathergate.providers.anthropic import passthrough as passthrough_module
from tests.conftest import gateway_config, run_gateway
from tests.fakes import anthropic as fa
from tests.fakes.openai import FakeOpenAI
from tests.support.messages import AnthropicSDK, check_grammar, frames, raw_post
from tests.support.providers import Case, provider_gateway
from tests.support.servers import serve_asgi

USER: list[Any] = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def passthrough() -> AsyncIterator[Case]:
    async with provider_gateway("anthropic") as case:
        yield case


# A body as a client may write it: odd spacing, escapes, number spellings, a
# signed thinking block, cache_control, a beta-only field, a deferred tool.
RAW_BODY = (
    '{ "max_tokens" : 1024,\n  "model":"m", "stream" : STREAM,\n'
    '  "system": [{"type": "text", "text": "You are Claude Code, Anthropic\\u0027s CLI",'
    ' "cache_control": {"type": "ephemeral", "ttl": "1h"}}],\n'
    '  "messages": [{"role": "user", "content": [{"type": "text", "text": "caf\\u00e9 \u2603",'
    ' "cache_control": {"type": "ephemeral"}}]},\n'
    '   {"role": "assistant", "content": [{"type": "thinking", "thinking": "Hm.",'
    f' "signature": "{fa.SIGNATURE}"}}, {{"type": "text", "text": "Hi."}}]}},\n'
    '   {"role": "user", "content": "Again"}],\n'
    '  "temperature": 1.0E0, "top_k": 40,\n'
    '  "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},\n'
    '  "tools": [{"name": "Read", "input_schema": {"type": "object"}},'
    ' {"name": "Deferred", "input_schema": {"type": "object"}, "defer_loading": true}],\n'
    '  "metadata": {"user_id": "{\\"session_id\\": \\"abc\\"}"} }'
)
BETAS = "context-management-2025-06-27,advanced-tool-use-2025-11-20"
CLIENT_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETAS,
    "x-api-key": "the-client-key",
    "authorization": "Bearer the-client-token",
    "x-claude-code-session-id": "s-1",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_the_body_goes_up_byte_for_byte_but_for_model(
    passthrough: Case, stream: bool
) -> None:
    raw = RAW_BODY.replace("STREAM", "true" if stream else "false").encode()
    reply = fa.Reply([fa.Thinking("Let me see."), fa.Text("Hello again.")])
    passthrough.upstream.fake.script(reply)
    response = await raw_post(passthrough.base, "/v1/messages?beta=true", raw, CLIENT_HEADERS)
    assert response.status_code == 200, response.text
    received = passthrough.upstream.fake.requests[-1]
    model = passthrough.upstream.model
    assert received.raw == raw.replace(b'"model":"m"', f'"model":"{model}"'.encode())
    assert received.query == "beta=true"
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.headers["anthropic-beta"] == BETAS
    # the deployment's key, never the client's; the client's other headers stay here
    assert received.headers["x-api-key"] == passthrough.upstream.api_key
    assert "authorization" not in received.headers
    assert "x-claude-code-session-id" not in received.headers
    if not stream:
        expected = fa.message_json(reply, model="m", message_id=response.json()["id"])
        assert response.json() == expected  # only the model differs from the upstream's
        return
    events = frames(response.content)
    message_id = events[0][1]["message"]["id"]
    expected_events = fa.stream_events(reply, model="m", message_id=message_id)
    assert events == [(name, data) for name, data in expected_events]  # pings included
    message = check_grammar(events)
    assert message["content"][0]["signature"] == fa.SIGNATURE


async def test_a_missing_anthropic_version_gets_the_pinned_one(passthrough: Case) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": USER}
    response = await raw_post(passthrough.base, "/v1/messages", body)
    assert response.status_code == 200, response.text
    received = passthrough.upstream.fake.requests[-1]
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in received.headers


async def test_beta_fields_without_their_beta_are_refused_as_anthropic_refuses(
    passthrough: Case,
) -> None:
    raw = RAW_BODY.replace("STREAM", "false").encode()
    headers = {**CLIENT_HEADERS, "anthropic-beta": "advanced-tool-use-2025-11-20"}
    response = await raw_post(passthrough.base, "/v1/messages", raw, headers)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "context_management" in response.json()["error"]["message"]


async def test_an_error_event_from_anthropic_is_relayed_in_its_own_type(
    passthrough: Case,
) -> None:
    reply = fa.Reply([fa.Text("Once upon a time")], error_after=4)
    passthrough.upstream.fake.script(reply)
    body = {"model": "m", "max_tokens": 10, "messages": USER, "stream": True}
    response = await raw_post(passthrough.base, "/v1/messages", body)
    events = frames(response.content)
    check_grammar(events, complete=False)
    assert events[-1] == (
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": response.headers["x-request-id"],
        },
    )


async def test_a_cut_stream_ends_with_an_error_event(passthrough: Case) -> None:
    passthrough.upstream.fake.script(fa.Reply([fa.Text("Once upon a time")], cut_after=4))
    body = {"model": "m", "max_tokens": 10, "messages": USER, "stream": True}
    response = await raw_post(passthrough.base, "/v1/messages", body)
    events = frames(response.content)
    check_grammar(events, complete=False)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"  # a 502: the upstream broke off


async def test_overloaded_before_the_stream_is_a_529(passthrough: Case) -> None:
    passthrough.upstream.fake.script(fa.overloaded())
    sdk = AnthropicSDK(passthrough.base)
    try:
        with pytest.raises(anthropic.InternalServerError) as info:
            await sdk.stream(model="m", messages=USER)
    finally:
        sdk.close()
    assert info.value.status_code == 529
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


# -- the gateway's own answers on this door ----------------------------------------------


@pytest.fixture
async def keyed() -> AsyncIterator[str]:
    fake = FakeOpenAI()
    async with serve_asgi(fake) as url:
        params = {"model": "openai/gpt-real", "api_base": f"{url}/v1", "api_key": fake.api_key}
        config = gateway_config(
            [{"model_name": "m", "litellm_params": params}],
            general_settings={"master_key": "sk-master"},
        )
        async with run_gateway(config) as base:
            yield base


@pytest.mark.parametrize(
    "credentials",
    [{"api_key": "sk-master"}, {"api_key": None, "auth_token": "sk-master"}],
    ids=["x-api-key", "bearer"],
)
async def test_the_master_key_as_x_api_key_or_bearer(
    keyed: str, credentials: dict[str, Any]
) -> None:
    sdk = AnthropicSDK(keyed, **credentials)
    try:
        message = await sdk.create(model="m", messages=USER)
        assert message.content[0].type == "text"
        assert await sdk.count(model="m", messages=USER) > 0
    finally:
        sdk.close()


async def test_a_wrong_key_is_a_401_in_anthropics_envelope(keyed: str) -> None:
    sdk = AnthropicSDK(keyed, api_key="sk-wrong")
    try:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await sdk.create(model="m", messages=USER)
    finally:
        sdk.close()
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "authentication_error"
    # both headers sent, the bearer one right: accepted
    body = {"model": "m", "max_tokens": 5, "messages": USER}
    headers = {"x-api-key": "sk-wrong", "authorization": "Bearer sk-master"}
    assert (await raw_post(keyed, "/v1/messages", body, headers)).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "invalid_request_error"),
        ({"model": "m", "messages": USER}, 400, "invalid_request_error"),  # no max_tokens
        ({"model": "m", "max_tokens": 5, "messages": []}, 400, "invalid_request_error"),
        ({"model": "nope", "max_tokens": 5, "messages": USER}, 404, "not_found_error"),
        (
            {"model": "m", "max_tokens": 5, "messages": USER, "stream": "yes"},
            400,
            "invalid_request_error",
        ),
    ],
    ids=["json", "max_tokens", "messages", "model", "stream"],
)
async def test_bad_requests_in_anthropics_envelope(
    keyed: str, body: Any, status: int, kind: str
) -> None:
    response = await raw_post(keyed, "/v1/messages", body, {"x-api-key": "sk-master"})
    assert response.status_code == status
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == kind


async def test_wrong_method_is_a_405_in_anthropics_envelope(keyed: str) -> None:
    async with httpx.AsyncClient(base_url=keyed) as client:
        response = await client.get("/v1/messages/count_tokens")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- a request shaped like Claude Code's ------------------------------------------------


def _claude_code_body() -> dict[str, Any]:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command"},
            "timeout": {"type": "number", "exclusiveMinimum": 0},
        },
        "required": ["command"],
        "additionalProperties": False,
    }
    tools = [
        {"name": name, "description": f"The {name} tool", "input_schema": schema}
        for name in ("Agent", "Bash", "Edit", "Read", "Write")
    ]
    tools.append(
        {
            "name": "DeferredToolPlaceholder",
            "input_schema": {"type": "object"},
            "defer_loading": True,
        }
    )
    cache = {"type": "ephemeral"}
    user_id = json.dumps({"device_id": "a" * 64, "account_uuid": "", "session_id": "s-1"})
    return {
        "model": "m",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": cache},
            {"type": "text", "text": "Be careful with files.", "cache_control": cache},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {"type": "text", "text": "Say hello", "cache_control": cache},
                ],
            }
        ],
        "tools": tools,
        "metadata": {"user_id": user_id},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_a_claude_code_request_passes_every_strict_upstream(kind: str) -> None:
    async with provider_gateway(kind) as case:
        case.upstream.text("Hello!")
        headers = {"anthropic-beta": f"claude-code-20250219,{BETAS}"}
        response = await raw_post(case.base, "/v1/messages?beta=true", _claude_code_body(), headers)
        assert response.status_code == 200, response.text
        message = check_grammar(frames(response.content))
        assert message["content"] == [{"type": "text", "text": "Hello!"}]
        names = case.upstream.tool_names(case.upstream.last)
        assert names == ["Agent", "Bash", "Edit", "Read", "Write", "DeferredToolPlaceholder"]


async def test_the_model_list_takes_the_key_as_x_api_key_too(keyed: str) -> None:
    """Anthropic's SDKs, and Claude Code's gateway model discovery, send it there."""
    async with httpx.AsyncClient(base_url=keyed) as client:
        assert (
            await client.get("/v1/models", headers={"x-api-key": "sk-master"})
        ).status_code == 200
        assert (await client.get("/v1/models", headers={"x-api-key": "sk-nope"})).status_code == 401
        assert (await client.get("/v1/models")).status_code == 401


@pytest.mark.parametrize(("kind", "status"), [("conflict_error", 409), ("overloaded_error", 529)])
def test_the_passthrough_maps_an_in_stream_error_by_anthropics_one_table(
    kind: str, status: int
) -> None:
    pipe = passthrough_module.PassthroughPipe("alias")
    event = {"type": "error", "error": {"type": kind, "message": "no"}}
    with pytest.raises(GatewayError) as raised:
        pipe.feed(b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n")
    assert raised.value.http_status == status
