"""The Messages front door's pure parts: stream pipes at every byte split, and the codecs.

Stream pipes are fed real upstream bytes (built by the strict fakes' own
encoders) split at every byte boundary; the output must be the same events
whatever the split, and keep the grammar (:func:`check_grammar`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from feathergate.config import Deployment
from feathergate.envelopes import ANTHROPIC, anthropic_error_type
from feathergate.errors import (
    InvalidRequest,
    RateLimited,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from feathergate.ingress.anthropic.names import chat_tool_id, message_tool_id, short_tool_name
from feathergate.ingress.anthropic.stream import MessagesEncoder
from feathergate.ingress.anthropic.to_chat import reasoning_effort, to_chat
from feathergate.ingress.anthropic.tokens import IMAGE_TOKENS, estimate_tokens
from feathergate.operations.base import StreamPipe
from feathergate.operations.messages import MessagesPipe
from feathergate.providers.anthropic.passthrough import PassthroughPipe
from feathergate.providers.base import CallContext, Usage
from feathergate.providers.gemini import GeminiProvider
from feathergate.providers.openai import OpenAIProvider
from feathergate.splice import parse_members, splice
from tests.conftest import gateway_config
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes import openai as fo
from tests.support.messages import check_grammar, frames


def _deployment(model: str) -> Deployment:
    params = {"model": model, "api_base": "http://127.0.0.1:9", "api_key": "k"}
    return gateway_config([{"model_name": "m", "litellm_params": params}]).deployments[0]


def _ctx(model: str) -> CallContext:
    return CallContext("m", _deployment(model), True, True, "chatcmpl-test1", 1)


def _encoder(names: dict[str, str] | None = None, stops: tuple[str, ...] = ()) -> MessagesEncoder:
    return MessagesEncoder(message_id="msg_test1", alias="m", names=names or {}, stops=stops)


def _every_split(make: Any, data: bytes) -> bytes:
    """Feed ``data`` whole, then split at every byte; every output must be the same."""
    whole_pipe: StreamPipe = make()
    whole = whole_pipe.feed(data) + whole_pipe.finish()
    for i in range(1, len(data)):
        pipe: StreamPipe = make()
        assert pipe.feed(data[:i]) + pipe.feed(data[i:]) + pipe.finish() == whole, i
    return whole


def _openai_sse(reply: fo.Reply) -> bytes:
    body = {"model": "up", "stream": True, "stream_options": {"include_usage": True}}
    chunks = fo.FakeOpenAI()._chunks(body, reply)
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


def _gemini_sse(reply: fg.Reply) -> bytes:
    events = fg.FakeGemini()._annotate(reply, "gemini-2.5-flash", {"contents": []}, 1)
    return b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)


# -- stream pipes at every byte split ------------------------------------------------------


def test_openai_chunks_become_messages_events_at_every_split() -> None:
    reply = fo.Reply(
        text="Let me check.",
        reasoning="The user wants weather.",
        tool_calls=[("get_weather", '{"city": "Zürich"}'), ("get_time", "{}")],
        usage={"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
    )
    data = _openai_sse(reply)
    ctx = _ctx("openai/up")
    out = _every_split(lambda: MessagesPipe(OpenAIProvider(), ctx, _encoder()), data)
    message = check_grammar(frames(out))
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert message["content"][0] == {
        "type": "thinking",
        "thinking": "The user wants weather.",
        "signature": "",
    }
    assert message["content"][1]["text"] == "Let me check."
    assert [(b["name"], b["input"]) for b in message["content"][2:]] == [
        ("get_weather", {"city": "Zürich"}),
        ("get_time", {}),
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 9,
    }


def test_gemini_events_become_messages_events_at_every_split() -> None:
    thought = fg.thought_reply("Thinking it over.", "It is ", "sunny.")
    tools = fg.tool_reply(("get_weather", {"city": "Paris"}), signature="c2ln/+=")
    reply = fg.Reply((*thought.chunks[:-1], *tools.chunks))
    data = _gemini_sse(reply)
    ctx = _ctx("gemini/gemini-2.5-flash")
    out = _every_split(lambda: MessagesPipe(GeminiProvider(), ctx, _encoder()), data)
    message = check_grammar(frames(out))
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    use = message["content"][2]
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
    # the signature rides in the id, in the id alphabet, and comes back whole
    assert chat_tool_id(use["id"]).endswith("__thought__c2ln/+=")
    assert message["stop_reason"] == "tool_use"


def test_anthropic_events_pass_through_at_every_split() -> None:
    reply = fa.Reply(
        [fa.Thinking("Hm."), fa.Text("Hello there."), fa.ToolUse("Read", {"path": "a.py"})],
        usage=fa.Usage(input_tokens=5, cache_read_input_tokens=100),
    )
    events = fa.stream_events(reply, model="claude-upstream")
    out = _every_split(lambda: PassthroughPipe("m"), fa.encode_events(events))
    assert frames(out) == fa.stream_events(reply, model="m")
    pipe = PassthroughPipe("m")
    pipe.feed(fa.encode_events(events))
    output = fa.message_json(reply)["usage"]["output_tokens"]
    assert pipe.tokens == Usage(5 + 100, output, cached=100)  # cache reads priced apart


def test_an_anthropic_stream_cut_short_or_failing_raises() -> None:
    events = fa.stream_events(fa.Reply([fa.Text("Hi")]))
    pipe = PassthroughPipe("m")
    pipe.feed(fa.encode_events(events[:-1]))
    with pytest.raises(UpstreamProtocolError):
        pipe.finish()
    failing = fa.stream_events(fa.Reply([fa.Text("Hi")], error_after=2))
    with pytest.raises(UpstreamStatusError) as info:
        PassthroughPipe("m").feed(fa.encode_events(failing))
    assert info.value.http_status == 529
    assert anthropic_error_type(info.value.http_status) == "overloaded_error"


# -- the encoder's edge cases ----------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}]}


def _call(index: int, call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call["id"] = call_id
        call["function"]["name"] = name
    return call


def _run(chunks: list[dict[str, Any]], encoder: MessagesEncoder | None = None) -> dict[str, Any]:
    encoder = encoder or _encoder()
    return check_grammar(frames(encoder.encode(chunks) + encoder.finish()))


def test_two_calls_in_one_chunk_are_two_blocks() -> None:
    both = [_call(0, "a", "f", '{"x": 1}'), _call(1, "b", "g", '{"y": 2}')]
    message = _run([_chunk({"tool_calls": both}), _chunk({}, "tool_calls")])
    assert [(b["id"], b["input"]) for b in message["content"]] == [("a", {"x": 1}), ("b", {"y": 2})]


def test_a_repeated_index_with_a_new_id_is_a_new_call() -> None:
    """Gemini's OpenAI endpoint numbers every call 0 (INGRESS.md §4.8.5)."""
    chunks = [
        _chunk({"tool_calls": [_call(0, "a", "f", '{"x": 1}')]}),
        _chunk({"tool_calls": [_call(0, "b", "f", '{"x": 2}')]}),
        _chunk({}, "stop"),
    ]
    message = _run(chunks)
    assert [b["input"] for b in message["content"]] == [{"x": 1}, {"x": 2}]
    assert message["stop_reason"] == "tool_use"  # any call is tool_use, whatever the reason


