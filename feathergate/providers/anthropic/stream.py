"""Anthropic stream events -> OpenAI chunks: the state machine of PROTOCOLS.md §4.5.

Synchronous and pure; the relay feeds whole SSE events. Points that matter:

- OpenAI tool indexes are counted here, dense from 0 in order of appearance,
  and never copied from Anthropic's block ``index``, which counts every block
  (§4.8.1).
- A tool call whose arguments never arrived gets ``"{}"`` at its
  ``content_block_stop``, so the client's concatenation is valid JSON.
- The ``response_format`` tool's arguments stream as ``content`` (§4.5, last
  paragraph), and a turn that called only that tool finishes with ``stop``.
  That content must be the JSON alone: with thinking on the tool is not
  forced, and Claude may write text first ("I'll look that up."). So in
  JSON mode (``ctx.json_mode``) text is held back until the turn shows what
  it is: dropped when the tool is called, sent just before the finish when
  the turn ends without it (then the text is the answer, JSON or not: the
  model chose not to call the tool, and the client sees what it wrote).
  Reasoning still streams as it comes.
- The single ``finish_reason`` chunk, and the usage chunk when asked for, go
  out at ``message_stop``: only a complete stream claims to be finished. A
  stream that ends without one fails in :meth:`finish`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from feathergate.errors import UpstreamProtocolError
from feathergate.providers.anthropic.response import (
    arguments_json,
    error_from_event,
    finish_reason,
    translate_usage,
)
from feathergate.providers.anthropic.tools import JSON_TOOL_NAME
from feathergate.providers.base import CallContext, Chunk
from feathergate.providers.chunks import ChunkFactory
from feathergate.sse import SSEEvent

__all__ = ["AnthropicStreamTranslator"]


class BlockKind(Enum):
    TEXT = "text"
    THINKING = "thinking"
    TOOL = "tool"
    JSON = "json"  # the response_format tool: arguments become content
    OTHER = "other"  # redacted thinking, server tools, future types: nothing to send


@dataclass(slots=True)
class _Block:
    kind: BlockKind
    tool_index: int = -1
    has_arguments: bool = False


class AnthropicStreamTranslator:
    __slots__ = (
        "_answered",
        "_blocks",
        "_chunks",
        "_held",
        "_include_usage",
        "_json_mode",
        "_started",
        "_stop_reason",
        "_stopped",
        "_tools",
        "_usage",
    )

    def __init__(self, ctx: CallContext) -> None:
        self._chunks = ChunkFactory(ctx)
        self._include_usage = ctx.include_usage
        self._json_mode = ctx.json_mode
        self._held: list[str] = []  # JSON mode: text not yet known to be the answer
        self._answered = False  # the response_format tool was called
        self._started = False
        self._stopped = False
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._stop_reason: Any = None
        self._usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> list[Chunk]:
        if self._stopped or event.event == "ping":
            return []
        try:
            data = json.loads(event.data)
        except (ValueError, RecursionError):
            raise UpstreamProtocolError(
                f"anthropic sent a malformed stream event: {event.data[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError("anthropic sent a stream event that is not an object")
        kind = data.get("type", event.event)
        if kind == "error":
            raise error_from_event(data)
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []  # ping and event types newer than this code
        try:
            return handler(self, data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UpstreamProtocolError(f"anthropic sent a malformed {kind} event") from exc

    def finish(self) -> list[Chunk]:
        if not self._stopped:
            raise UpstreamProtocolError("anthropic stream ended before message_stop")
        return []

    # -- events ---------------------------------------------------------------
    def _start(self) -> list[Chunk]:
        if self._started:
            return []
        self._started = True
        return [self._chunks.delta({"role": "assistant", "content": ""})]

    def _message_start(self, data: dict[str, Any]) -> list[Chunk]:
        self._usage.update(data["message"].get("usage") or {})
        return self._start()

    def _block_start(self, data: dict[str, Any]) -> list[Chunk]:
        out = self._start()
        block = data["content_block"]
        kind = block["type"]
        index = int(data["index"])
        if kind == "text":
            self._blocks[index] = _Block(BlockKind.TEXT)
            if block.get("text"):
                out.extend(self._text(block["text"]))
        elif kind == "thinking":
            self._blocks[index] = _Block(BlockKind.THINKING)
            if block.get("thinking"):
                out.append(self._chunks.delta({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL_NAME and self._answered:
            self._blocks[index] = _Block(BlockKind.OTHER)  # joined to the first: not JSON
        elif kind == "tool_use" and block.get("name") == JSON_TOOL_NAME:
            self._answered = True
            self._held.clear()
            self._blocks[index] = state = _Block(BlockKind.JSON)
            if block.get("input"):
                state.has_arguments = True
                out.append(self._chunks.delta({"content": arguments_json(block["input"])}))
        elif kind == "tool_use":
            self._blocks[index] = state = _Block(BlockKind.TOOL, tool_index=self._tools)
            self._tools += 1
            function = {"name": str(block["name"]), "arguments": ""}
            call = {"index": state.tool_index, "id": str(block["id"]), "type": "function"}
            out.append(self._chunks.delta({"tool_calls": [{**call, "function": function}]}))
            if block.get("input"):
                out.extend(self._arguments(state, arguments_json(block["input"])))
        else:
            self._blocks[index] = _Block(BlockKind.OTHER)
        return out

    def _block_delta(self, data: dict[str, Any]) -> list[Chunk]:
        state = self._block(data)
        delta = data["delta"]
        kind = delta.get("type")
        if kind == "text_delta" and delta["text"]:
            return self._text(delta["text"])
        if kind == "thinking_delta" and delta["thinking"]:
            return [self._chunks.delta({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta":
            return self._arguments(state, delta["partial_json"])
        return []  # signature_delta, citations_delta and newer kinds

    def _block_stop(self, data: dict[str, Any]) -> list[Chunk]:
        state = self._block(data)
        if state.kind in (BlockKind.TOOL, BlockKind.JSON) and not state.has_arguments:
            return self._arguments(state, "{}")
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[Chunk]:
        # Usage here is cumulative (§2.4): the last value wins, input fields included.
        self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        self._stop_reason = data["delta"].get("stop_reason")
        return []

    def _message_stop(self, data: dict[str, Any]) -> list[Chunk]:
        out = self._start()
        self._stopped = True
        if self._held:  # JSON mode, and the tool was never called: the text is the answer
            out.append(self._chunks.delta({"content": "".join(self._held)}))
        reason = finish_reason(self._stop_reason, saw_tool=self._tools > 0)
        out.append(self._chunks.delta({}, finish_reason=reason))
        if self._include_usage:
            out.append(self._chunks.usage(translate_usage(self._usage)))
        return out

    # -- helpers --------------------------------------------------------------
    def _text(self, text: str) -> list[Chunk]:
        if not self._json_mode:
            return [self._chunks.delta({"content": text})]
        if not self._answered:
            self._held.append(text)
        return []

    def _block(self, data: dict[str, Any]) -> _Block:
        state = self._blocks.get(int(data["index"]))
        if state is None:
            raise UpstreamProtocolError(f"anthropic sent block {data['index']} before its start")
        return state

    def _arguments(self, state: _Block, fragment: str) -> list[Chunk]:
        if not fragment or state.kind not in (BlockKind.TOOL, BlockKind.JSON):
            return []
        state.has_arguments = True
        if state.kind is BlockKind.JSON:
            return [self._chunks.delta({"content": fragment})]
        call = {"index": state.tool_index, "function": {"arguments": fragment}}
        return [self._chunks.delta({"tool_calls": [call]})]


_HANDLERS = {
    "message_start": AnthropicStreamTranslator._message_start,
    "content_block_start": AnthropicStreamTranslator._block_start,
    "content_block_delta": AnthropicStreamTranslator._block_delta,
    "content_block_stop": AnthropicStreamTranslator._block_stop,
    "message_delta": AnthropicStreamTranslator._message_delta,
    "message_stop": AnthropicStreamTranslator._message_stop,
}
