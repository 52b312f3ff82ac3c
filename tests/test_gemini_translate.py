"""The Gemini provider's pure translators, and the strict fake that end-to-end tests reuse.

Every translated request is also run through the fake's rules (``check_call``),
so a request the real API would refuse fails here first.
"""

from __future__ import annotations

import base64
import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feathergate.config import Deployment, Secret
from feathergate.errors import (
    InvalidRequest,
    UnsupportedParameter,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from feathergate.providers.base import Asset, CallContext, Chunk, Completion
from feathergate.providers.gemini import GeminiProvider, strip_thought_signature
from feathergate.providers.gemini.request import build_body
from feathergate.providers.gemini.response import finish_reason, map_error, parse_response
from feathergate.providers.gemini.stream import GeminiStreamTranslator
from feathergate.sse import SSEDecoder
from tests.fakes.gemini import FakeGemini, error_reply, merge_chunks, text_reply, tool_reply
from tests.fakes.gemini_rules import Rejection, check_call
from tests.support.servers import serve_asgi

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
PAIRS = ["text", "tools", "thought", "blocked", "safety", "length", "n2"]
USER = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PNG = base64.b64encode(b"\x89PNG fake").decode()


def context(
    *, stream: bool = False, include_usage: bool = False, assets: Any = None, **deployment: Any
) -> CallContext:
    fields = {"model": "gemini-2.5-flash", "api_base": None, **deployment}
    dep = Deployment("g", "gemini", "gemini", api_key=Secret("test-key"), id="g-1", **fields)
    return CallContext("g", dep, stream, include_usage, "chatcmpl-test", 1700000000, assets or {})


def translate(messages: list[Any] | None = None, **params: Any) -> dict[str, Any]:
    ctx_args = {k: params.pop(k) for k in ("assets", "drop_params") if k in params}
    request = dict(
        build_body({"model": "g", "messages": messages or USER, **params}, context(**ctx_args))
    )
    check_call("v1beta", "m", "k", request, api_key="k", models=["m"], signatures=None)
    return request


# -- request: messages (PROTOCOLS.md §4.2 rules 1-5) ------------------------------------------


def test_system_and_developer_messages_are_hoisted_wherever_they_stand() -> None:
    request = translate(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Weather?"}, {"type": "text", "text": ""}],
            },
        ]
    )
    assert request["systemInstruction"] == {
        "parts": [{"text": "Be terse."}, {"text": "Answer in French."}]
    }
    assert request["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}, {"text": "Weather?"}]}
    ]


def test_a_system_only_request_becomes_the_user_turn() -> None:
    request = translate([{"role": "system", "content": "Say hi."}])
    assert request["contents"] == [{"role": "user", "parts": [{"text": "Say hi."}]}]
    assert "systemInstruction" not in request


def test_roles_merge_and_empty_messages_drop() -> None:
    request = translate(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": ""},
            {"role": "assistant", "content": "b"},
            {"role": "assistant", "content": None},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
            {"role": "user", "content": "d"},
        ]
    )
    assert request["contents"] == [
        {"role": "user", "parts": [{"text": "a"}]},
        {"role": "model", "parts": [{"text": "b"}, {"text": "c"}]},
        {"role": "user", "parts": [{"text": "d"}]},
    ]


def tool_turn(*arguments: str, text: str | None = "Checking.") -> dict[str, Any]:
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": f"f{i}", "arguments": a}}
        for i, a in enumerate(arguments)
    ]
    return {"role": "assistant", "content": text, "tool_calls": calls}


def test_assistant_text_then_function_calls_with_parsed_args() -> None:
    request = translate([*USER, tool_turn('{"city": "Paris"}', "", "not json"), *results(3)])
    assert request["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "f0", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "f1", "args": {}}},
            {"functionCall": {"name": "f2", "args": {}}},
        ],
    }


def results(n: int, order: list[int] | None = None) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": f"call_{i}", "content": f"r{i}"} for i in order or range(n)
    ]