def test_arguments_for_a_closed_call_are_a_protocol_error() -> None:
    encoder = _encoder()
    encoder.encode([_chunk({"tool_calls": [_call(0, "a", "f", "{")]}), _chunk({"content": "x"})])
    with pytest.raises(UpstreamProtocolError):
        encoder.encode([_chunk({"tool_calls": [_call(0, None, None, "}")]})])


def test_empty_deltas_open_nothing_and_nothing_follows_the_finish() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hi"}),
        _chunk({"content": ""}, "stop"),
        _chunk({"content": "late"}),
    ]
    message = _run(chunks)
    assert message["content"] == [{"type": "text", "text": "Hi"}]
    assert message["usage"]["output_tokens"] == 0  # no usage reported: zeros, never missing


def test_names_and_stop_sequences_come_back() -> None:
    long = "mcp__" + "x" * 80
    encoder = _encoder({short_tool_name(long): long}, stops=("END",))
    chunks = [_chunk({"tool_calls": [_call(0, "functions.Read:0", short_tool_name(long), "{}")]})]
    message = _run([*chunks, _chunk({}, "tool_calls")], encoder)
    assert message["content"][0]["name"] == long
    assert chat_tool_id(message["content"][0]["id"]) == "functions.Read:0"
    stopped = _run(
        [_chunk({"content": "4"}), _chunk({}, "stop", stop_reason="END")], _encoder(stops=("END",))
    )
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "END")
    filtered = _run([_chunk({"content": "no"}), _chunk({}, "content_filter")])
    assert filtered["stop_reason"] == "refusal"


