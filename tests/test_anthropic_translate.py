"""The Anthropic provider's pure translators (PROTOCOLS.md §4), and its strict fake.

Every request translated here is also run through the fake's rules, so
"translates" means "the real API would accept it" as far as the fake knows.
The last tests prove the rules themselves and the fake over real HTTP.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feathergate.config import Deployment, Secret
from feathergate.errors import (
    InvalidRequest,
    UnsupportedParameter,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from feathergate.providers.anthropic import AnthropicProvider
from feathergate.providers.anthropic.adapter import messages_url
from feathergate.providers.anthropic.request import (
    DEFAULT_MAX_TOKENS,
    JSON_TOOL_NAME,
    sanitize_tool_id,
    translate_request,
)
from feathergate.providers.anthropic.response import map_anthropic_error, translate_message
from feathergate.providers.base import CallContext, Chunk
from feathergate.sse import SSEDecoder
from tests.fakes.anthropic import (
    ErrorReply,
    FakeAnthropic,
    Reply,
    Text,
    Thinking,
    ToolUse,
    Usage,
    encode_events,
    message_json,
    stream_events,
)
from tests.fakes.anthropic_rules import Rejected, validate
from tests.support.servers import serve_asgi

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
PROVIDER = AnthropicProvider()
USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def deployment(**fields: Any) -> Deployment:
    base: dict[str, Any] = dict(
        model_name="claude",
        provider="anthropic",
        adapter="anthropic",
        model="claude-real",
        api_base=None,
        api_key=Secret("sk-test"),
        id="dep-1",
    )
    return Deployment(**{**base, **fields})


def context(
    *, stream: bool = False, include_usage: bool = False, json_mode: bool = False, **fields: Any
) -> CallContext:
    return CallContext(
        alias="my-claude",
        deployment=deployment(**fields),
        stream=stream,
        include_usage=include_usage,
        completion_id="chatcmpl-test",
        created=1735689600,
        json_mode=json_mode,
    )


def translate(messages: list[Any] | None = None, **params: Any) -> dict[str, Any]:
    """Translate, and insist the strict fake would accept the result."""
    drop = params.pop("drop_params", False)
    info = params.pop("model_info", {})
    body = {"model": "claude", "messages": messages or [USER], **params}
    request = dict(
        translate_request(body, deployment(drop_params=drop, model_info=info), stream=False)
    )
    validate({"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}, request, "sk-test")
    return request


def call(id_: str, name: str = "get_weather", arguments: str = "{}") -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- requests: messages (rules 1-8) ------------------------------------------------------


def test_system_and_developer_are_hoisted_in_order() -> None:
    out = translate(
        [
            {"role": "system", "content": "Be terse."},
            USER,
            {"role": "assistant", "content": "Hello."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Again"},
        ]
    )
    assert out["system"] == [
        {"type": "text", "text": "Be terse."},
        {"type": "text", "text": "Use French."},
    ]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


def test_consecutive_same_role_merge_and_empty_text_is_dropped() -> None:
    out = translate(
        [
            USER,
            {"role": "user", "content": [{"type": "text", "text": "  "}]},
            {"role": "user", "content": "there"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "?"},
        ]
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi"},
                {"type": "text", "text": "there"},
                {"type": "text", "text": "?"},
            ],
        }
    ]


def test_assistant_text_then_tool_uses_and_results_first_in_one_user_turn() -> None:
    out = translate(
        [
            USER,
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    call("call_1", arguments='{"city": "Paris"}'),
                    call("call_2", arguments=""),
                    call("call_3", arguments="{not json"),
                ],
            },
            {"role": "tool", "tool_call_id": "call_2", "content": "12C"},
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "18C"}],
            },
            {"role": "user", "content": "And?"},
            {"role": "tool", "tool_call_id": "call_3", "content": ""},
        ],
        tools=[WEATHER],
    )
    assistant, results = out["messages"][1:]
    assert [b["type"] for b in assistant["content"]] == ["text", "tool_use", "tool_use", "tool_use"]
    assert [b["input"] for b in assistant["content"][1:]] == [{"city": "Paris"}, {}, {}]
    assert [b["type"] for b in results["content"]] == ["tool_result"] * 3 + ["text"]
    assert results["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_2",
        "content": "12C",
    }
    assert results["content"][1]["content"] == [{"type": "text", "text": "18C"}]
    assert "content" not in results["content"][2]


def test_leading_assistant_system_only_and_prefill() -> None:
    out = translate(
        [
            {"role": "assistant", "content": "Hello"},
            USER,
            {"role": "assistant", "content": "The answer is "},
        ]
    )
    assert out["messages"][0] == {"role": "user", "content": [{"type": "text", "text": "."}]}
    assert out["messages"][-1]["content"] == [{"type": "text", "text": "The answer is"}]
    assert translate([{"role": "system", "content": "x"}])["messages"][0]["role"] == "user"


def test_images_and_pdf() -> None:
    parts = [
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}},
    ]
    blocks = translate([{"role": "user", "content": parts}])["messages"][0]["content"]
    assert blocks == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        },
    ]
    for bad in (
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}},
        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
        {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ):
        with pytest.raises(InvalidRequest):
            translate([{"role": "user", "content": [bad]}])


def test_tool_ids_are_sanitised_consistently_and_stay_distinct() -> None:
    ids = ["call.1", "call_1", "call__thought__a+b/c=", "toolu_01AbC-9"]
    out = translate(
        [
            USER,
            {"role": "assistant", "tool_calls": [call(i) for i in ids]},
            *({"role": "tool", "tool_call_id": i, "content": "ok"} for i in ids),
        ],
        tools=[WEATHER],
    )
    uses = [b["id"] for b in out["messages"][1]["content"]]
    assert uses == [b["tool_use_id"] for b in out["messages"][2]["content"]]
    assert len(set(uses)) == 4
    assert uses[3] == "toolu_01AbC-9"
    assert uses[1] == "call_1"
    assert sanitize_tool_id("") != sanitize_tool_id("_")


def test_history_with_tools_but_none_declared_gets_an_uncallable_placeholder() -> None:
    out = translate(
        [
            USER,
            {"role": "assistant", "tool_calls": [call("c1")]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
    )
    assert out["tool_choice"] == {"type": "none"}
    assert len(out["tools"]) == 1


def test_echoed_thinking_blocks_come_first() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    out = translate(
        [
            USER,
            {
                "role": "assistant",
                "content": "x",
                "tool_calls": [call("c1")],
                "thinking_blocks": [thinking],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        tools=[WEATHER],
        reasoning_effort="low",
    )
    assert out["messages"][1]["content"][0] == thinking
    assert out["thinking"]["budget_tokens"] == 1024


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Awkward but valid OpenAI histories: blank text, odd ids, results out of order."""
    texts = st.sampled_from(["", " ", "\n", "hi", "trailing "])
    messages: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 7))):
        role = draw(st.sampled_from(["system", "developer", "user", "assistant", "calls"]))
        if role != "calls":
            messages.append(
                {
                    "role": role,
                    "content": draw(
                        texts
                        | st.lists(
                            st.builds(lambda t: {"type": "text", "text": t}, texts), max_size=2
                        )
                    ),
                }
            )
            continue
        ids = [
            f"{draw(st.sampled_from(['call_', 'call.', 'a+b=', '']))}{turn}-{k}"
            for k in range(draw(st.integers(1, 3)))
        ]
        arguments = st.sampled_from(["", "{}", '{"a": 1}', "not json"])
        messages.append(
            {
                "role": "assistant",
                "content": draw(st.none() | texts),
                "tool_calls": [call(i, "f", draw(arguments)) for i in ids],
            }
        )
        messages += [
            {"role": "tool", "tool_call_id": i, "content": draw(texts)}
            for i in draw(st.permutations(ids))
        ]
    return messages