def test_tool_results_become_one_content_in_call_order() -> None:
    replies = [
        {"role": "tool", "tool_call_id": "call_2", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 18}'},
        {"role": "system", "content": "Mid-run system text."},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "[1, 2]"}]},
    ]
    messages = [
        *USER,
        tool_turn("{}", "{}", "{}", text=None),
        *replies,
        {"role": "user", "content": "And?"},
    ]
    contents = translate(messages)["contents"]
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "f0", "response": {"temp": 18}}},
            {"functionResponse": {"name": "f1", "response": {"content": "[1, 2]"}}},
            {"functionResponse": {"name": "f2", "response": {"content": "18C"}}},
        ],
    }
    # user text after the results is a content of its own: Gemini counts that content's parts
    assert contents[3] == {"role": "user", "parts": [{"text": "And?"}]}


@pytest.mark.parametrize(
    ("tail", "fragment"),
    [
        (results(1), "tool calls without a tool message: call_1"),
        ([*results(2), *results(1)], "answered twice"),
        ([{"role": "tool", "tool_call_id": "call_9", "content": "x"}], "answers no tool call"),
    ],
)
def test_tool_results_that_cannot_pair_up_are_rejected(tail: list[Any], fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        translate([*USER, tool_turn("{}", "{}"), *tail])


def test_tool_message_without_a_preceding_call_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="must follow an assistant message"):
        translate([*USER, *results(1)])


def test_thought_signatures_ride_in_tool_call_ids() -> None:
    completion = parse_response((FIXTURES / "tools.json").read_bytes(), context())
    message = completion["choices"][0]["message"]
    first, second = (call["id"] for call in message["tool_calls"])
    assert first.endswith(
        "__thought__CiQB0e2Kb8Pmy4Lq0Qk1sRr2Yv3mZr+Yk5f0n3s1dA9pQe4zL3oKXwHR0e2Kb/xk3T0kmqA6f0Yj9o1hQ=="
    )
    assert "__thought__" not in second
    assert strip_thought_signature(first) == first.split("__")[0]
    assert first.startswith("call_")
    answers = [
        {"role": "tool", "tool_call_id": strip_thought_signature(i), "content": "ok"}
        for i in (first, second)
    ]
    parts = translate([*USER, message, *answers])["contents"][1]["parts"]
    assert parts[1]["thoughtSignature"] == first.split("__thought__")[1]
    assert "thoughtSignature" not in parts[2]
    assert all("id" not in p.get("functionCall", {}) for p in parts)


def test_images_are_inlined_from_data_uris_and_downloaded_assets() -> None:
    url = "https://example.com/cat.png"
    content = [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
        },
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PNG}"}},
    ]
    body = {"messages": [{"role": "user", "content": content}] * 2}
    assert GeminiProvider().assets_to_fetch(body) == [url]
    asset = Asset("image/jpeg", b"jpeg bytes")
    parts = translate(body["messages"][:1], assets={url: asset})["contents"][0]["parts"]
    assert [p.get("inlineData", {}).get("mimeType") for p in parts] == [
        None,
        "image/png",
        "image/jpeg",
        "audio/wav",
        "application/pdf",
    ]
    assert parts[2]["inlineData"]["data"] == base64.b64encode(b"jpeg bytes").decode()
    with pytest.raises(InvalidRequest, match="was not downloaded"):
        translate(body["messages"][:1])


# -- request: parameters (PROTOCOLS.md §4.2) ------------------------------------------------


def test_sampling_parameters_map_to_generation_config() -> None:
    config = translate(
        temperature=0.2,
        top_p=0.9,
        max_tokens=10,
        max_completion_tokens=99,
        stop="END",
        n=2,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0,
        logprobs=True,
        top_logprobs=3,
        reasoning_effort="medium",
        user="u-42",
        stream=True,
        stream_options={"include_usage": True},
    )["generationConfig"]
    assert config == {
        "temperature": 0.2,
        "topP": 0.9,
        "candidateCount": 2,
        "seed": 7,
        "maxOutputTokens": 99,
        "stopSequences": ["END"],
        "presencePenalty": 0.5,
        "responseLogprobs": True,
        "logprobs": 3,
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
    }
    assert translate(max_tokens=10)["generationConfig"] == {"maxOutputTokens": 10}


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("high", {"thinkingBudget": 4096, "includeThoughts": True}),
        ("none", {"thinkingBudget": 0}),
    ],
)
def test_reasoning_effort_sets_a_thinking_budget(effort: str, thinking: dict[str, Any]) -> None:
    assert translate(reasoning_effort=effort)["generationConfig"]["thinkingConfig"] == thinking


