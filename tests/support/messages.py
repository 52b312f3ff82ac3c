"""The Messages API front door under test: the official anthropic SDK, raw frames, the grammar.

:class:`AnthropicSDK` runs the synchronous ``anthropic`` client in a worker
thread (as :class:`tests.support.sdk.SDK` does for openai). :func:`frames`
splits a raw SSE body into ``(event, data)`` frames and fails on a frame
without its ``event:`` line; :func:`check_grammar` asserts the event grammar
the anthropic SDK and Claude Code rely on (INGRESS.md §4.4) and returns the
message the events assemble to, so a test can compare it with the
non-streamed answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anthropic
import httpx
import trio
from anthropic.types import Message

__all__ = ["AnthropicSDK", "Frame", "check_grammar", "frames", "raw_post"]

T = TypeVar("T")
Frame = tuple[str, dict[str, Any]]

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_DELTA_FOR = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}
_STOP_REASONS = {
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
}


class AnthropicSDK:
    def __init__(self, base: str, api_key: str = "anything", **options: Any) -> None:
        self.client = anthropic.Anthropic(base_url=base, api_key=api_key, max_retries=0, **options)

    async def run(self, call: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(call)

    async def create(self, **kwargs: Any) -> Message:
        kwargs.setdefault("max_tokens", 256)
        result: Message = await self.run(partial(self.client.messages.create, **kwargs))
        return result

    async def stream(self, **kwargs: Any) -> tuple[list[str], Message]:
        """The event types the SDK yielded, and the message it assembled."""
        kwargs.setdefault("max_tokens", 256)

        def run() -> tuple[list[str], Message]:
            with self.client.messages.stream(**kwargs) as stream:
                kinds = [event.type for event in stream]
                return kinds, stream.get_final_message()

        return await self.run(run)

    async def count(self, **kwargs: Any) -> int:
        result = await self.run(partial(self.client.messages.count_tokens, **kwargs))
        return int(result.input_tokens)

    def close(self) -> None:
        self.client.close()


async def raw_post(
    base: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post(
            path, content=content, headers={"content-type": "application/json", **(headers or {})}
        )


def frames(raw: bytes) -> list[Frame]:
    """SSE frames of a Messages stream; every frame must name its event and match its data."""
    out: list[Frame] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: "), f"a frame without its event line: {block!r}"
        assert len(lines) == 2, block
        assert lines[1].startswith("data: "), block
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        assert data.get("type") == name, f"event {name!r} carries a {data.get('type')!r}"
        out.append((name, data))
    assert raw.endswith(b"\n\n"), "the stream ends in the middle of a frame"
    return out


def check_grammar(events: list[Frame], *, complete: bool = True) -> dict[str, Any]:
    """Assert the Messages stream grammar; return the message the events build.

    ``complete=False``: the stream may end with an ``error`` event instead of
    ``message_stop`` (after which nothing may follow).
    """
    assert events, "an empty stream"
    assert events[0][0] == "message_start", f"{events[0][0]} before message_start"
    message = dict(events[0][1]["message"])
    assert message["content"] == []
    assert message["stop_reason"] is None
    message["content"] = []
    open_index: int | None = None
    kinds: list[str] = []
    json_parts: dict[int, str] = {}
    state = "blocks"  # then "delta" (after message_delta), then "stopped"
    for position, (name, data) in enumerate(events[1:], start=1):
        assert state != "stopped", f"{name} after message_stop"
        if name == "ping":
            continue
        if name == "error":
            assert not complete, f"an error event: {data}"
            assert position == len(events) - 1, "events after the error event"
            assert set(data["error"]) >= {"type", "message"}
            return message
        if name == "content_block_start":
            assert state == "blocks", f"{name} after message_delta"
            assert open_index is None, "a block opened inside another"
            assert data["index"] == len(kinds), f"block index {data['index']}, not {len(kinds)}"
            block = dict(data["content_block"])
            kinds.append(block["type"])
            if block["type"] == "tool_use":
                assert _TOOL_ID.fullmatch(block["id"]), block["id"]
                assert block["input"] == {}
                json_parts[data["index"]] = ""
            message["content"].append(block)
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, "a delta for a block that is not open"
            delta = data["delta"]
            kind = kinds[open_index]
            if delta["type"] != "signature_delta":
                assert delta["type"] == _DELTA_FOR[kind], f"{delta['type']} in a {kind} block"
            block = message["content"][open_index]
            if delta["type"] == "text_delta":
                assert delta["text"], "an empty text_delta"
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                assert delta["thinking"], "an empty thinking_delta"
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                assert kind == "thinking"
                block["signature"] = delta["signature"]
            else:
                json_parts[open_index] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index, "a stop for a block that is not open"
            if kinds[open_index] == "tool_use":
                text = json_parts[open_index]
                message["content"][open_index]["input"] = json.loads(text) if text else {}
            open_index = None
        elif name == "message_delta":
            assert state == "blocks", "a second message_delta"
            assert open_index is None, "message_delta with a block open"
            assert data["delta"]["stop_reason"] in _STOP_REASONS, data["delta"]
            assert isinstance(data["usage"]["output_tokens"], int)
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
            state = "delta"
        elif name == "message_stop":
            assert state == "delta", "message_stop without message_delta"
            state = "stopped"
        else:
            raise AssertionError(f"unknown event {name}")
    if complete:
        assert state == "stopped", "the stream ended without message_stop"
    return message
