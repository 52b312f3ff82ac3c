"""Chunks that arrive in the same read as an in-stream error still reach the client, before it."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.test_openai_e2e import MESSAGES, config_for

FIRST = {
    "id": "x",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-real",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
}
ERROR = {"error": {"message": "the model fell over", "type": "server_error", "code": None}}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def test_a_chunk_and_an_error_in_one_read_are_both_relayed(
    openai_upstream: tuple[FakeOpenAI, str],
) -> None:
    fake, upstream = openai_upstream
    fake.script(Reply(raw=[_event(FIRST) + _event(ERROR)]))  # one write, one read
    async with (
        run_gateway(config_for(upstream)) as base,
        httpx.AsyncClient(timeout=30) as client,
    ):
        body = {"model": "my-gpt", "messages": MESSAGES, "stream": True}
        response = await client.post(f"{base}/v1/chat/completions", json=body)
    assert response.status_code == 200  # the chunk went out: the error is in the stream
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line[6:7] == "{"]
    assert events[0]["choices"][0]["delta"]["content"] == "Hi"
    assert events[0]["model"] == "my-gpt"
    assert "the model fell over" in events[-1]["error"]["message"]
    assert len(events) == 2


async def test_the_same_through_the_messages_api(
    openai_upstream: tuple[FakeOpenAI, str],
) -> None:
    # /v1/messages in front of an OpenAI upstream: the chunk is translated to
    # Anthropic's events, which go out before the error event.
    fake, upstream = openai_upstream
    fake.script(Reply(raw=[_event(FIRST) + _event(ERROR)]))
    async with (
        run_gateway(config_for(upstream)) as base,
        httpx.AsyncClient(timeout=30) as client,
    ):
        body = {"model": "my-gpt", "max_tokens": 64, "messages": MESSAGES, "stream": True}
        response = await client.post(f"{base}/v1/messages", json=body)
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line[6:7] == "{"]
    kinds = [e["type"] for e in events]
    delta = kinds.index("content_block_delta")
    assert events[delta]["delta"]["text"] == "Hi"
    assert kinds[-1] == "error"
    assert "the model fell over" in events[-1]["error"]["message"]
    assert delta < len(kinds) - 1