def test_stop_sequences_are_capped_at_five() -> None:
    assert translate(stop=list("abcde"))["generationConfig"]["stopSequences"] == list("abcde")
    with pytest.raises(InvalidRequest, match="at most 5") as caught:
        translate(stop=list("abcdef"))
    assert caught.value.param == "stop"


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
            },
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        ),
    ],
)
def test_response_format(response_format: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert translate(response_format=response_format).get("generationConfig") == expected


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [WEATHER]}},
            {"mode": "VALIDATED", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    request = translate(tools=[WEATHER], tool_choice=choice)
    assert request["toolConfig"] == {"functionCallingConfig": config}
    assert request["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ]
        }
    ]


def test_tool_choice_needs_a_declared_function() -> None:
    with pytest.raises(InvalidRequest, match="unknown function 'nope'"):
        translate(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(InvalidRequest, match="requires tools"):
        translate(tool_choice="required")
    assert "toolConfig" not in translate(tool_choice="none")


def test_parallel_tool_calls_false_only_matters_with_several_tools() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    assert "toolConfig" not in translate(tools=[WEATHER], parallel_tool_calls=False)
    with pytest.raises(UnsupportedParameter) as caught:
        translate(tools=[WEATHER, other], parallel_tool_calls=False)
    assert caught.value.param == "parallel_tool_calls"
    assert (
        len(
            translate(tools=[WEATHER, other], parallel_tool_calls=False, drop_params=True)["tools"][
                0
            ]["functionDeclarations"]
        )
        == 2
    )


def test_unsupported_parameters_are_refused_or_dropped() -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        translate(logit_bias={"50256": -100})
    assert caught.value.param == "logit_bias"
    assert translate(logit_bias={"1": 1}, modalities=["text"], drop_params=True)["contents"]
    assert translate(logit_bias=None, user="someone")["contents"]  # null means absent
    custom = {"type": "custom", "custom": {"name": "grammar"}}
    with pytest.raises(UnsupportedParameter):
        translate(tools=[custom])
    assert "tools" not in translate(tools=[custom], drop_params=True)


def test_tool_parameters_are_cleaned_to_gemini_schema() -> None:
    parameters = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "$defs": {
            "Unit": {"type": "string", "enum": ["c", "f", None]},
            "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}},
        },
        "properties": {
            "city": {"type": ["string", "null"], "format": "email", "description": "City"},
            "unit": {"$ref": "#/$defs/Unit", "description": "Unit"},
            "kind": {"const": "weather"},
            "days": {"type": "integer", "exclusiveMinimum": 0, "enum": [1, 2]},
            "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "meta": {
                "type": "object",
                "propertyNames": {"pattern": "^x"},
                "properties": {"a": {"type": "boolean"}},
            },
            "tree": {"$ref": "#/$defs/Node"},
            "when": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
        },
        "required": ["city", "ghost"],
        "strict": True,
    }
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": parameters, "strict": True}}
    ]
    cleaned = translate(tools=tools)["tools"][0]["functionDeclarations"][0]["parameters"]
    assert cleaned == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City", "nullable": True},
            "unit": {"type": "string", "enum": ["c", "f"], "description": "Unit", "nullable": True},
            "kind": {"type": "string", "enum": ["weather"]},
            "days": {"type": "integer", "minimum": 1, "description": "One of: 1, 2"},
            "tags": {"type": "array", "items": {"type": "string", "nullable": True}},
            "meta": {"type": "object", "properties": {"a": {"type": "boolean"}}},
            "tree": {"type": "object", "properties": {"child": {"type": "object"}}},
            "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
        },
        "required": ["city"],
    }


