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


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


class OpenAIStreamTranslator:
    __slots__ = ("_alias", "_done", "_finished", "_include_usage")

    def __init__(self, ctx: CallContext) -> None:
        self._alias = ctx.alias
        self._include_usage = ctx.include_usage
        self._done = False
        self._finished = False

    def feed(self, event: SSEEvent) -> list[Chunk]:
        chunk = self.admit(event.data)
        if chunk is None:
            return []
        chunk["model"] = self._alias
        return [chunk]

    def admit(self, data: str | bytes) -> Chunk | None:
        """The chunk of one event's data if the client gets it (``model`` not yet set), else None.

        Takes the data as bytes too: the passthrough pipe (``pipe.py``) hands
        its ``data:`` lines over undecoded.
        """
        if data == "[DONE]" or data == b"[DONE]":
            self._done = True
            return None
        if self._done or not data:
            return None
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise UpstreamProtocolError(
                f"upstream sent a malformed stream event: {_text(data)[:200]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream sent a stream event that is not an object")
        if "error" in chunk:
            status = chunk["error"].get("code") if isinstance(chunk["error"], dict) else None
            raise map_openai_error(
                status if isinstance(status, int) and status >= 400 else 500,
                {},
                data if isinstance(data, bytes) else data.encode(),
            )
        try:
            return chunk if self._relay(chunk) else None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # `"choices": [1]` and the like: the client's SDK could not read it either.
            raise UpstreamProtocolError(
                f"upstream sent a malformed chunk: {_text(data)[:200]!r}"
            ) from exc

    def _relay(self, chunk: dict[str, Any]) -> bool:
        choices = chunk.get("choices")
        if not choices:
            if chunk.get("usage") is None or not self._include_usage:
                return False
        else:
            for choice in choices:
                if choice.get("finish_reason"):
                    self._finished = True
        return True

    def finish(self) -> list[Chunk]:
        if not (self._done or self._finished):
            raise UpstreamProtocolError("upstream stream ended before it was complete")
        return []
