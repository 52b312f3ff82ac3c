"""Structured output through Anthropic: the openai SDK's ``parse()`` gets valid JSON.

Issue #15, part 5. ``response_format`` becomes the ``json_tool_call`` tool;
with ``reasoning_effort`` (thinking) it cannot be forced, and Claude often
writes a sentence before calling it. That sentence used to be joined to the
JSON (``"I'll look that up.{\\"city\\": ...}"``), and ``parse()`` failed, as
do LangChain's and instructor's structured output, which parse the same
content. Here the strict fake replays such a turn (thinking, text, the tool
call) to the real SDK, through FeatherGate under Hypercorn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio
from pydantic import BaseModel

from feathergate.providers.anthropic.tools import JSON_TOOL_NAME
from tests.fakes.anthropic import FakeAnthropic, Reply, Text, Thinking, ToolUse
from tests.support.providers import AnthropicUpstream, Case, provider_gateway

MESSAGES: list[Any] = [{"role": "user", "content": "Paris, as JSON: city and population."}]


class City(BaseModel):
    city: str
    population: int


PARIS = City(city="Paris", population=2102650)
TURN = Reply(
    [
        Thinking("The user wants structured data; the JSON tool is the way to answer."),
        Text("I'll look that up."),
        ToolUse(JSON_TOOL_NAME, PARIS.model_dump()),
    ]
)


@pytest.fixture
async def case() -> AsyncIterator[Case]:
    async with provider_gateway("anthropic") as served:
        yield served


def fake(case: Case) -> FakeAnthropic:
    assert isinstance(case.upstream, AnthropicUpstream)
    return case.upstream.fake


def assert_sent_unforced(received: Any) -> None:
    """What reached Anthropic: thinking on, the JSON tool declared but not forced."""
    assert received.status == 200, received.rejection
    body = received.body
    assert body["thinking"]["type"] == "enabled"
    assert [t["name"] for t in body["tools"]] == [JSON_TOOL_NAME]
    assert "tool_choice" not in body


@pytest.mark.parametrize("beta", [False, True], ids=["parse", "beta.parse"])
async def test_parse_with_reasoning_gets_the_model_not_the_preamble(case: Case, beta: bool) -> None:
    fake(case).script(TURN)
    completions = (
        case.sdk.client.beta.chat.completions if beta else case.sdk.client.chat.completions
    )
    call = partial(
        completions.parse,
        model="m",
        messages=MESSAGES,
        response_format=City,
        reasoning_effort="low",
    )
    completion = await trio.to_thread.run_sync(call)
    message = completion.choices[0].message
    assert message.parsed == PARIS
    assert json.loads(message.content or "") == PARIS.model_dump()
    assert completion.choices[0].finish_reason == "stop"
    assert_sent_unforced(fake(case).last)


async def test_streamed_parse_with_reasoning_gets_the_model_not_the_preamble(case: Case) -> None:
    fake(case).script(TURN)

    def run() -> tuple[Any, list[str]]:
        contents = []
        with case.sdk.client.chat.completions.stream(
            model="m", messages=MESSAGES, response_format=City, reasoning_effort="low"
        ) as stream:
            for event in stream:
                if event.type == "content.delta":
                    contents.append(event.delta)
            return stream.get_final_completion(), contents

    completion, deltas = await trio.to_thread.run_sync(run)
    assert completion.choices[0].message.parsed == PARIS
    assert json.loads("".join(deltas)) == PARIS.model_dump()  # no text before or after
    assert completion.choices[0].finish_reason == "stop"
    assert_sent_unforced(fake(case).last)


@pytest.mark.parametrize("stream", [False, True])
async def test_json_mode_without_the_tool_call_passes_the_text_through(
    case: Case, stream: bool
) -> None:
    """The model may answer in text instead: that text is the content, unchanged."""
    answer = '{"city": "Paris", "population": 2102650}'
    fake(case).script(Reply([Thinking("Plain JSON will do."), Text(answer, chunk=5)]))
    params: dict[str, Any] = {
        "model": "m",
        "messages": MESSAGES,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
    }
    if stream:
        chunks = await case.sdk.stream(**params)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        completion = await case.sdk.create(**params)
        content = completion.choices[0].message.content or ""
    assert content == answer
    assert_sent_unforced(fake(case).last)
