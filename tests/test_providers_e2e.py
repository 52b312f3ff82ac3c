"""One end-to-end suite for every provider: the openai SDK -> FeatherGate -> a strict fake.

Each test runs once per provider (``openai``, ``anthropic``, ``gemini``, and
``gemini`` again with an ``api_base`` ending in ``/v1beta``). The bodies are
provider-neutral: they script the fake and read back what it received
through :mod:`tests.support.providers`, and where providers differ on
purpose the expectation comes from the table there (:data:`SUPPORT`).

The fakes are strict: a request they accept is one the real API accepts as far
as they know, so a translation bug shows up as an upstream 400 here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
import trio
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from tests.support.providers import (
    CASES,
    PNG,
    SUPPORT,
    Case,
    ErrorCase,
    Image,
    ImageServer,
    provider_gateway,
)
from tests.support.servers import serve_asgi

USER: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TEXT = "Sunny and mild in Zürich today, 18 °C."
# Non-ASCII arguments: the fakes split them into fragments by character, not by byte.
CALLS = [("get_weather", {"city": "Zürich"}), ("get_time", {"timezone": "Europe/Zurich"})]


def _tool(name: str, prop: str) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


TOOLS: list[Any] = [_tool("get_weather", "city"), _tool("get_time", "timezone")]
NO_ARGUMENTS: list[Any] = [
    {"type": "function", "function": {"name": "get_location", "parameters": {"type": "object"}}}
]


@pytest.fixture(params=CASES)
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    async with provider_gateway(request.param) as served:
        yield served


# -- helpers -----------------------------------------------------------------------------


@dataclass
class Streamed:
    """A stream that kept the §1.3 contract, reassembled."""

    text: str
    tool_calls: list[dict[str, str]]
    finish_reason: str
    usage: CompletionUsage | None
    chunks: list[ChatCompletionChunk] = field(repr=False)


def check_stream(chunks: list[ChatCompletionChunk], *, include_usage: bool) -> Streamed:
    """Assert PROTOCOLS.md §1.3's rules 1-5 and put the answer back together."""
    assert chunks
    assert len({c.id for c in chunks}) == 1
    assert len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {"m"}  # the alias, never the upstream model
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [c for c in chunks if c.choices]
    assert all(len(c.choices) == 1 for c in with_choices)
    assert all(c.choices[0].index == 0 for c in with_choices)
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert len(finishes) == 1
    assert with_choices[-1].choices[0].finish_reason is not None  # nothing after the finish
    if include_usage:
        assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
        assert chunks[-1].choices == []
    else:
        assert all(c.usage is None for c in chunks)
        assert len(with_choices) == len(chunks)  # no usage chunk with empty choices
    calls: dict[int, dict[str, str]] = {}
    for chunk in with_choices:
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.function is not None
            if delta.index not in calls:
                # the first delta of a call names it (rule 3), at the next dense index
                assert delta.index == len(calls)
                assert delta.id
                assert delta.type == "function"
                assert delta.function.name
                calls[delta.index] = {
                    "id": delta.id,
                    "name": delta.function.name,
                    "arguments": delta.function.arguments or "",
                }
            else:
                assert delta.id in (None, calls[delta.index]["id"])
                calls[delta.index]["arguments"] += delta.function.arguments or ""
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    usage = chunks[-1].usage if include_usage else None
    return Streamed(text, [calls[i] for i in sorted(calls)], finishes[0], usage, chunks)


def check_usage(usage: CompletionUsage | None, prompt: int, completion: int) -> None:
    assert usage is not None
    assert usage.prompt_tokens == prompt
    assert usage.completion_tokens == completion
    assert usage.total_tokens == prompt + completion


async def stream_until_error(
    case: Case, **kwargs: Any
) -> tuple[list[ChatCompletionChunk], openai.APIError]:
    """Iterate a stream that must fail; the chunks that came before the error, and the error."""
    received: list[ChatCompletionChunk] = []

    def run() -> None:
        with case.sdk.client.chat.completions.create(stream=True, **kwargs) as stream:
            received.extend(stream)

    with pytest.raises(openai.APIError) as info:
        await trio.to_thread.run_sync(run)
    return received, info.value


def data_uri(png: bytes = PNG) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def with_image(url: str) -> list[Any]:
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]
    return [{"role": "user", "content": parts}]


# -- text --------------------------------------------------------------------------------