@settings(max_examples=100, deadline=None, database=None)
@given(
    conversations(),
    st.booleans(),
    st.sampled_from([None, "low", "high"]),
    st.sampled_from([None, {"type": "json_object"}]),
)
def test_any_conversation_translates_to_a_request_anthropic_accepts(
    messages: list[dict[str, Any]], declare: bool, effort: str | None, response_format: Any
) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}] if declare else None
    translate(messages, tools=tools, reasoning_effort=effort, response_format=response_format)


# -- requests: parameters (§4.1 table) -------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [WEATHER]}},
            {"type": "any"},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    out = translate(
        tools=[WEATHER, {"type": "function", "function": {"name": "other"}}], tool_choice=choice
    )
    assert out["tool_choice"] == expected
    schemas = {t["name"]: t["input_schema"] for t in out["tools"]}
    if isinstance(choice, dict) and choice["type"] == "allowed_tools":
        assert list(schemas) == ["get_weather"]
    else:
        assert schemas["other"] == {"type": "object", "properties": {}}  # no parameters given


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false(choice: Any, expected: dict[str, Any]) -> None:
    assert (
        translate(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=False)["tool_choice"]
        == expected
    )


@pytest.mark.parametrize(
    ("response_format", "schema"),
    [
        (
            {"type": "json_object"},
            {"type": "object", "properties": {}, "additionalProperties": True},
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "p",
                    "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                },
            },
            {"type": "object", "properties": {"a": {"type": "integer"}}},
        ),
    ],
)
def test_response_format_forces_the_json_tool(response_format: Any, schema: Any) -> None:
    out = translate(response_format=response_format)
    assert out["tools"][-1]["name"] == JSON_TOOL_NAME
    assert out["tools"][-1]["input_schema"] == schema
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    with_tools = translate(response_format=response_format, tools=[WEATHER])
    assert with_tools["tool_choice"] == {"type": "any"}
    assert len(with_tools["tools"]) == 2
    assert translate(response_format={"type": "text"}).get("tools") is None
    with pytest.raises(InvalidRequest):
        translate(tools=[{"type": "function", "function": {"name": JSON_TOOL_NAME}}])