def test_parameters_without_properties_are_left_out() -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    assert translate(tools=tools)["tools"] == [{"functionDeclarations": [{"name": "now"}]}]
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "other.json"}}}]
    with pytest.raises(InvalidRequest, match="cannot resolve"):
        translate(tools=bad)


@pytest.mark.parametrize(
    ("api_base", "api_version", "stream", "url"),
    [
        (
            None,
            None,
            False,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        ("http://h:1/", "v1", False, "http://h:1/v1/models/gemini-2.5-flash:generateContent"),
        (
            "http://h:1/v1beta",
            "v1",
            True,
            "http://h:1/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        ),
        (
            "http://h:1/gw/v1",
            None,
            False,
            "http://h:1/gw/v1/models/gemini-2.5-flash:generateContent",
        ),
    ],
)
def test_adapter_url_and_headers(
    api_base: str | None, api_version: str | None, stream: bool, url: str
) -> None:
    ctx = context(
        api_base=api_base, api_version=api_version, stream=stream, extra_headers=(("X-Team", "a"),)
    )
    request = GeminiProvider().build_request({"model": "g", "messages": USER}, ctx)
    assert request.url == url
    assert dict(request.headers) == {
        "content-type": "application/json",
        "x-goog-api-key": "test-key",
        "x-team": "a",
    }
    assert json.loads(request.content)["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]}
    ]


# -- response ---------------------------------------------------------------------------------


def parsed(name: str) -> Completion:
    return parse_response((FIXTURES / f"{name}.json").read_bytes(), context())


def test_response_text_thoughts_and_usage() -> None:
    completion = parsed("thought")
    assert completion["id"] == "chatcmpl-test"
    assert completion["model"] == "g"
    assert completion["choices"][0]["message"] == {
        "role": "assistant",
        "content": "2 + 2 = 4.",
        "refusal": None,
        "reasoning_content": "**Adding the numbers**\n\nThe user asks for 2 + 2, which is 4.",
    }
    assert completion["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 49,
        "total_tokens": 60,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 42},
    }


def test_response_function_calls() -> None:
    choice = parsed("tools")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check both cities."
    calls = choice["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"},
        {"city": "London", "unit": "celsius"},
    ]
    assert parsed("tools")["choices"][0]["message"]["tool_calls"] == calls  # ids are stable


@pytest.mark.parametrize(
    ("name", "reason"),
    [("blocked", "content_filter"), ("safety", "content_filter"), ("length", "length")],
)
def test_response_stops(name: str, reason: str) -> None:
    choice = parsed(name)["choices"][0]
    assert choice["finish_reason"] == reason
    assert (choice["message"]["content"] is None) == (reason == "content_filter")