async def test_plain_text(case: Case) -> None:
    case.upstream.text(TEXT, usage=(21, 8))
    result = await case.sdk.create(model="m", messages=USER)
    assert result.object == "chat.completion"
    assert result.model == "m"
    assert result.id
    assert len(result.choices) == 1
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == TEXT
    assert result.choices[0].message.tool_calls in (None, [])
    assert result.choices[0].finish_reason == "stop"
    check_usage(result.usage, 21, 8)
    assert case.upstream.paths == [case.upstream.expected_path(stream=False)]
    assert case.upstream.keys == [case.upstream.api_key]
    assert case.upstream.param(case.upstream.last, "model") in (case.upstream.model, None)


@pytest.mark.parametrize("include_usage", [False, True])
async def test_streaming_keeps_the_chunk_contract(case: Case, include_usage: bool) -> None:
    case.upstream.text(TEXT, usage=(21, 8))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    streamed = check_stream(
        await case.sdk.stream(model="m", messages=USER, **options), include_usage=include_usage
    )
    assert streamed.text == TEXT
    assert streamed.finish_reason == "stop"
    assert streamed.tool_calls == []
    if include_usage:
        check_usage(streamed.usage, 21, 8)
    assert len([c for c in streamed.chunks if c.choices and c.choices[0].delta.content]) > 1
    assert case.upstream.paths == [case.upstream.expected_path(stream=True)]


@pytest.mark.parametrize("stream", [False, True])
async def test_length_limited_answer(case: Case, stream: bool) -> None:
    case.upstream.text("Once upon a", finish="length")
    if stream:
        streamed = check_stream(
            await case.sdk.stream(model="m", messages=USER, max_tokens=3), include_usage=False
        )
        assert streamed.text == "Once upon a"
        assert streamed.finish_reason == "length"
    else:
        result = await case.sdk.create(model="m", messages=USER, max_tokens=3)
        assert result.choices[0].message.content == "Once upon a"
        assert result.choices[0].finish_reason == "length"
    assert case.upstream.param(case.upstream.last, "max_tokens") == 3


async def test_system_and_developer_messages(case: Case) -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        *USER,
    ]
    result = await case.sdk.create(model="m", messages=messages)
    assert result.choices[0].finish_reason == "stop"
    assert case.upstream.system_texts(case.upstream.last) == ["Be terse.", "Answer in French."]


async def test_stop_sequences(case: Case) -> None:
    case.upstream.text("One, two", stopped_at="three")
    result = await case.sdk.create(model="m", messages=USER, stop=["three", "END"])
    assert result.choices[0].finish_reason == "stop"
    assert case.upstream.param(case.upstream.last, "stop") == ["three", "END"]


# -- sampling parameters -----------------------------------------------------------------


async def test_temperature_is_sent_or_clamped(case: Case) -> None:
    await case.sdk.create(model="m", messages=USER, temperature=1.7)
    expected = min(1.7, case.supports.max_temperature)
    assert case.upstream.param(case.upstream.last, "temperature") == expected


async def test_max_tokens_is_passed_or_defaulted(case: Case) -> None:
    await case.sdk.create(model="m", messages=USER)
    default = case.upstream.param(case.upstream.last, "max_tokens")
    assert default == case.supports.default_max_tokens
    await case.sdk.create(model="m", messages=USER, max_tokens=64)
    assert case.upstream.param(case.upstream.last, "max_tokens") == 64


async def test_several_choices(case: Case) -> None:
    if case.supports.n:
        await case.sdk.create(model="m", messages=USER, n=2)
        assert case.upstream.param(case.upstream.last, "n") == 2
        return
    with pytest.raises(openai.BadRequestError) as info:
        await case.sdk.create(model="m", messages=USER, n=2)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "n"  # type: ignore[index]
    assert case.upstream.bodies == []  # refused before any upstream call


async def test_unsupported_parameter_is_refused_unless_dropped(case: Case) -> None:
    bias = {"50256": -100}
    if case.supports.logit_bias:
        await case.sdk.create(model="m", messages=USER, logit_bias=bias)
        assert case.upstream.param(case.upstream.last, "logit_bias") == bias
        return
    with pytest.raises(openai.BadRequestError) as info:
        await case.sdk.create(model="m", messages=USER, logit_bias=bias)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "logit_bias"  # type: ignore[index]
    assert "logit_bias" in info.value.body["message"]  # type: ignore[index]
    assert case.upstream.bodies == []
    result = await case.sdk.create(model="m-drop", messages=USER, logit_bias=bias)
    assert result.model == "m-drop"
    assert result.choices[0].finish_reason == "stop"
    assert case.upstream.param(case.upstream.last, "logit_bias") is None