def test_stop_sequences() -> None:
    assert translate(stop="END")["stop_sequences"] == ["END"]
    assert translate(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    with pytest.raises(InvalidRequest):
        translate(stop=["\n", "END"])
    assert translate(stop=["\n", "END"], drop_params=True)["stop_sequences"] == ["END"]


@pytest.mark.parametrize(("given", "sent"), [(1.7, 1.0), (0.3, 0.3), (-1, 0.0), (2, 1.0)])
def test_temperature_is_clamped(given: float, sent: float) -> None:
    assert translate(temperature=given, top_p=0.9)["temperature"] == sent


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {
                "max_completion_tokens": 100,
                "max_tokens": 50,
                "model_info": {"max_output_tokens": 9},
            },
            100,
        ),
        ({"max_tokens": 50, "model_info": {"max_output_tokens": 9}}, 50),
        ({"model_info": {"max_output_tokens": 64000}}, 64000),
        ({}, DEFAULT_MAX_TOKENS),
        ({"reasoning_effort": "high", "max_tokens": 1000}, 5096),
        ({"reasoning_effort": "medium"}, DEFAULT_MAX_TOKENS),
    ],
)
def test_max_tokens_precedence(params: dict[str, Any], expected: int) -> None:
    assert translate(**params)["max_tokens"] == expected


