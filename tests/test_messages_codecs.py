"""The Messages door's codecs and operations on what upstreams and clients get wrong.

Pure calls: malformed requests (each a 400 naming the field), upstream bodies
that are not what they should be (each an :class:`UpstreamProtocolError`,
which the relay turns into a 502 or an error event), and the corners of the
answer translation and the local estimate.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from feathergate.config import Deployment
from feathergate.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from feathergate.ingress.anthropic.request import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from feathergate.ingress.anthropic.to_chat import to_chat
from feathergate.ingress.anthropic.to_message import to_message, tool_input
from feathergate.ingress.anthropic.tokens import IMAGE_TOKENS, estimate_tokens
from feathergate.operations.local import LOCAL, LocalCountTokens
from feathergate.providers.anthropic.passthrough import (
    CountTokensPassthrough,
    MessagesPassthrough,
    PassthroughPipe,
)
from feathergate.providers.base import CallContext
from feathergate.providers.gemini.count_tokens import GeminiCountTokens
from tests.conftest import gateway_config

USER: list[Any] = [{"role": "user", "content": "Hi"}]


def _deployment(model: str, **params: Any) -> Deployment:
    params = {"model": model, "api_base": "http://127.0.0.1:9", "api_key": "k", **params}
    return gateway_config([{"model_name": "m", "litellm_params": params}]).deployments[0]


def _ctx(model: str, **params: Any) -> CallContext:
    return CallContext("m", _deployment(model, **params), False, True, "chatcmpl-t", 1)


def _request(body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    return ANTHROPIC_MESSAGES.parse(json.dumps(body).encode(), headers or [], b"", 100_000)


# -- what the ingress refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
        (b'{"messages": []}', "model"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": ["hi"]}', "messages.0"),
    ],
)
def test_the_ingress_refuses_what_no_upstream_could_take(raw: bytes, param: str | None) -> None:
    for codec in (ANTHROPIC_MESSAGES, ANTHROPIC_COUNT_TOKENS):
        with pytest.raises(InvalidRequest) as info:
            codec.parse(raw, [], b"", 100_000)
        assert info.value.param == param


def test_the_ingress_keeps_the_headers_the_passthrough_needs() -> None:
    headers = [
        (b"anthropic-beta", b"a-1"),
        (b"anthropic-beta", b"b-2"),
        (b"anthropic-version", b"v"),
    ]
    raw = json.dumps({"model": "m", "messages": USER}).encode()
    request = ANTHROPIC_COUNT_TOKENS.parse(raw, headers, b"x=1&beta=true", 100_000)
    assert (request.betas, request.version, request.beta_query, request.stream) == (
        "a-1,b-2",
        "v",
        True,
        False,
    )


# -- Messages -> Chat: the corners ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"messages": [{"role": "user", "content": [{"no": "type"}]}]}, "messages.0.content.0"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "messages.0.content.0.tool_use_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}],
                    }
                ]
            },
            "messages.0.content.0.content",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}
                ]
            },
            "messages.0.content.0.name",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "document", "source": {"type": "url"}}]}
                ]
            },
            "messages.0.content.0.source",
        ),
        ({"tools": {}}, "tools"),
        ({"tools": [5]}, "tools.0"),
        ({"tools": [{"input_schema": {}}]}, "tools.0.name"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        (
            {"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "maybe"}},
            "tool_choice.type",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": "lots"}}, "thinking.budget_tokens"),
    ],
)
def test_what_to_chat_refuses(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_chat({"model": "m", "messages": USER, **body}, "openai", stream=False)
    assert info.value.param == param


def test_the_quieter_corners_of_to_chat() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Later rule"}]},
            {"role": "system", "content": ""},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "is_error": True,
                        "content": [
                            {
                                "type": "search_result",
                                "content": [{"type": "text", "text": "found"}],
                            },
                            "ignored: not a block",
                        ],
                    },
                    {"type": "document", "source": {"type": "content", "content": "inline"}},
                    {
                        "type": "document",
                        "source": {"type": "content", "content": [{"type": "text", "text": "b"}]},
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/gif", "data": "R0"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "x", "signature": "s"}],
            },
            {"role": "assistant", "content": "Prefilled"},
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "none", "disable_parallel_tool_use": True},
        "metadata": {"user_id": ""},
        "thinking": {"type": "disabled"},
        "max_tokens": 0,
    }
    chat = to_chat(body, "openai", stream=False).body
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "tool", "user", "assistant"]  # empty turns are dropped
    assert chat["messages"][1]["content"] == "Error: found"
    assert [p["type"] for p in chat["messages"][2]["content"]] == ["text", "text", "image_url"]
    assert chat["tool_choice"] == "none"
    assert "parallel_tool_calls" not in chat  # meaningless with none
    for absent in ("user", "reasoning_effort", "max_tokens"):
        assert absent not in chat
    empty = to_chat(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": True}],
                }
            ],
        },
        "gemini",
        stream=False,
    ).body
    assert empty["messages"][0]["content"] == "Error"


# -- Chat -> Messages: the corners ------------------------------------------------------------


def test_tool_input_takes_what_it_can() -> None:
    assert tool_input({"a": 1}) == {"a": 1}
    assert tool_input('{"a": 1}') == {"a": 1}
    assert tool_input("[1]") == {}
    assert tool_input("{not json") == {}
    assert tool_input("") == {}


def test_to_message_with_refusals_list_content_and_missing_ids() -> None:
    completion = {
        "choices": [
            {
                "message": {
                    "content": [{"type": "text", "text": "Hello"}, {"type": "refusal"}],
                    "tool_calls": [
                        {"function": {"name": "f", "arguments": "{}"}},
                        {"id": "x", "type": "function"},
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    message = to_message(completion, message_id="msg_1", alias="m", names={}, stops=())
    assert [b["type"] for b in message["content"]] == ["text", "tool_use"]
    assert message["content"][1]["id"].startswith("toolu_")  # synthesised, deterministic
    refused = {
        "choices": [{"message": {"content": None, "refusal": "I can't."}, "finish_reason": "stop"}]
    }
    message = to_message(refused, message_id="msg_2", alias="m", names={}, stops=())
    assert message["content"] == [{"type": "text", "text": "I can't."}]
    assert message["stop_reason"] == "refusal"
    nothing = to_message({}, message_id="msg_3", alias="m", names={}, stops=())
    assert (nothing["content"], nothing["stop_reason"]) == ([], "end_turn")
    called = {"choices": [{"message": {"content": "ok"}, "finish_reason": "tool_calls"}]}
    assert (
        to_message(called, message_id="m", alias="m", names={}, stops=())["stop_reason"]
        == "end_turn"
    )


# -- the local estimate -----------------------------------------------------------------------


def test_every_kind_of_block_counts() -> None:
    blocks: list[Any] = [
        {"type": "thinking", "thinking": "t" * 30},
        {"type": "redacted_thinking", "data": "r" * 30},
        {"type": "tool_use", "name": "f", "input": {"k": "v" * 30}},
        {"type": "search_result", "content": [{"type": "text", "text": "s" * 30}]},
        {"type": "document", "source": {"type": "base64", "data": "A" * 400}},
        {"type": "document", "source": {"type": "text", "data": "d" * 30}},
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": "c" * 30}]},
        },
        {"type": "server_tool_use", "id": "x", "name": "web_search", "input": {"q": "q" * 30}},
        {"type": "image", "source": {}},
        "not a block",
    ]
    each = [estimate_tokens({"messages": [{"role": "user", "content": [b]}]}) for b in blocks]
    assert all(n > 10 for n in each[:8]), each
    assert each[8] >= IMAGE_TOKENS
    assert estimate_tokens({"messages": "nonsense", "tools": "nonsense"}) == 1


async def test_the_local_count_answers_without_an_upstream() -> None:
    request = _request({"model": "m", "max_tokens": 5, "messages": USER, "system": "S" * 300})
    operation = LocalCountTokens()
    upstream = operation.build_request(request, _ctx("openai/x"))
    response = await LOCAL.send("POST", upstream.url, [], upstream.content, connect_timeout=None)
    body = await response.read()
    assert json.loads(body)["input_tokens"] >= 100
    assert operation.parse_response(body, request, _ctx("openai/x")).payload == body
    with pytest.raises(InvalidRequest):
        operation.stream(request, _ctx("openai/x"))
    assert isinstance(operation.map_error(500, {}, b"x"), UpstreamStatusError)
    LOCAL.close()


# -- the passthrough and Gemini's count on bad answers ----------------------------------------


def test_passthrough_headers_merge_betas_and_let_the_deployment_override() -> None:
    extra = {"anthropic-beta": "b-2, a-1", "anthropic-version": "2099-01-01", "x-team": "t"}
    ctx = _ctx("anthropic/claude-up", extra_headers=extra)
    request = _request(
        {"model": "m", "max_tokens": 5, "messages": USER},
        [(b"anthropic-beta", b"a-1"), (b"anthropic-version", b"2023-06-01")],
    )
    headers = dict(MessagesPassthrough().build_request(request, ctx).headers)
    assert headers["anthropic-beta"] == "a-1,b-2"
    assert headers["anthropic-version"] == "2099-01-01"
    assert headers["x-team"] == "t"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"event: message_start\ndata: {nope\n\n", UpstreamProtocolError),
        (b"event: content_block_delta\ndata: {nope\n\n", None),  # deltas are not parsed
        (b"event: ping\ndata: [1]\n\n", None),
        (b"data: [1]\n\n", UpstreamProtocolError),
        (b'event: error\ndata: {"type": "error", "error": "bad"}\n\n', UpstreamStatusError),
    ],
)
def test_the_passthrough_pipe_on_odd_events(data: bytes, error: type[Exception] | None) -> None:
    pipe = PassthroughPipe("m")
    if error is None:
        assert pipe.feed(data) == data  # relayed as it came: it is not the pipe's to judge
        return
    with pytest.raises(error):
        pipe.feed(data)


def test_an_event_without_its_name_is_named_from_its_type() -> None:
    pipe = PassthroughPipe("m")
    out = pipe.feed(b'data: {"type": "message_stop"}\n\n')
    assert out == b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    assert pipe.finish() == b""


@pytest.mark.parametrize("body", [b"not json", b"[1]"])
def test_passthrough_answers_that_are_not_objects(body: bytes) -> None:
    request = _request({"model": "m", "max_tokens": 5, "messages": USER})
    ctx = _ctx("anthropic/claude-up")
    for operation in (MessagesPassthrough(), CountTokensPassthrough()):
        with pytest.raises(UpstreamProtocolError):
            operation.parse_response(body, request, ctx)
    with pytest.raises(InvalidRequest):
        CountTokensPassthrough().stream(request, ctx)


def test_passthrough_errors_keep_the_status_whatever_the_body() -> None:
    err = MessagesPassthrough().map_error(529, {"Retry-After": "3"}, b"<html>busy</html>")
    assert (err.http_status, err.message, err.retry_after) == (529, "<html>busy</html>", "3")
    err = MessagesPassthrough().map_error(413, {}, b"")
    assert (err.http_status, err.message) == (413, "anthropic answered HTTP 413")


def test_gemini_count_tokens_on_bad_answers() -> None:
    request = _request({"model": "m", "max_tokens": 5, "messages": USER})
    ctx = _ctx("gemini/gemini-2.5-flash", extra_headers={"x-goog-user-project": "p"})
    operation = GeminiCountTokens()
    upstream = operation.build_request(request, ctx)
    assert dict(upstream.headers)["x-goog-user-project"] == "p"
    assert upstream.url.endswith("/v1beta/models/gemini-2.5-flash:countTokens")
    for body in (b"nope", b'{"cachedContentTokenCount": 3}'):
        with pytest.raises(UpstreamProtocolError):
            operation.parse_response(body, request, ctx)
    with pytest.raises(InvalidRequest):
        operation.stream(request, ctx)
    err = operation.map_error(429, {}, b'{"error": {"code": 429, "message": "slow"}}')
    assert err.http_status == 429


def test_the_ingress_bounds_nesting_and_message_count() -> None:
    deep = b'{"model": "m", "max_tokens": 1, "messages": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    many = json.dumps({"model": "m", "max_tokens": 1, "messages": USER * 3}).encode()
    for codec in (ANTHROPIC_MESSAGES, ANTHROPIC_COUNT_TOKENS):
        with pytest.raises(InvalidRequest, match="nested"):
            codec.parse(deep, [], b"", 100_000)
        with pytest.raises(InvalidRequest, match="at most 2") as info:
            codec.parse(many, [], b"", 2)
        assert info.value.param == "messages"
