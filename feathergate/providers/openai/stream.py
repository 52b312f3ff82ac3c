"""Relay of an OpenAI-compatible SSE stream: the alias restored, the contract kept.

Upstreams differ in small ways that break clients (PROTOCOLS.md §5): Azure
may open with a chunk whose ``choices`` is empty, and some servers send a
usage chunk the client did not ask for. Those are dropped here; everything
else passes through untouched apart from ``model``.
"""

from __future__ import annotations

import json
from typing import Any

from feathergate.errors import UpstreamProtocolError
from feathergate.providers.base import CallContext, Chunk
from feathergate.providers.openai.errors import map_openai_error
from feathergate.sse import SSEEvent

__all__ = ["OpenAIStreamTranslator"]


class OpenAIStreamTranslator:
    __slots__ = ("_alias", "_done", "_finished", "_include_usage")

    def __init__(self, ctx: CallContext) -> None:
        self._alias = ctx.alias
        self._include_usage = ctx.include_usage
        self._done = False
        self._finished = False

    def feed(self, event: SSEEvent) -> list[Chunk]:
        data = event.data
        if data == "[DONE]":
            self._done = True
            return []
        if self._done or not data:
            return []
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise UpstreamProtocolError(
                f"upstream sent a malformed stream event: {data[:200]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream sent a stream event that is not an object")
        if "error" in chunk:
            status = chunk["error"].get("code") if isinstance(chunk["error"], dict) else None
            raise map_openai_error(
                status if isinstance(status, int) and status >= 400 else 500, {}, data.encode()
            )
        try:
            return self._relay(chunk)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # `"choices": [1]` and the like: the client's SDK could not read it either.
            raise UpstreamProtocolError(f"upstream sent a malformed chunk: {data[:200]!r}") from exc

    def _relay(self, chunk: dict[str, Any]) -> list[Chunk]:
        choices = chunk.get("choices")
        if not choices:
            if chunk.get("usage") is None or not self._include_usage:
                return []
        else:
            for choice in choices:
                if choice.get("finish_reason"):
                    self._finished = True
        chunk["model"] = self._alias
        return [chunk]

    def finish(self) -> list[Chunk]:
        if not (self._done or self._finished):
            raise UpstreamProtocolError("upstream stream ended before it was complete")
        return []