def test_reasoning_effort() -> None:
    for effort, budget in (("low", 1024), ("medium", 2048), ("high", 4096)):
        out = translate(reasoning_effort=effort, temperature=0.2, top_k=5)
        assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert "temperature" not in out
        assert "top_k" not in out
    assert "thinking" not in translate(reasoning_effort="none")
    with pytest.raises(InvalidRequest):
        translate(reasoning_effort="extreme")
    with pytest.raises(InvalidRequest):
        translate(reasoning_effort="low", tools=[WEATHER], tool_choice="required")
    history = [
        USER,
        {"role": "assistant", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    assert "thinking" not in translate(history, tools=[WEATHER], reasoning_effort="high")


def test_n_user_and_ignored_fields() -> None:
    with pytest.raises(InvalidRequest) as info:
        translate(n=2)
    assert info.value.param == "n"
    assert info.value.http_status == 400
    out = translate(n=1, user="u-42", store=True, stream_options={"include_usage": True})
    assert out["metadata"] == {"user_id": "u-42"}
    assert "metadata" not in translate(user="ada@example.com")
    assert "metadata" not in translate(user="+1 415 555 0100")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("seed", 7),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 1),
        ("logit_bias", {"1": 2}),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("functions", [{"name": "f"}]),
        ("made_up", 1),
    ],
)
def test_unsupported_parameters(param: str, value: Any) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        translate(**{param: value})
    assert info.value.param == param
    assert param not in translate(**{param: value}, drop_params=True)


def test_noop_defaults_pass_without_drop_params() -> None:
    translate(seed=None, presence_penalty=0, frequency_penalty=0.0, logprobs=False, logit_bias={})


def test_build_request_url_headers_and_stream_flag() -> None:
    ctx = context(
        stream=True,
        api_base="http://127.0.0.1:9/",
        extra_headers=(("anthropic-beta", "x-1"), ("Anthropic-Version", "2099-01-01")),
    )
    request = PROVIDER.build_request({"model": "claude", "messages": [USER]}, ctx)
    assert request.url == "http://127.0.0.1:9/v1/messages"
    assert dict(request.headers) == {
        "content-type": "application/json",
        "anthropic-version": "2099-01-01",
        "x-api-key": "sk-test",
        "anthropic-beta": "x-1",
    }
    body = json.loads(request.content)
    assert body["stream"] is True
    assert body["model"] == "claude-real"
    assert messages_url(None) == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://proxy/v1") == "https://proxy/v1/messages"


# -- responses and errors (§4.3, §4.4, §4.7) ---------------------------------------------


def fixture_completion(name: str) -> dict[str, Any]:
    return PROVIDER.parse_response((FIXTURES / f"{name}.json").read_bytes(), context())