def test_usage_excludes_cached_tokens_from_input() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 20,
        "total_tokens": 1020,
        "prompt_tokens_details": {"cached_tokens": 800, "cache_write_tokens": 150},
    }
    message = _run([_chunk({"content": "ok"}, "stop"), {"choices": [], "usage": usage}])
    assert message["usage"] == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 150,
        "cache_read_input_tokens": 800,
        "output_tokens": 20,
    }


# -- Messages -> Chat -------------------------------------------------------------------------


def test_a_user_turn_puts_tool_results_first_and_their_images_after() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    body = {
        "model": "m",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "text", "text": "Running."},
                    {
                        "type": "tool_use",
                        "id": "fgx_ZnVuY3Rpb25zLkJhc2g6MA",
                        "name": "Bash",
                        "input": {"c": 1},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Also this"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "fgx_ZnVuY3Rpb25zLkJhc2g6MA",
                        "content": [{"type": "text", "text": "ok"}, image],
                    },
                ],
            },
        ],
    }
    chat = to_chat(body, "openai", stream=False).body
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assistant = chat["messages"][2]
    assert assistant["content"] == "Running."  # the thinking block is not sent
    assert assistant["tool_calls"][0]["id"] == "functions.Bash:0"  # the upstream's own id
    assert chat["messages"][3] == {
        "role": "tool",
        "tool_call_id": "functions.Bash:0",
        "content": "ok",
    }
    assert chat["messages"][4]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "text", "text": "Also this"},
    ]


def test_documents_server_tools_and_formats() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                    },
                    {
                        "type": "document",
                        "title": "Notes",
                        "source": {"type": "text", "media_type": "text/plain", "data": "abc"},
                    },
                ],
            }
        ],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search"},
            {"name": "f", "input_schema": {"type": "object"}},
        ],
        "tool_choice": {"type": "any"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "thinking": {"type": "adaptive"},
        "service_tier": "auto",
    }
    chat = to_chat(body, "openai", stream=True).body
    parts = chat["messages"][0]["content"]
    assert parts[0] == {
        "type": "file",
        "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"},
    }
    assert parts[1] == {"type": "text", "text": "Notes\n\nabc"}
    assert [t["function"]["name"] for t in chat["tools"]] == ["f"]  # the server tool is left out
    assert chat["tool_choice"] == "required"
    assert chat["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert chat["reasoning_effort"] == "medium"
    assert chat["stream_options"] == {"include_usage": True}
    assert "service_tier" not in chat
    assert to_chat(body, "gemini", stream=False).body["thinking"] == {"type": "adaptive"}


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (2048, "medium"), (4000, "medium"), (10000, "high"), (31999, "high")],
)
def test_thinking_budgets_become_efforts(budget: int, effort: str) -> None:
    assert reasoning_effort(budget) == effort


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": [{"type": "video"}]}, "messages.0.content.0.type"),
        ({"role": "user", "content": 5}, "messages.0.content"),
        ({"role": "robot", "content": "hi"}, "messages.0.role"),
        (
            {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]},
            "messages.0.content.0.id",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
            },
            "messages.0.content.0.source",
        ),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_field(message: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_chat({"model": "m", "messages": [message]}, "openai", stream=False)
    assert info.value.param == param


# -- names and ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Bash", "mcp__" + "s" * 100, "9lives", "a.b:c", "x" * 64])
def test_short_tool_names_fit_every_upstream(name: str) -> None:
    short = short_tool_name(name)
    assert len(short) <= 64
    assert short[0].isalpha() or short[0] == "_"
    assert all(c.isalnum() or c in "_-" for c in short)
    assert short_tool_name(name) == short  # stateless: the next turn maps the same way
    if len(name) <= 64 and name.replace("_", "a").isalnum() and name[0].isalpha():
        assert short == name


@pytest.mark.parametrize(
    "upstream_id",
    ["call_abc123", "functions.Bash:0", "call_1__thought__c2ln/+=", "fgx_looks_like_ours", "é"],
)
def test_tool_ids_round_trip_in_anthropics_alphabet(upstream_id: str) -> None:
    tool_use_id = message_tool_id(upstream_id)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in tool_use_id)
    assert chat_tool_id(tool_use_id) == upstream_id


