"""Gemini ``streamGenerateContent?alt=sse`` events -> OpenAI chunks (PROTOCOLS.md §4.6).

Every event is a whole ``GenerateContentResponse`` holding only the new
parts, so the translator keeps little: per choice, whether its role chunk
went out, how many tool calls it has numbered (the OpenAI index is dense per
choice, §1.3 rule 3), whether one was a tool call (``STOP`` then means
``tool_calls``) and whether it finished; for the whole stream, the last
``usageMetadata`` (Gemini repeats cumulative counts on every chunk).

Parts after a choice's ``finishReason`` are dropped: an OpenAI choice ends
with its one finish chunk (§1.3 rule 4). Gemini may put the reason on a chunk
with ``text: ""`` or no content at all; both are just a finish.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feathergate.errors import UpstreamProtocolError
from feathergate.providers.base import CallContext, Chunk
from feathergate.providers.chunks import ChunkFactory
from feathergate.providers.gemini.response import (
    choice_index,
    error_from_payload,
    finish_reason,
    logprobs_of,
    pieces,
    usage_of,
)
from feathergate.sse import SSEEvent

__all__ = ["GeminiStreamTranslator"]


@dataclass(slots=True)
class _Choice:
    tools: int = 0
    finished: bool = False


class GeminiStreamTranslator:
    __slots__ = ("_choices", "_chunks", "_events", "_include_usage", "_seed", "_usage")

    def __init__(self, ctx: CallContext) -> None:
        self._chunks = ChunkFactory(ctx)
        self._include_usage = ctx.include_usage
        self._seed = ctx.completion_id  # replaced by the first responseId
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        self._events = 0

    def feed(self, event: SSEEvent) -> list[Chunk]:
        data = event.data.strip()
        if not data or data == "[DONE]":
            return []
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            raise UpstreamProtocolError("gemini sent a stream event that is not JSON") from None
        out: list[Chunk] = []
        for item in payload if isinstance(payload, list) else [payload]:
            try:
                out.extend(self._response(item))
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise UpstreamProtocolError(
                    f"gemini sent a malformed stream event: {data[:200]!r}"
                ) from exc
        return out

    def finish(self) -> list[Chunk]:
        if not self._events:
            raise UpstreamProtocolError("gemini stream ended before any response")
        out: list[Chunk] = []
        if not self._choices:
            out.extend(self._start(0))
        for index in sorted(self._choices):
            choice = self._choices[index]
            if not choice.finished:
                choice.finished = True
                reason = finish_reason(None, choice.tools > 0)
                out.append(self._chunks.delta({}, index=index, finish_reason=reason))
        if self._include_usage:
            out.append(self._chunks.usage(usage_of(self._usage)))
        return out

    def _response(self, item: Any) -> list[Chunk]:
        if not isinstance(item, Mapping):
            raise UpstreamProtocolError("gemini sent a stream event that is not an object")
        if isinstance(item.get("error"), Mapping):
            raise error_from_payload(None, item["error"], {})
        if not self._events and isinstance(item.get("responseId"), str) and item["responseId"]:
            self._seed = item["responseId"]
        self._events += 1
        if isinstance(item.get("usageMetadata"), Mapping):
            self._usage = item["usageMetadata"]
        out: list[Chunk] = []
        candidates = item.get("candidates")
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else []):
            if isinstance(candidate, Mapping):
                out.extend(self._candidate(candidate, choice_index(candidate, position)))
        feedback = item.get("promptFeedback")
        if not candidates and isinstance(feedback, Mapping) and feedback.get("blockReason"):
            out.extend(self._start(0))
            if not self._choices[0].finished:
                self._choices[0].finished = True
                out.append(self._chunks.delta({}, index=0, finish_reason="content_filter"))
        return out

    def _start(self, index: int) -> list[Chunk]:
        if index in self._choices:
            return []
        self._choices[index] = _Choice()
        return [self._chunks.delta({"role": "assistant", "content": ""}, index=index)]

    def _candidate(self, candidate: Mapping[str, Any], index: int) -> list[Chunk]:
        out = self._start(index)
        choice = self._choices[index]
        if choice.finished:
            return out
        logprobs = logprobs_of(candidate)
        for piece in pieces(candidate, self._seed, index, choice.tools):
            delta: dict[str, Any]
            if piece.kind == "tool":
                delta = {"tool_calls": [{"index": choice.tools, **piece.tool_call}]}
                choice.tools += 1
            elif piece.kind == "reasoning":
                delta = {"reasoning_content": piece.text}
            else:
                delta = {"content": piece.text}
            chunk = self._chunks.delta(delta, index=index)
            if logprobs is not None and piece.kind == "content":
                chunk["choices"][0]["logprobs"], logprobs = logprobs, None
            out.append(chunk)
        reason = candidate.get("finishReason")
        if reason:
            choice.finished = True
            mapped = finish_reason(reason, choice.tools > 0)
            out.append(self._chunks.delta({}, index=index, finish_reason=mapped))
        return out