def test_parse_text_with_cached_usage() -> None:
    out = fixture_completion("text")
    assert out["model"] == "my-claude"
    assert out["id"] == "chatcmpl-test"
    choice = out["choices"][0]
    assert choice["message"]["content"].startswith("Bonjour")
    assert choice["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 21 + 1804
    assert out["usage"]["completion_tokens"] == 17
    assert out["usage"]["total_tokens"] == 1842
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 1804


def test_parse_tool_calls_thinking_and_json_mode() -> None:
    tools = fixture_completion("tool_use")["choices"][0]
    assert tools["finish_reason"] == "tool_calls"
    assert tools["message"]["content"] == "I'll look up both cities."
    calls = tools["message"]["tool_calls"]
    assert [c["id"] for c in calls] == [
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "toolu_01VwKfrJzWnWhuJ1iDP6dqZm",
    ]
    assert json.loads(calls[1]["function"]["arguments"]) == {"city": "London", "unit": "celsius"}
    thinking = fixture_completion("thinking")
    assert thinking["choices"][0]["message"]["reasoning_content"].endswith("= 12231.")
    assert thinking["usage"]["prompt_tokens"] == 58 + 1290
    json_mode = fixture_completion("json_mode")["choices"][0]
    assert json_mode["finish_reason"] == "stop"
    assert "tool_calls" not in json_mode["message"]
    assert json.loads(json_mode["message"]["content"])["born"] == 1815


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
        ("brand_new", "stop"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    blocks = [ToolUse("get_weather", {"a": 1})] if stop_reason == "tool_use" else [Text("x")]
    message = message_json(Reply(blocks, stop_reason=stop_reason or "end_turn"))
    message["stop_reason"] = stop_reason
    assert translate_message(message, context())["choices"][0]["finish_reason"] == finish


def test_malformed_response_is_a_protocol_error() -> None:
    for body in (b"<html>", b"[]", b'{"type": "message", "content": [{"type": "tool_use"}]}'):
        with pytest.raises(UpstreamProtocolError):
            PROVIDER.parse_response(body, context())


@pytest.mark.parametrize(
    ("status", "kind", "client", "expected_type"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error"),
        (413, "request_too_large", 400, "invalid_request_error"),
        (401, "authentication_error", 401, "authentication_error"),
        (402, "billing_error", 403, "permission_error"),
        (403, "permission_error", 403, "permission_error"),
        (404, "not_found_error", 404, "not_found_error"),
        (429, "rate_limit_error", 429, "rate_limit_error"),
        (500, "api_error", 500, "api_error"),
        (504, "timeout_error", 504, "api_error"),
        (529, "overloaded_error", 529, "overloaded_error"),
    ],
)
def test_error_mapping(status: int, kind: str, client: int, expected_type: str) -> None:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": f"m{status}"}})
    err = PROVIDER.map_error(status, {"Retry-After": "7"}, body.encode())
    assert (err.http_status, err.error_type, err.message) == (client, expected_type, f"m{status}")
    assert err.retryable == (status >= 429)
    assert err.retry_after == "7"


def test_error_mapping_survives_any_body() -> None:
    assert map_anthropic_error(502, {}, b"<html>Bad gateway</html>").message.startswith("<html>")
    assert map_anthropic_error(500, {}, b"").message == "anthropic answered HTTP 500"
    overloaded = map_anthropic_error(529, {}, (FIXTURES / "overloaded.json").read_bytes())
    assert overloaded.retryable
    assert overloaded.error_code == "overloaded_error"


# -- streams (§1.3, §4.5) ----------------------------------------------------------------


def replay(
    data: bytes, cuts: list[int], *, include_usage: bool = False, json_mode: bool = False
) -> list[Chunk]:
    decoder = SSEDecoder()
    ctx = context(stream=True, include_usage=include_usage, json_mode=json_mode)
    translator = PROVIDER.stream_translator(ctx)
    chunks: list[Chunk] = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        for event in decoder.feed(data[start:end]):
            chunks.extend(translator.feed(event))
    for event in decoder.finish():
        chunks.extend(translator.feed(event))
    return chunks + translator.finish()


def assert_contract(chunks: list[Chunk], include_usage: bool) -> None:
    assert {(c["id"], c["created"], c["model"]) for c in chunks} == {
        ("chatcmpl-test", 1735689600, "my-claude")
    }
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1
    assert finishes[0]["choices"][0]["delta"] == {}
    usage = [c for c in chunks if not c["choices"]]
    assert len(usage) == int(include_usage)
    assert all(c["usage"] is None for c in chunks[:-1])
    if include_usage:
        assert chunks[-1] is usage[0]
        assert chunks[-2] is finishes[0]
    seen: list[int] = []
    for chunk in chunks:
        for call in (chunk["choices"] or [{}])[0].get("delta", {}).get("tool_calls", []):
            if call["index"] not in seen:
                assert call["index"] == len(seen)  # dense, in order of first appearance
                assert call["id"]
                assert call["type"] == "function"
                assert call["function"]["arguments"] == ""
                assert call["function"]["name"]
                seen.append(call["index"])
            else:
                assert set(call) == {"index", "function"}


def reassemble(chunks: list[Chunk]) -> dict[str, Any]:
    text, reasoning = "", ""
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = None, None
    for chunk in chunks:
        usage = chunk["usage"] or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            finish = choice["finish_reason"] or finish
            for call in delta.get("tool_calls", []):
                entry = calls.setdefault(call["index"], {"id": call.get("id"), "args": ""})
                entry["name"] = call["function"].get("name", entry.get("name"))
                entry["args"] += call["function"]["arguments"]
    tools = [(c["id"], c["name"], json.loads(c["args"])) for _, c in sorted(calls.items())]
    return {
        "content": text,
        "reasoning": reasoning,
        "tools": tools,
        "finish": finish,
        "usage": usage,
    }


def summarise(completion: dict[str, Any]) -> dict[str, Any]:
    message, choice = completion["choices"][0]["message"], completion["choices"][0]
    return {
        "content": message["content"] or "",
        "reasoning": message.get("reasoning_content", ""),
        "tools": [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in message.get("tool_calls", [])
        ],
        "finish": choice["finish_reason"],
        "usage": completion["usage"],
    }


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking", "json_mode"])
def test_fixture_replay_at_every_byte_boundary(name: str) -> None:
    data = (FIXTURES / f"{name}.sse").read_bytes()
    expected = replay(data, [], include_usage=True)
    assert_contract(expected, include_usage=True)
    assert_contract(replay(data, []), include_usage=False)
    assert reassemble(expected) == summarise(fixture_completion(name))
    assert replay(data, list(range(1, len(data))), include_usage=True) == expected
    for cut in range(1, len(data)):
        assert replay(data, [cut], include_usage=True) == expected


def test_stream_tool_indexes_are_dense_and_not_block_indexes() -> None:
    chunks = replay((FIXTURES / "tool_use.sse").read_bytes(), [])
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert [c["index"] for c in calls if "id" in c] == [0, 1]  # Anthropic's blocks were 1, 2


def test_tool_call_without_arguments_gets_empty_object() -> None:
    reply = Reply([ToolUse("get_time", {}), Text("done")], stop_reason="tool_use")
    chunks = replay(encode_events(stream_events(reply)), [])
    assert reassemble(chunks)["tools"] == [("toolu_fake_0", "get_time", {})]


def test_error_event_raises_at_every_boundary() -> None:
    data = (FIXTURES / "error.sse").read_bytes()
    for cuts in ([], *([c] for c in range(1, len(data)))):
        with pytest.raises(UpstreamStatusError) as info:
            replay(data, cuts)
        assert (info.value.http_status, info.value.error_type) == (529, "overloaded_error")
        assert info.value.retryable
        assert info.value.message == "Overloaded"


def test_stream_cut_before_message_stop_is_a_protocol_error() -> None:
    data = (FIXTURES / "text.sse").read_bytes()
    for end in range(data.index(b"event: message_stop")):
        with pytest.raises(UpstreamProtocolError):
            replay(data[:end], [])


def test_pings_unknown_events_and_blocks_are_ignored() -> None:
    events = stream_events(Reply([Text("hi")]))
    extra: list[tuple[str, dict[str, Any]]] = [
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "server_tool_use", "id": "x"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "citations_delta", "citation": {}},
            },
        ),
        ("brand_new_event", {"type": "brand_new_event"}),
    ]
    chunks = replay(encode_events(events[:-2] + extra + events[-2:]), [])
    assert reassemble(chunks)["content"] == "hi"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