# -- tool calls --------------------------------------------------------------------------


def check_tool_calls(calls: list[dict[str, str]], case: Case) -> None:
    assert [c["name"] for c in calls] == [name for name, _ in CALLS]
    assert [json.loads(c["arguments"]) for c in calls] == [args for _, args in CALLS]
    ids = [c["id"] for c in calls]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    assert case.upstream.tool_names(case.upstream.last) == ["get_weather", "get_time"]


async def test_tool_calls(case: Case) -> None:
    case.upstream.tool_calls(CALLS, text="Let me check.", usage=(30, 12))
    result = await case.sdk.create(model="m", messages=USER, tools=TOOLS)
    message = result.choices[0].message
    assert result.choices[0].finish_reason == "tool_calls"
    assert message.content == "Let me check."
    assert message.tool_calls is not None
    assert all(c.type == "function" for c in message.tool_calls)
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls
        if isinstance(c, openai.types.chat.ChatCompletionMessageToolCall)
    ]
    check_tool_calls(calls, case)
    check_usage(result.usage, 30, 12)


@pytest.mark.parametrize("include_usage", [False, True])
async def test_streamed_tool_calls(case: Case, include_usage: bool) -> None:
    case.upstream.tool_calls(CALLS, usage=(30, 12))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = await case.sdk.stream(model="m", messages=USER, tools=TOOLS, **options)
    streamed = check_stream(chunks, include_usage=include_usage)
    assert streamed.finish_reason == "tool_calls"
    assert streamed.text == ""
    check_tool_calls(streamed.tool_calls, case)
    if include_usage:
        check_usage(streamed.usage, 30, 12)


async def first_turn(case: Case, *, stream: bool) -> tuple[str | None, list[dict[str, str]]]:
    """Ask for the tools; the answer's text and calls, as the client would keep them."""
    if stream:
        chunks = await case.sdk.stream(model="m", messages=USER, tools=TOOLS)
        streamed = check_stream(chunks, include_usage=False)
        return streamed.text or None, streamed.tool_calls
    result = await case.sdk.create(model="m", messages=USER, tools=TOOLS)
    message = result.choices[0].message
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
        if isinstance(c, openai.types.chat.ChatCompletionMessageToolCall)
    ]
    return message.content, calls


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_without_arguments(case: Case, stream: bool) -> None:
    case.upstream.tool_calls([("get_location", {})])
    body = {"model": "m", "messages": USER, "tools": NO_ARGUMENTS}
    if stream:
        calls = check_stream(await case.sdk.stream(**body), include_usage=False).tool_calls
        arguments = [c["arguments"] for c in calls]
    else:
        message = (await case.sdk.create(**body)).choices[0].message
        arguments = [
            c.function.arguments
            for c in message.tool_calls or []
            if isinstance(c, openai.types.chat.ChatCompletionMessageToolCall)
        ]
    assert [json.loads(a) for a in arguments] == [{}]  # "{}", never "" (§4.8.4)


@pytest.mark.parametrize(
    ("stream", "text", "reverse"),
    [
        # content and tool_calls together (§4.8.2), results in call order
        (False, "Let me check.", False),
        # tool_calls only, echoed with content "" as many clients do; results in reverse
        (True, "", True),
    ],
)
async def test_tool_round_trip_is_accepted_upstream(
    case: Case, stream: bool, text: str, reverse: bool
) -> None:
    case.upstream.tool_calls(CALLS, text=text)
    case.upstream.text("18C and noon in Zürich.")
    content, calls = await first_turn(case, stream=stream)
    assert (content or "") == text
    check_tool_calls(calls, case)
    assistant = {
        "role": "assistant",
        "content": content or "",
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls
        ],
    }
    answers = ["18C", "12:00"]
    tool_messages: list[Any] = [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": answers[0]},
        {
            "role": "tool",
            "tool_call_id": calls[1]["id"],
            "content": [{"type": "text", "text": answers[1]}],
        },
    ]
    if reverse:
        tool_messages.reverse()
    # The strict fake answers 400 to a history the real API would refuse.
    result = await case.sdk.create(
        model="m", messages=[*USER, assistant, *tool_messages], tools=TOOLS
    )
    assert result.choices[0].message.content == "18C and noon in Zürich."
    body = case.upstream.last
    sent = case.upstream.tool_calls_sent(body)
    assert [(c.name, c.args) for c in sent] == CALLS
    assert sent[0].signature == case.upstream.signature  # Gemini 3: re-attached from the id
    results = case.upstream.tool_results_sent(body)
    assert len(results) == len(sent)
    # paired by id, or by name where the protocol has no ids (Gemini)
    expected = {c.id or c.name: answer for c, answer in zip(sent, answers, strict=True)}
    assert {r.id or r.name: r.content for r in results} == expected


