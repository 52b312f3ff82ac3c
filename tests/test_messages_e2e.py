"""``POST /v1/messages`` end to end: the anthropic SDK -> FeatherGate -> each strict fake.

Each test runs once per kind of upstream: ``anthropic`` (the passthrough),
``openai`` and ``gemini`` (translated through Chat Completions). The fakes
refuse what the real APIs refuse, so a translation bug shows up as an
upstream 400 here. Streams are read raw as well as through the SDK, and
checked frame by frame against the event grammar
(:func:`tests.support.messages.check_grammar`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from feathergate.ingress.anthropic.names import short_tool_name
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes import openai as fo
from tests.support.messages import AnthropicSDK, check_grammar, frames, raw_post
from tests.support.providers import PNG, Case, Image, provider_gateway

KINDS = ("openai", "anthropic", "gemini")
USER: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TEXT = "Sunny and mild in Zürich today, 18 °C."
CALLS = [("get_weather", {"city": "Zürich"}), ("get_time", {"timezone": "Europe/Zurich"})]
TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")


def _tool(name: str, prop: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]}
    return {"name": name, "description": f"{name} by {prop}", "input_schema": schema}


TOOLS: list[Any] = [_tool("get_weather", "city"), _tool("get_time", "timezone")]


class MCase:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.upstream = case.upstream
        self.kind = case.upstream.provider
        self.base = case.base
        self.sdk = AnthropicSDK(case.base)


@pytest.fixture(params=KINDS)
async def mc(request: pytest.FixtureRequest) -> AsyncIterator[MCase]:
    async with provider_gateway(request.param) as case:
        served = MCase(case)
        try:
            yield served
        finally:
            served.sdk.close()


async def answer(mc: MCase, *, stream: bool, **kwargs: Any) -> anthropic.types.Message:
    kwargs.setdefault("model", "m")
    kwargs.setdefault("messages", USER)
    if stream:
        _, message = await mc.sdk.stream(**kwargs)
        return message
    return await mc.sdk.create(**kwargs)


async def raw_stream(mc: MCase, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    body = {"model": "m", "max_tokens": 256, "messages": USER, "stream": True, **body}
    response = await raw_post(mc.base, "/v1/messages", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return frames(response.content)


# -- answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_text_answer(mc: MCase, stream: bool) -> None:
    mc.upstream.text(TEXT, usage=(11, 7))
    message = await answer(mc, stream=stream)
    assert message.model == "m"  # the alias, never the upstream's model
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", TEXT)]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert message.id.startswith("msg_")
    assert mc.upstream.paths[-1].startswith(mc.upstream.expected_path(stream=stream))


async def test_raw_stream_keeps_the_grammar(mc: MCase) -> None:
    mc.upstream.tool_calls(CALLS, text="Let me check.", usage=(11, 7))
    events = await raw_stream(mc, {"tools": TOOLS})
    message = check_grammar(events)
    kinds = [b["type"] for b in message["content"]]
    assert kinds == ["text", "tool_use", "tool_use"]
    assert message["content"][0]["text"] == "Let me check."
    assert [(b["name"], b["input"]) for b in message["content"][1:]] == CALLS
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 7
    assert message["model"] == "m"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_length_limited_answer(mc: MCase, stream: bool) -> None:
    mc.upstream.text("Once upon a", finish="length")
    message = await answer(mc, stream=stream, max_tokens=3)
    assert message.stop_reason == "max_tokens"


# -- the tool round trip -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_tool_round_trip(mc: MCase, stream: bool) -> None:
    mc.upstream.tool_calls(CALLS, text="Let me check.")
    mc.upstream.text("18C and noon in Zürich.")
    first = await answer(mc, stream=stream, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == CALLS
    assert all(TOOL_ID.fullmatch(u.id) for u in uses)
    assert len({u.id for u in uses}) == 2
    assistant = {"role": "assistant", "content": [b.model_dump() for b in first.content]}
    results = [
        # in reverse order, one as blocks, one failed: results still come first upstream
        {
            "type": "tool_result",
            "tool_use_id": uses[1].id,
            "content": [{"type": "text", "text": "12:00"}],
        },
        {"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C"},
        {"type": "text", "text": "Thanks. And tomorrow?"},
    ]
    second = await mc.sdk.create(
        model="m", tools=TOOLS, messages=[*USER, assistant, {"role": "user", "content": results}]
    )
    assert [b.text for b in second.content if b.type == "text"] == ["18C and noon in Zürich."]
    body = mc.upstream.last
    sent = mc.upstream.tool_calls_sent(body)
    assert [(c.name, c.args) for c in sent] == CALLS
    assert sent[0].signature == mc.upstream.signature  # Gemini 3: carried back in the id
    got = {r.id or r.name: r.content for r in mc.upstream.tool_results_sent(body)}
    assert got == {sent[0].id or sent[0].name: "18C", sent[1].id or sent[1].name: "12:00"}
    if mc.kind == "openai":  # tool messages, then the turn's text
        assert [m["role"] for m in body["messages"]][-4:] == ["assistant", "tool", "tool", "user"]
        assert body["messages"][-1]["content"] == "Thanks. And tomorrow?"


async def test_tool_result_errors_and_images(mc: MCase) -> None:
    mc.upstream.tool_calls(CALLS[:1])
    first = await mc.sdk.create(model="m", tools=TOOLS, messages=USER)
    use = first.content[0]
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    result = {
        "type": "tool_result",
        "tool_use_id": use.id,
        "is_error": True,
        "content": [{"type": "text", "text": "no such city"}, {"type": "image", "source": image}],
    }
    history = [*USER, {"role": "assistant", "content": [use.model_dump()]}]
    await mc.sdk.create(
        model="m", tools=TOOLS, messages=[*history, {"role": "user", "content": [result]}]
    )
    body = mc.upstream.last
    [sent] = mc.upstream.tool_results_sent(body)
    if mc.kind == "anthropic":
        assert sent.content == "no such city"  # untouched: is_error and the image ride along
        assert body["messages"][-1]["content"][0]["is_error"] is True
    else:
        assert sent.content == "Error: no such city"
    # tool messages are text only: the image follows them in a user turn
    assert len(mc.upstream.images(body)) == 1


# -- parameters --------------------------------------------------------------------------


async def test_system_string_and_blocks(mc: MCase) -> None:
    await mc.sdk.create(model="m", system="Be terse.", messages=USER)
    assert mc.upstream.system_texts(mc.upstream.last) == ["Be terse."]
    blocks = [
        {"type": "text", "text": "You are a helper.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in French."},
    ]
    await mc.sdk.create(model="m", system=blocks, messages=USER)
    texts = mc.upstream.system_texts(mc.upstream.last)
    assert "\n\n".join(texts) == "You are a helper.\n\nAnswer in French."


async def test_sampling_stop_and_max_tokens(mc: MCase) -> None:
    extra = {"temperature": 0.5, "top_p": 0.9, "top_k": 40}
    await mc.sdk.create(
        model="m", messages=USER, max_tokens=1000, stop_sequences=["END", "STOP"], extra_body=extra
    )
    body = mc.upstream.last
    assert mc.upstream.param(body, "temperature") == 0.5
    assert mc.upstream.param(body, "stop") == ["END", "STOP"]
    if mc.kind == "openai":
        assert body["top_p"] == 0.9
        assert body["max_completion_tokens"] == 1000  # what OpenAI's reasoning models take
        assert "top_k" not in body
        assert "max_tokens" not in body
    elif mc.kind == "gemini":
        config = body["generationConfig"]
        assert (config["topP"], config["topK"], config["maxOutputTokens"]) == (0.9, 40, 1000)
    else:
        assert (body["top_p"], body["top_k"], body["max_tokens"]) == (0.9, 40, 1000)


async def test_stop_sequence_is_reported_where_the_upstream_says_which(mc: MCase) -> None:
    if mc.kind == "openai":  # vLLM's stop_reason extension names the sequence
        mc.upstream.fake.script(fo.Reply(text="The answer is 4", stop_reason="END"))
    else:
        mc.upstream.text("The answer is 4", stopped_at="END")
    message = await mc.sdk.create(model="m", messages=USER, stop_sequences=["END"])
    if mc.kind == "gemini":  # Gemini never says which sequence matched
        assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    else:
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def _tool_choice_sent(mc: MCase, body: dict[str, Any]) -> Any:
    if mc.kind == "openai":
        return body.get("tool_choice"), body.get("parallel_tool_calls")
    if mc.kind == "gemini":
        return body.get("toolConfig", {}).get("functionCallingConfig"), None
    return body.get("tool_choice"), None


@pytest.mark.parametrize(
    ("choice", "openai_sent", "gemini_sent"),
    [
        ({"type": "auto"}, ("auto", None), {"mode": "AUTO"}),
        ({"type": "any", "disable_parallel_tool_use": True}, ("required", False), {"mode": "ANY"}),
        (
            {"type": "tool", "name": "get_time"},
            ({"type": "function", "function": {"name": "get_time"}}, None),
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
        ({"type": "none"}, ("none", None), {"mode": "NONE"}),
    ],
    ids=["auto", "any", "tool", "none"],
)
async def test_tool_choice(
    mc: MCase, choice: dict[str, Any], openai_sent: Any, gemini_sent: Any
) -> None:
    tools = TOOLS[:1] if mc.kind == "gemini" and choice.get("disable_parallel_tool_use") else TOOLS
    if choice["type"] == "tool":
        tools = TOOLS
    await mc.sdk.create(model="m", messages=USER, tools=tools, tool_choice=choice)
    sent = _tool_choice_sent(mc, mc.upstream.last)
    expected = {"openai": openai_sent, "gemini": (gemini_sent, None), "anthropic": (choice, None)}
    assert sent == expected[mc.kind]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_thinking_goes_up_and_comes_back_as_thinking_blocks(mc: MCase, stream: bool) -> None:
    if mc.kind == "openai":
        mc.upstream.fake.script(fo.Reply(text="It is 4.", reasoning="Two and two."))
    elif mc.kind == "gemini":
        mc.upstream.fake.script.append(fg.thought_reply("Two and two.", "It is ", "4."))
    else:
        mc.upstream.fake.script(fa.Reply([fa.Thinking("Two and two."), fa.Text("It is 4.")]))
    thinking = {"type": "enabled", "budget_tokens": 4096}
    message = await answer(mc, stream=stream, max_tokens=8192, thinking=thinking)
    blocks = [
        (b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content
    ]
    assert blocks == [("thinking", "Two and two."), ("text", "It is 4.")]
    signature = message.content[0].signature  # type: ignore[union-attr]
    assert signature == (fa.SIGNATURE if mc.kind == "anthropic" else "")
    body = mc.upstream.last
    if mc.kind == "openai":
        assert body["reasoning_effort"] == "medium"
    elif mc.kind == "gemini":
        config = body["generationConfig"]["thinkingConfig"]
        assert config == {"thinkingBudget": 4096, "includeThoughts": True}
    else:
        assert body["thinking"] == thinking


async def test_metadata_user_id(mc: MCase) -> None:
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s-1"})
    await mc.sdk.create(model="m", messages=USER, metadata={"user_id": user_id})
    body = mc.upstream.last
    if mc.kind == "openai":
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", body["user"])
        assert body["user"] == "u_" + hashlib.sha256(user_id.encode()).hexdigest()[:32]
    elif mc.kind == "anthropic":
        assert body["metadata"] == {"user_id": user_id}
    else:
        assert "user" not in body
        assert "metadata" not in body


async def test_image(mc: MCase) -> None:
    data = base64.b64encode(PNG).decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "What is in this picture?"},
    ]
    await mc.sdk.create(model="m", messages=[{"role": "user", "content": content}])
    images = mc.upstream.images(mc.upstream.last)
    if mc.kind == "openai":
        assert images == [Image("pass", f"data:image/png;base64,{data}")]
    else:
        assert images == [Image("inline", data, "image/png")]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_long_tool_names_are_shortened_and_restored(mc: MCase, stream: bool) -> None:
    name = "mcp__a_very_long_server_name__and_an_even_longer_tool_name_that_goes_on_and_on"
    assert len(name) > 64
    short = short_tool_name(name)
    upstream_name = name if mc.kind == "anthropic" else short
    mc.upstream.tool_calls([(upstream_name, {"city": "Paris"})])
    message = await answer(mc, stream=stream, tools=[_tool(name, "city")])
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [("tool_use", name)]
    assert mc.upstream.tool_names(mc.upstream.last) == [upstream_name]
    assert len(short) == 64


async def test_mid_conversation_system_message(mc: MCase) -> None:
    """What Claude Code's first request carries (INGRESS.md appendix)."""
    messages = [
        *USER,
        {"role": "system", "content": "cwd: /tmp"},
        {"role": "user", "content": "Hi"},
    ]
    if mc.kind == "anthropic":  # refused as Anthropic refuses it; Claude Code then drops it
        with pytest.raises(anthropic.BadRequestError) as info:
            await mc.sdk.create(model="m", messages=messages)
        assert info.value.body["error"]["type"] == "invalid_request_error"
        return
    await mc.sdk.create(model="m", messages=messages)
    assert "cwd: /tmp" in mc.upstream.system_texts(mc.upstream.last)