blocks = st.one_of(
    st.builds(Text, st.text(max_size=30), chunk=st.integers(1, 9)),
    st.builds(Thinking, st.text(min_size=1, max_size=30), chunk=st.integers(1, 9)),
    st.builds(
        ToolUse,
        st.sampled_from(["get_weather", "lookup", JSON_TOOL_NAME]),
        st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        fragments=st.integers(1, 5),
    ),
)
replies = st.builds(
    Reply,
    st.lists(blocks, max_size=5),
    stop_reason=st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"]),
    usage=st.builds(
        Usage,
        st.integers(0, 10**6),
        st.integers(0, 10**5),
        st.integers(0, 10**5),
        st.integers(0, 10**5),
    ),
)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(reply=replies, data=st.data())
def test_streamed_reassembly_equals_the_non_streamed_parse(reply: Reply, data: Any) -> None:
    raw = encode_events(stream_events(reply))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=20))))
    # The JSON tool is declared only for response_format, which is JSON mode.
    called = any(isinstance(b, ToolUse) and b.name == JSON_TOOL_NAME for b in reply.blocks)
    json_mode = called or data.draw(st.booleans())
    chunks = replay(raw, cuts, include_usage=True, json_mode=json_mode)
    assert_contract(chunks, include_usage=True)
    parsed = translate_message(message_json(reply), context(json_mode=json_mode))
    assert reassemble(chunks) == summarise(parsed)