# -- images ------------------------------------------------------------------------------


async def test_data_uri_image(case: Case) -> None:
    uri = data_uri()
    result = await case.sdk.create(model="m", messages=with_image(uri))
    assert result.choices[0].finish_reason == "stop"
    images = case.upstream.images(case.upstream.last)
    if case.supports.data_images == "pass":
        assert images == [Image("pass", uri)]
    else:
        assert images == [Image("inline", base64.b64encode(PNG).decode(), "image/png")]


async def test_remote_image(case: Case) -> None:
    server = ImageServer()
    async with serve_asgi(server) as url:
        image_url = f"{url}/cat.png"
        result = await case.sdk.create(model="m", messages=with_image(image_url))
    assert result.choices[0].finish_reason == "stop"
    images = case.upstream.images(case.upstream.last)
    mode = case.supports.remote_images
    if mode == "inline":  # downloaded by the gateway, sent as inlineData
        assert images == [Image("inline", base64.b64encode(PNG).decode(), "image/png")]
        assert server.hits == ["/cat.png"]
    else:  # the upstream fetches it itself
        assert images == [Image(mode, image_url)]
        assert server.hits == []


# -- errors ------------------------------------------------------------------------------


async def test_upstream_rejecting_the_key_is_an_authentication_error(case: Case) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await case.sdk.create(model="m-badkey", messages=USER)
    assert info.value.status_code == 401  # Gemini's own answer was a 400 API_KEY_INVALID
    assert case.upstream.keys == ["sk-wrong"]
    result = await case.sdk.create(model="m", messages=USER)
    assert result.choices[0].finish_reason == "stop"


ERROR_CASES = [
    pytest.param(name, error, id=f"{name}-{error}")
    for name in CASES
    for error in SUPPORT[name.partition("-")[0]].errors
]


@pytest.mark.parametrize(("case", "error"), ERROR_CASES, indirect=["case"])
async def test_upstream_error_statuses(case: Case, error: ErrorCase) -> None:
    retry_after = "7" if error.upstream == 429 else None
    case.upstream.http_error(error.upstream, retry_after=retry_after)
    with pytest.raises(openai.APIStatusError) as info:
        await case.sdk.create(model="m", messages=USER)
    assert type(info.value) is error.exception
    assert info.value.status_code == error.status
    body = info.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == error.error_type
    assert f"upstream says {error.upstream}" in body["error"]["message"]
    if retry_after is not None:
        assert info.value.response.headers["retry-after"] == retry_after
    if error.status == 429 or error.status >= 500:  # nothing tells the SDK not to retry
        assert info.value.response.headers.get("x-should-retry") != "false"
    case.upstream.text("Back again.")
    result = await case.sdk.create(model="m", messages=USER)
    assert result.choices[0].message.content == "Back again."


async def test_error_before_the_stream_starts_keeps_its_status(case: Case) -> None:
    case.upstream.http_error(429, retry_after="7")
    with pytest.raises(openai.RateLimitError) as info:
        await case.sdk.stream(model="m", messages=USER)
    assert info.value.response.headers["retry-after"] == "7"
    assert case.upstream.paths == [case.upstream.expected_path(stream=True)]


async def test_error_inside_the_stream(case: Case) -> None:
    case.upstream.stream_error("Once upon a time", "the model fell over")
    chunks, error = await stream_until_error(case, model="m", messages=USER)
    assert not isinstance(error, openai.APIStatusError)  # it came after the 200
    assert "the model fell over" in error.message
    assert chunks
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Once")
    assert all(c.choices[0].finish_reason is None for c in chunks)
    case.upstream.text("Still here.")
    streamed = check_stream(await case.sdk.stream(model="m", messages=USER), include_usage=False)
    assert streamed.text == "Still here."