def test_response_with_several_candidates_and_odd_shapes() -> None:
    assert [c["message"]["content"] for c in parsed("n2")["choices"]] == [
        "Red apples.",
        "Blue skies.",
    ]
    odd = {
        "candidates": [
            {"index": 0, "content": {"role": "model"}, "finishReason": "MALFORMED_FUNCTION_CALL"},
            {"index": 1},
        ]
    }
    choices = parse_response(json.dumps(odd).encode(), context())["choices"]
    assert [(c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (None, "stop"),
        (None, "stop"),
    ]
    called = {
        "candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "id": "fc-1"}}]}}]
    }
    call = parse_response(json.dumps(called).encode(), context())["choices"][0]["message"][
        "tool_calls"
    ][0]
    assert (call["id"], call["function"]["arguments"]) == ("fc-1", "{}")
    with pytest.raises(UpstreamProtocolError):
        parse_response(b"<html>", context())


def test_response_logprobs() -> None:
    candidate = {
        "content": {"parts": [{"text": "Hi"}]},
        "logprobsResult": {
            "chosenCandidates": [{"token": "Hi", "logProbability": -0.5}],
            "topCandidates": [
                {
                    "candidates": [
                        {"token": "Hi", "logProbability": -0.5},
                        {"token": "Yo", "logProbability": -2.0},
                    ]
                }
            ],
        },
    }
    logprobs = parse_response(json.dumps({"candidates": [candidate]}).encode(), context())[
        "choices"
    ][0]["logprobs"]
    assert logprobs["content"][0]["token"] == "Hi"
    assert logprobs["content"][0]["bytes"] == [72, 105]
    assert [t["token"] for t in logprobs["content"][0]["top_logprobs"]] == ["Hi", "Yo"]


@pytest.mark.parametrize(
    ("reason", "saw_tool", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        (None, True, "tool_calls"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("FINISH_REASON_UNSPECIFIED", False, "stop"),
    ],
)
def test_finish_reason_mapping(reason: str | None, saw_tool: bool, expected: str) -> None:
    assert finish_reason(reason, saw_tool) == expected


# -- errors (PROTOCOLS.md §4.7) ----------------------------------------------------------------


def google(code: int, status: str, reason: str | None = None, **extra: Any) -> bytes:
    details = (
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}] if reason else []
    )
    return json.dumps(
        {"error": {"code": code, "message": "m", "status": status, "details": details, **extra}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected_type"),
    [
        (400, google(400, "INVALID_ARGUMENT", "API_KEY_INVALID"), 401, "authentication_error"),
        (400, google(400, "INVALID_ARGUMENT"), 400, "invalid_request_error"),
        (400, google(400, "FAILED_PRECONDITION"), 400, "invalid_request_error"),
        (403, google(403, "PERMISSION_DENIED"), 403, "permission_error"),
        (404, google(404, "NOT_FOUND"), 404, "not_found_error"),
        (429, google(429, "RESOURCE_EXHAUSTED"), 429, "rate_limit_error"),
        (500, google(500, "INTERNAL"), 500, "api_error"),
        (503, b"[" + google(503, "UNAVAILABLE") + b"]", 503, "api_error"),
        (504, b"<html>gateway timeout</html>", 504, "api_error"),
        (502, b"", 502, "api_error"),
    ],
)
def test_error_mapping(status: int, body: bytes, expected_status: int, expected_type: str) -> None:
    error = map_error(status, {}, body)
    assert (error.http_status, error.error_type) == (expected_status, expected_type)
    assert error.message


def test_retry_after_is_kept_or_derived_from_retry_info() -> None:
    assert (
        map_error(429, {"Retry-After": "7"}, google(429, "RESOURCE_EXHAUSTED")).retry_after == "7"
    )
    retry_info = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22.4s"}]
    body = json.dumps({"error": {"code": 429, "message": "quota", "details": retry_info}}).encode()
    assert map_error(429, {}, body).retry_after == "23"


# -- stream (PROTOCOLS.md §1.3, §4.6) ----------------------------------------------------------


def replay(
    pieces: list[bytes], include_usage: bool = True, out: list[Chunk] | None = None
) -> list[Chunk]:
    chunks = [] if out is None else out
    decoder, translator = (
        SSEDecoder(),
        GeminiStreamTranslator(context(stream=True, include_usage=include_usage)),
    )
    for piece in pieces:
        for event in decoder.feed(piece):
            chunks += translator.feed(event)
    for event in decoder.finish():
        chunks += translator.feed(event)
    return chunks + translator.finish()


def assert_openai_stream(chunks: list[Chunk], include_usage: bool) -> None:
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        ("chatcmpl-test", 1700000000, "g", "chat.completion.chunk")
    }
    usage = [c for c in chunks if not c["choices"]]
    assert usage == ([chunks[-1]] if include_usage else [])
    assert all(c["usage"] is None for c in chunks if c["choices"])
    seen: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            state = seen.setdefault(choice["index"], {"first": True, "tools": 0, "finished": False})
            assert not state["finished"], "a chunk after the choice's finish_reason"
            assert ("role" in choice["delta"]) == state["first"]
            state["first"] = False
            for call in choice["delta"].get("tool_calls", []):
                assert call["index"] == state["tools"]  # dense, in order of appearance
                assert call["id"]
                assert call["type"] == "function"
                assert call["function"]["name"]
                assert isinstance(call["function"]["arguments"], str)
                state["tools"] += 1
            state["finished"] = choice["finish_reason"] is not None
    assert seen
    assert all(state["finished"] for state in seen.values())