# -- JSON mode: the content is the response_format tool's JSON alone (issue #15, part 5) --

LOOKUP = [
    Thinking("The user wants Paris as JSON; I will call the tool."),
    Text("I'll look that up."),
    ToolUse(JSON_TOOL_NAME, {"city": "Paris", "population": 2102650}),
]


@pytest.mark.parametrize(
    "blocks",
    [
        LOOKUP,
        [*LOOKUP, Text(" Done.")],  # text after the call, too
        [*LOOKUP, ToolUse(JSON_TOOL_NAME, {"city": "Lyon"})],  # a second call: the first wins
    ],
)
def test_json_mode_content_is_the_tools_json_alone(blocks: list[Any]) -> None:
    reply = Reply(blocks)
    completion = translate_message(message_json(reply), context(json_mode=True))
    message = completion["choices"][0]["message"]
    assert json.loads(message["content"]) == {"city": "Paris", "population": 2102650}
    assert message["reasoning_content"].startswith("The user wants Paris")
    assert completion["choices"][0]["finish_reason"] == "stop"
    raw = encode_events(stream_events(reply))
    expected = replay(raw, [], include_usage=True, json_mode=True)
    assert_contract(expected, include_usage=True)
    assert reassemble(expected) == summarise(completion)
    for cut in range(1, len(raw), 7):
        assert replay(raw, [cut], include_usage=True, json_mode=True) == expected


def test_json_mode_streams_reasoning_at_once_and_holds_text_until_the_turn_ends() -> None:
    """A turn that never calls the tool: its text is the answer, sent just before the finish."""
    reply = Reply([Thinking("No tool needed."), Text("Paris, about two million people.")])
    chunks = replay(encode_events(stream_events(reply)), [], json_mode=True)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "reasoning_content" in deltas[1]
    assert deltas[-2:] == [{"content": "Paris, about two million people."}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    completion = translate_message(message_json(reply), context(json_mode=True))
    assert completion["choices"][0]["message"]["content"] == "Paris, about two million people."
    # Outside JSON mode the same text streams as it comes.
    plain = replay(encode_events(stream_events(reply)), [])
    assert sum("content" in c["choices"][0]["delta"] for c in plain) > 2


def test_json_mode_keeps_real_tool_calls_and_their_text() -> None:
    """With the client's own tools the model may call one of them instead: text and call kept."""
    reply = Reply([Thinking("Weather first."), Text("Checking."), ToolUse("get_weather", {})])
    completion = translate_message(message_json(reply), context(json_mode=True))
    message = completion["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    chunks = replay(encode_events(stream_events(reply)), [], include_usage=True, json_mode=True)
    assert_contract(chunks, include_usage=True)
    assert reassemble(chunks) == summarise(completion)


# -- the fake: its rules, then over real HTTP -------------------------------------------

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}


def body_with(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 16, "messages": list(messages) or [USER], **fields}


ASKED = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
}
ANSWER = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
TOOLS = [{"name": "f", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"anthropic-version": "2023-06-01"}, body_with(), 401, "x-api-key header is required"),
        ({**HEADERS, "x-api-key": "sk-wrong"}, body_with(), 401, "invalid x-api-key"),
        ({"x-api-key": "sk-test"}, body_with(), 400, "anthropic-version"),
        (HEADERS, {"model": "m", "messages": [USER]}, 400, "max_tokens: Field required"),
        (HEADERS, body_with({"role": "system", "content": "x"}, USER), 400, "role"),
        (HEADERS, body_with(USER, {"role": "tool", "content": "x"}), 400, "role"),
        (
            HEADERS,
            body_with({"role": "user", "content": [{"type": "text", "text": ""}]}),
            400,
            "must be non-empty",
        ),
        (HEADERS, body_with({"role": "user", "content": " \n"}), 400, "non-whitespace"),
        (HEADERS, body_with({"role": "user", "content": []}), 400, "non-empty content"),
        (HEADERS, body_with(temperature=1.5), 400, "temperature"),
        (
            HEADERS,
            body_with(
                USER,
                ASKED,
                {"role": "user", "content": [ANSWER, {**ANSWER, "tool_use_id": "t2"}]},
                tools=TOOLS,
            ),
            400,
            "unexpected `tool_use_id`",
        ),
        (
            HEADERS,
            body_with(
                USER,
                ASKED,
                {"role": "user", "content": [{"type": "text", "text": "x"}, ANSWER]},
                tools=TOOLS,
            ),
            400,
            "must come first",
        ),
        (HEADERS, body_with(USER, ASKED, USER, tools=TOOLS), 400, "without `tool_result`"),
        (HEADERS, body_with({"role": "assistant", "content": "x"}, USER), 400, "first message"),
        (
            HEADERS,
            body_with(
                USER,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "call.1", "name": "f", "input": {}}],
                },
                tools=TOOLS,
            ),
            400,
            "should match pattern",
        ),
        (
            HEADERS,
            body_with(tools=[{"name": "f", "input_schema": {"type": "array"}}]),
            400,
            "input_schema.type",
        ),
        (HEADERS, body_with(stop_sequences=["END", " "]), 400, "stop_sequences"),
        (HEADERS, body_with(n=1), 400, "n: Extra inputs are not permitted"),
    ],
)
def test_fake_rejects(
    headers: dict[str, str], body: dict[str, Any], status: int, says: str
) -> None:
    with pytest.raises(Rejected, match=re.escape(says)) as info:
        validate(headers, body, "sk-test")
    assert info.value.status == status