# -- splice ---------------------------------------------------------------------------------


def test_splice_changes_model_and_not_one_other_byte() -> None:
    text = (
        '{ "a" : 1.0E0 , "model" :"m",\n"nested": {"model": "keep"}, "s": "\\u00e9", "model": "m"}'
    )
    members = parse_members(text, "model")
    assert members.value["nested"] == {"model": "keep"}
    assert splice(members, "up/é") == text.replace('"m"', '"up/\\u00e9"').encode()
    assert parse_members("[1]", "model").value == [1]
    assert parse_members(" {} ", "model").value == {}
    for bad in ('{"a" 1}', '{"a": 1,}', '{"a": 1} x', '{"a": tru}', "{1: 2}"):
        with pytest.raises(ValueError, match=r"(?i)expect|extra"):
            parse_members(bad, "model")


# -- the local token estimate -----------------------------------------------------------------


def test_the_estimate_counts_system_tools_and_tool_results() -> None:
    messages = [{"role": "user", "content": "Hello"}]
    bare = estimate_tokens({"messages": messages})
    result = {"type": "tool_result", "tool_use_id": "t", "content": "x" * 300}
    assert estimate_tokens({"messages": messages, "system": "s" * 300}) >= bare + 100
    assert (
        estimate_tokens(
            {
                "messages": messages,
                "tools": [{"name": "f", "input_schema": {"description": "d" * 300}}],
            }
        )
        >= bare + 100
    )
    assert (
        estimate_tokens({"messages": [*messages, {"role": "user", "content": [result]}]})
        >= bare + 100
    )
    image = {"type": "image", "source": {"type": "url", "url": "u"}}
    assert estimate_tokens({"messages": [{"role": "user", "content": [image]}]}) >= IMAGE_TOKENS
    prose = "The quick brown fox jumps over the lazy dog. " * 100
    assert estimate_tokens({"messages": [{"role": "user", "content": prose}]}) > len(prose) / 4


# -- the Anthropic envelope -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (RateLimited("slow down", retry_after=3), 429, "rate_limit_error"),
        (UpstreamTimeout("first_token", 1), 504, "timeout_error"),
        (UpstreamProtocolError("cut"), 502, "api_error"),
        (UpstreamStatusError(529, "Overloaded", type="overloaded_error"), 529, "overloaded_error"),
        (UpstreamStatusError(402, "pay", type="permission_error"), 402, "billing_error"),
    ],
)
def test_the_anthropic_envelope(err: Any, status: int, kind: str) -> None:
    code, headers, body = ANTHROPIC.response(err)
    assert code == status
    assert json.loads(body) == {"type": "error", "error": {"type": kind, "message": err.message}}
    assert dict(headers)[b"content-length"] == str(len(body)).encode()
    if isinstance(err, RateLimited):
        assert dict(headers)[b"retry-after"] == b"3"
    [(name, data)] = frames(ANTHROPIC.event(err))
    assert name == "error"
    assert data["error"]["type"] == kind