# -- errors --------------------------------------------------------------------------------

ERRORS = {
    "openai": (400, 403, 404, 429, 500, 503),
    "anthropic": (400, 402, 403, 404, 413, 429, 500, 504, 529),
    "gemini": (400, 403, 404, 429, 500, 503, 504),
}
TYPES = {
    400: ("invalid_request_error", anthropic.BadRequestError),
    402: ("billing_error", anthropic.APIStatusError),
    403: ("permission_error", anthropic.PermissionDeniedError),
    404: ("not_found_error", anthropic.NotFoundError),
    413: ("request_too_large", anthropic.APIStatusError),
    429: ("rate_limit_error", anthropic.RateLimitError),
    500: ("api_error", anthropic.InternalServerError),
    503: ("api_error", anthropic.InternalServerError),
    504: ("timeout_error", anthropic.InternalServerError),
    529: ("overloaded_error", anthropic.InternalServerError),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_upstream_errors_in_anthropics_envelope(mc: MCase, stream: bool) -> None:
    for status in ERRORS[mc.kind]:
        mc.upstream.http_error(status, retry_after="7" if status == 429 else None)
        kind, exception = TYPES[status]
        with pytest.raises(exception) as info:
            await answer(mc, stream=stream)
        err = info.value
        assert isinstance(err, anthropic.APIStatusError)
        assert err.status_code == status, status
        assert err.body["type"] == "error"
        assert err.body["error"]["type"] == kind, status
        assert "upstream says" in err.body["error"]["message"]
        if status == 429:
            assert err.response.headers["retry-after"] == "7"


async def test_error_inside_the_stream(mc: MCase) -> None:
    mc.upstream.stream_error("Once upon a time", "the model fell over")
    events = await raw_stream(mc, {})
    check_grammar(events, complete=False)
    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] == "api_error"
    assert "the model fell over" in data["error"]["message"]
    # and the SDK raises it
    mc.upstream.stream_error("Once upon a time", "the model fell over")
    with pytest.raises(anthropic.APIStatusError) as info:
        await mc.sdk.stream(model="m", messages=USER)
    assert info.value.body["error"]["type"] == "api_error"