def reassemble(chunks: list[Chunk]) -> tuple[list[dict[str, Any]], Any]:
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            message = choices.setdefault(
                choice["index"], {"content": "", "reasoning_content": "", "tool_calls": []}
            )
            delta = choice["delta"]
            message["content"] += delta.get("content") or ""
            message["reasoning_content"] += delta.get("reasoning_content") or ""
            message["tool_calls"] += [
                {k: v for k, v in call.items() if k != "index"}
                for call in delta.get("tool_calls", [])
            ]
            message["finish_reason"] = choice["finish_reason"]
    out = []
    for index, acc in sorted(choices.items()):
        message = {"role": "assistant", "content": acc["content"] or None, "refusal": None}
        message |= {k: acc[k] for k in ("reasoning_content", "tool_calls") if acc[k]}
        out.append({"index": index, "message": message, "finish_reason": acc["finish_reason"]})
    return out, chunks[-1]["usage"]


def non_streamed(completion: Completion) -> tuple[list[dict[str, Any]], Any]:
    return [
        {k: v for k, v in c.items() if k != "logprobs"} for c in completion["choices"]
    ], completion["usage"]


@pytest.mark.parametrize("name", PAIRS)
def test_stream_fixture_at_every_byte_boundary(name: str) -> None:
    raw = (FIXTURES / f"{name}.sse").read_bytes()
    assert b"\r\n\r\n" in raw
    assert b"[DONE]" not in raw
    whole = replay([raw])
    assert_openai_stream(whole, include_usage=True)
    assert_openai_stream(replay([raw], include_usage=False), include_usage=False)
    for cut in range(1, len(raw)):
        assert replay([raw[:cut], raw[cut:]]) == whole, cut
    assert reassemble(whole) == non_streamed(parsed(name))


def test_stream_error_event_raises_at_every_byte_boundary() -> None:
    raw = (FIXTURES / "error.sse").read_bytes()
    for cut in range(1, len(raw)):
        before: list[Chunk] = []
        with pytest.raises(UpstreamStatusError) as caught:
            replay([raw[:cut], raw[cut:]], out=before)
        assert (caught.value.http_status, caught.value.error_type) == (503, "api_error")
        assert [c["choices"][0]["delta"].get("content") for c in before] == [
            "",
            "Let me think",
            " about that",
        ]


def test_stream_eof_without_finish_reason_still_finishes() -> None:
    events = (FIXTURES / "text.sse").read_bytes().split(b"\r\n\r\n")
    chunks = replay([b"\r\n\r\n".join(events[:2])])
    assert_openai_stream(chunks, include_usage=True)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 9  # the last usageMetadata seen
    calls = (
        (FIXTURES / "tools.sse")
        .read_bytes()
        .split(b"\r\n\r\n")[1]
        .replace(b'"finishReason": "STOP",', b"")
    )
    assert replay([calls])[-2]["choices"][0]["finish_reason"] == "tool_calls"
    with pytest.raises(UpstreamProtocolError):
        replay([b""])


_texts = st.text(min_size=1, max_size=8)
_parts = st.one_of(
    st.builds(lambda t: {"text": t}, _texts),
    st.builds(lambda t: {"text": t, "thought": True}, _texts),
    st.builds(
        lambda name, args, sig: {
            "functionCall": {"name": name, "args": args},
            **({"thoughtSignature": sig} if sig else {}),
        },
        st.sampled_from(["get_weather", "lookup"]),
        st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=2),
        st.sampled_from([None, "c2ln", "YWJj+/=="]),
    ),
)
_candidate = st.tuples(
    st.lists(st.lists(_parts, max_size=3), min_size=1, max_size=4),  # parts per event
    st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", None]),
)


