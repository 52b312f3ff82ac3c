"""Chat Completions chunks -> Messages API stream events, in the exact grammar.

Synchronous and pure: the relay feeds it the chunks a provider's stream
translator produced. What it guarantees (INGRESS.md §4.4, the rules the
anthropic SDK and Claude Code enforce):

1. Every frame has its ``event:`` line; ``message_start`` comes first.
2. Blocks are numbered 0, 1, 2 ... in the order they open; each is opened by
   a ``content_block_start`` of its own type before any delta, takes only
   deltas of its type (``thinking_delta``, ``text_delta``,
   ``input_json_delta``), and is closed by ``content_block_stop`` before the
   next one opens. One block stays open across many deltas: a new block
   starts only when the kind changes or a new tool call begins.
3. One chunk may carry reasoning, text and tool calls: they are emitted in
   that order. Empty deltas open nothing.
4. Tool calls are keyed by their Chat ``index`` and ``id``: a new non-empty
   id is a new block even when the index repeats (Gemini's OpenAI endpoint
   does that, §4.8.5), and arguments of two calls are never joined.
5. The finish reason is held until the end, where ``message_delta`` carries
   ``stop_reason`` and the cumulative usage (after the usage chunk), then
   ``message_stop``; nothing follows. The relay calls :meth:`finish` only for
   a stream that ended properly; a cut one ends with the error event instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feathergate.errors import UpstreamProtocolError
from feathergate.ingress.anthropic.answers import message_usage, stop_reason
from feathergate.ingress.anthropic.to_message import tool_use_id
from feathergate.providers.base import Usage, usage_of

__all__ = ["MessagesEncoder", "event"]

Chunk = dict[str, Any]

_STARTS = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}


def event(name: str, data: Mapping[str, Any]) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


@dataclass(slots=True)
class _Call:
    upstream_id: str | None
    block: int


class MessagesEncoder:
    __slots__ = (
        "_alias",
        "_calls",
        "_finish",
        "_kind",
        "_matched",
        "_message_id",
        "_names",
        "_next",
        "_open",
        "_saw_tool",
        "_started",
        "_stops",
        "_usage",
        "tokens",
    )

    def __init__(
        self, *, message_id: str, alias: str, names: Mapping[str, str], stops: tuple[str, ...]
    ) -> None:
        self._message_id = message_id
        self._alias = alias
        self._names = names
        self._stops = stops
        self._started = False
        self._next = 0  # the index the next block gets
        self._open: int | None = None  # the open block's index
        self._kind = ""  # and its kind: text, thinking or tool
        self._calls: dict[Any, _Call] = {}
        self._saw_tool = False
        self._finish: Any = None
        self._matched: Any = None
        self._usage: Any = None
        self.tokens: Usage | None = None

    def encode(self, chunks: list[Chunk]) -> bytes:
        out: list[bytes] = []
        for chunk in chunks:
            self._chunk(chunk, out)
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        self._start(out)
        self._close(out)
        reason, sequence = stop_reason(
            self._finish, saw_tool=self._saw_tool, matched=self._matched, stops=self._stops
        )
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        usage = message_usage(self._usage)
        data = {"type": "message_delta", "delta": delta, "usage": usage}
        out.append(event("message_delta", data))
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    # -- one chunk ------------------------------------------------------------------------
    def _chunk(self, chunk: Chunk, out: list[bytes]) -> None:
        self._start(out)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
            self.tokens = usage_of(usage) or self.tokens
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue  # the Messages API has one answer; n is never sent upstream
            if self._finish is not None:
                continue  # nothing after the finish reason (§1.3 rule 4)
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                self._delta(delta, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")
                self._close(out)

    def _delta(self, delta: Mapping[str, Any], out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._block("thinking", out)
            self._delta_event({"type": "thinking_delta", "thinking": reasoning}, out)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._block("text", out)
            self._delta_event({"type": "text_delta", "text": content}, out)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, Mapping):
                self._tool_call(call, out)

    def _tool_call(self, call: Mapping[str, Any], out: list[bytes]) -> None:
        key = call.get("index", 0)
        upstream_id = call.get("id") if isinstance(call.get("id"), str) else None
        found = call.get("function")
        function: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        known = self._calls.get(key)
        if known is None or (upstream_id and upstream_id != known.upstream_id):
            self._close(out)
            name = str(function.get("name") or "")
            block = {
                "type": "tool_use",
                "id": tool_use_id(upstream_id, self._message_id, self._next),
                "name": self._names.get(name, name),
                "input": {},
            }
            known = self._calls[key] = _Call(upstream_id, self._next)
            self._open_block("tool", block, out)
            self._saw_tool = True
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            if known.block != self._open:
                raise UpstreamProtocolError(
                    "upstream sent arguments for a tool call after the next one had started"
                )
            self._delta_event({"type": "input_json_delta", "partial_json": arguments}, out)

    # -- blocks ---------------------------------------------------------------------------
    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        usage = {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._alias,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        out.append(event("message_start", {"type": "message_start", "message": message}))

    def _block(self, kind: str, out: list[bytes]) -> None:
        if self._open is not None and self._kind == kind:
            return
        self._close(out)
        self._open_block(kind, _STARTS[kind], out)

    def _open_block(self, kind: str, block: Mapping[str, Any], out: list[bytes]) -> None:
        index = self._next
        self._next += 1
        self._open, self._kind = index, kind
        data = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(event("content_block_start", data))

    def _delta_event(self, delta: Mapping[str, Any], out: list[bytes]) -> None:
        data = {"type": "content_block_delta", "index": self._open, "delta": delta}
        out.append(event("content_block_delta", data))

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        out.append(event("content_block_stop", {"type": "content_block_stop", "index": self._open}))
        self._open, self._kind = None, ""