async def test_an_upstream_that_rejects_the_key(mc: MCase) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        await mc.sdk.create(model="m-badkey", messages=USER)
    assert info.value.body["error"]["type"] == "authentication_error"


# -- count_tokens ------------------------------------------------------------------------


async def test_count_tokens_counts_system_and_tools(mc: MCase) -> None:
    bare = await mc.sdk.count(model="m", messages=USER)
    full = await mc.sdk.count(model="m", messages=USER, system="Be terse. " * 50, tools=TOOLS)
    assert full > bare > 0
    if mc.kind == "anthropic":
        received = mc.upstream.fake.requests[-1]
        assert received.path == "/v1/messages/count_tokens"
        assert received.body["model"] == mc.upstream.model
        assert full == fa.count_tokens(received.body)
    elif mc.kind == "gemini":
        received = mc.upstream.fake.requests[-1]
        assert received.path.endswith(f"/models/{mc.upstream.model}:countTokens")
        inner = dict(received.body["generateContentRequest"])
        assert inner.pop("model") == f"models/{mc.upstream.model}"
        assert set(inner) >= {"contents", "systemInstruction", "tools"}
        assert full == fg.count_tokens(inner)
    else:
        assert mc.upstream.fake.requests == []  # a local estimate: no upstream call


async def test_count_tokens_with_the_beta_path(mc: MCase) -> None:
    """The SDK's beta namespace, as Claude Code calls it, with ``?beta=true``.

    (This SDK's beta namespace no longer adds the query; Claude Code's does.)
    """
    result = await mc.sdk.run(
        lambda: mc.sdk.client.beta.messages.count_tokens(
            model="m",
            messages=USER,
            betas=["token-counting-2024-11-01"],
            extra_query={"beta": "true"},
        )
    )
    assert result.input_tokens > 0
    if mc.kind == "anthropic":
        received = mc.upstream.fake.requests[-1]
        assert received.query == "beta=true"
        assert received.headers["anthropic-beta"] == "token-counting-2024-11-01"