@settings(max_examples=60, deadline=None)
@given(
    candidates=st.lists(_candidate, min_size=1, max_size=2),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_streamed_chunks_reassemble_to_the_non_streamed_response(
    candidates: list[Any], cuts: list[int]
) -> None:
    events: list[dict[str, Any]] = []
    for index, (groups, finish) in enumerate(candidates):
        for n, parts in enumerate(groups):
            candidate: dict[str, Any] = {"index": index}
            if parts:
                candidate["content"] = {"role": "model", "parts": parts}
            if finish and n == len(groups) - 1:
                candidate["finishReason"] = finish
            events.append(
                {
                    "candidates": [candidate],
                    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": n},
                    "responseId": "r1",
                }
            )
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)
    bounds = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    chunks = replay([raw[a:b] for a, b in pairwise(bounds)])
    assert_openai_stream(chunks, include_usage=True)
    expected = parse_response(json.dumps(merge_chunks(events)).encode(), context())
    assert reassemble(chunks) == non_streamed(expected)


# -- the fake, over real HTTP ------------------------------------------------------------------

VALID = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
KEY = {"x-goog-api-key": "test-key"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        ({"contents": [{"role": "assistant", "parts": [{"text": "Hi"}]}]}, KEY, 400, "valid role"),
        (VALID, {}, 403, "unregistered callers"),
        (VALID, {"x-goog-api-key": "wrong"}, 400, "API key not valid"),
        ({"contents": [{"role": "user", "parts": []}]}, KEY, 400, "must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, KEY, 400, "oneof field 'data'"),
        (
            {
                **VALID,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"a": {"type": "string"}},
                                },
                            }
                        ]
                    }
                ],
            },
            KEY,
            400,
            'Unknown name "additionalProperties"',
        ),
        (
            {**VALID, "generationConfig": {"stopSequences": list("abcdef")}},
            KEY,
            400,
            "stop sequences",
        ),
    ],
)
async def test_fake_rejects_what_gemini_rejects(
    body: Any, headers: dict[str, str], status: int, fragment: str
) -> None:
    fake = FakeGemini()
    async with serve_asgi(fake) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=headers
        )
        assert response.status_code == status
        assert fragment in response.json()["error"]["message"]
        unknown = await client.post(
            "/v1beta/models/gemini-0:generateContent", json=VALID, headers=KEY
        )
        assert unknown.json()["error"]["status"] == "NOT_FOUND"
    assert fake.requests[0].body == body
    assert not fake.script


async def test_fake_serves_scripted_replies_streamed_and_not() -> None:
    fake = FakeGemini()
    fake.script += [
        text_reply("Hel", "lo!"),
        text_reply("Hel", "lo!"),
        text_reply("Hel").then_error(),
        error_reply(429, "Quota exceeded", "RESOURCE_EXHAUSTED", retry_after="9"),
    ]
    path = "/v1beta/models/gemini-2.5-flash:"
    async with serve_asgi(fake) as base, httpx.AsyncClient(base_url=base) as client:
        plain = await client.post(path + "generateContent", json=VALID, headers=KEY)
        streamed = await client.post(
            path + "streamGenerateContent?alt=sse", json=VALID, headers=KEY
        )
        broken = await client.post(path + "streamGenerateContent?alt=sse", json=VALID, headers=KEY)
        limited = await client.post(path + "generateContent", json=VALID, headers=KEY)
    assert plain.json()["candidates"][0]["content"]["parts"] == [{"text": "Hello!"}]
    assert streamed.headers["content-type"] == "text/event-stream"
    assert streamed.content.count(b"\r\n\r\n") == 2
    chunks = replay([streamed.content])
    assert_openai_stream(chunks, include_usage=True)
    assert reassemble(chunks)[0] == non_streamed(parse_response(plain.content, context()))[0]
    assert fake.requests[1].query == {"alt": "sse"}
    assert fake.requests[1].headers["x-goog-api-key"] == "test-key"
    with pytest.raises(UpstreamStatusError, match="overloaded"):
        replay([broken.content])
    error = map_error(limited.status_code, limited.headers, limited.content)
    assert (error.http_status, error.error_type, error.retry_after) == (
        429,
        "rate_limit_error",
        "9",
    )