def test_fake_accepts_what_anthropic_accepts() -> None:
    validate(HEADERS, body_with(temperature=0.5, top_p=0.9), "sk-test")
    validate(
        HEADERS,
        body_with(
            USER,
            USER,
            ASKED,
            {"role": "user", "content": [ANSWER]},
            {"role": "user", "content": "more"},
            tools=TOOLS,
        ),
        "sk-test",
    )


# -- the fake, proven over real HTTP ------------------------------------------------------


async def test_fake_rejects_what_anthropic_rejects_and_answers_the_rest() -> None:
    fake = FakeAnthropic()
    fake.script(
        Reply([Text("Hello there")]),
        Reply([ToolUse("get_weather", {"city": "Paris"})]),
        ErrorReply(529, "overloaded_error", "Overloaded", retry_after="3"),
    )
    headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
    valid = {
        "model": "claude-real",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    async with serve_asgi(fake) as base, httpx.AsyncClient(base_url=base) as client:
        missing = {k: v for k, v in valid.items() if k != "max_tokens"}
        refused = await client.post("/v1/messages", json=missing, headers=headers)
        assert refused.status_code == 400
        assert refused.json()["error"] == {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required",
        }
        assert (await client.post("/v1/messages", json=valid)).status_code == 401
        answer = await client.post("/v1/messages", json=valid, headers=headers)
        assert answer.json()["content"] == [{"type": "text", "text": "Hello there"}]
        ctx = context(stream=True, api_base=base)
        request = PROVIDER.build_request({"model": "claude", "messages": [USER]}, ctx)
        async with client.stream(
            "POST", request.url, headers=request.headers, content=request.content
        ) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            raw = b"".join([part async for part in streamed.aiter_bytes()])
        overloaded = await client.post("/v1/messages", json=valid, headers=headers)
    chunks = replay(raw, [])
    assert_contract(chunks, include_usage=False)
    assert reassemble(chunks)["tools"][0][1:] == ("get_weather", {"city": "Paris"})
    assert (overloaded.status_code, overloaded.headers["retry-after"]) == (529, "3")
    assert [r.status for r in fake.requests] == [400, 401, 200, 200, 529]
    assert fake.requests[3].body["stream"] is True
    assert not fake.replies