CALLS = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}] * 2}
ASKED = {"role": "user", "parts": [{"text": "Hi"}]}


def answered(*responses: Any) -> dict[str, Any]:
    parts = [{"functionResponse": {"name": "f", "response": r}} for r in responses]
    return {"contents": [ASKED, CALLS, {"role": "user", "parts": parts}]}


def declared(parameters: dict[str, Any]) -> dict[str, Any]:
    return {**VALID, "tools": [{"functionDeclarations": [{"name": "f", "parameters": parameters}]}]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "tool", "parts": [{"text": "x"}]}]}, "valid role"),
        (
            {"contents": [{"role": "user", "parts": [{"function_call": {}}]}]},
            'Unknown name "function_call"',
        ),
        ({**VALID, "temperature": 1}, 'Unknown name "temperature"'),
        (answered({}), "number of function response parts"),
        (answered({}, "18C"), "google.protobuf.Struct"),
        (
            declared({"type": "object", "$schema": "x", "properties": {"a": {}}}),
            'Unknown name "$schema"',
        ),
        (
            declared({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}),
            'Unknown name "$ref"',
        ),
        (declared({"type": "object", "properties": {"a": {"const": "x"}}}), 'Unknown name "const"'),
        (
            declared({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}),
            "cannot start list",
        ),
        (declared({"type": "object", "properties": {}}), "non-empty for OBJECT"),
        (
            declared({"type": "object", "properties": {"a": {}}, "required": ["b"]}),
            "property is not defined",
        ),
    ],
)
def test_fake_rules(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Rejection, match=re.escape(fragment)):
        check_call("v1beta", "m", "k", body, api_key="k", models=["m"], signatures=None)
    check_call("v1beta", "m", "k", answered({}, {}), api_key="k", models=["m"], signatures=None)


async def test_provider_round_trip_with_thought_signatures_against_the_fake() -> None:
    fake = FakeGemini(require_thought_signatures=True)
    calls = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "London"})]
    fake.script += [
        tool_reply(*calls, text="Checking.", signature="c2lnLTE="),
        text_reply("Both sunny."),
    ]
    provider = GeminiProvider()
    body: dict[str, Any] = {
        "model": "g",
        "messages": [{"role": "system", "content": "Be terse."}, *USER],
        "tools": [WEATHER],
    }
    async with serve_asgi(fake) as base, httpx.AsyncClient() as client:

        async def call(ctx: CallContext) -> httpx.Response:
            request = provider.build_request(body, ctx)
            return await client.post(request.url, headers=request.headers, content=request.content)

        first = await call(context(api_base=base, stream=True))
        message = reassemble(replay([first.content]))[0][0]["message"]
        answers = [
            {"role": "tool", "tool_call_id": c["id"], "content": "18C"}
            for c in reversed(message["tool_calls"])
        ]
        body["messages"] += [message, *answers]
        second = await call(context(api_base=base))
    assert second.status_code == 200, second.text
    assert (
        parse_response(second.content, context())["choices"][0]["message"]["content"]
        == "Both sunny."
    )
    model_turn, results_turn = fake.requests[1].body["contents"][1:]
    assert [p.get("thoughtSignature") for p in model_turn["parts"]] == [None, "c2lnLTE=", None]
    assert len(results_turn["parts"]) == 2
    issued = fake.issued_signatures
    body["messages"][2]["tool_calls"][0]["id"] = "call_without_signature"
    body["messages"][-1]["tool_call_id"] = "call_without_signature"
    translated = build_body(body, context())
    with pytest.raises(Rejection, match="missing a thought_signature"):
        check_call("v1beta", "m", "k", translated, api_key="k", models=["m"], signatures=issued)
