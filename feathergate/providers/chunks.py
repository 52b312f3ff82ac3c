"""Builders for OpenAI response objects, shared by every translator.

They keep PROTOCOLS.md §1.3's contract in one place: the same ``id``,
``created`` and ``model`` on every chunk, ``usage: null`` on all but the
final usage chunk, whose ``choices`` is empty.
"""

from __future__ import annotations

from typing import Any

from feathergate.providers.base import CallContext, Chunk, Completion

__all__ = ["ChunkFactory", "completion", "make_usage"]


class ChunkFactory:
    __slots__ = ("_head",)

    def __init__(self, ctx: CallContext) -> None:
        self._head = {
            "id": ctx.completion_id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.alias,
            "system_fingerprint": None,
        }

    def delta(
        self, delta: dict[str, Any], *, index: int = 0, finish_reason: str | None = None
    ) -> Chunk:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head, "choices": [choice], "usage": None}

    def usage(self, usage: dict[str, Any]) -> Chunk:
        return {**self._head, "choices": [], "usage": usage}


def make_usage(
    prompt: int,
    completion_tokens: int,
    *,
    total: int | None = None,
    cached: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens if total is None else total,
    }
    details: dict[str, int] = {}
    if cached is not None:
        details["cached_tokens"] = cached
    if cache_write is not None:
        details["cache_write_tokens"] = cache_write
    if details:
        usage["prompt_tokens_details"] = details
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def completion(
    ctx: CallContext, choices: list[dict[str, Any]], usage: dict[str, Any] | None
) -> Completion:
    """A ``chat.completion``; each choice is ``{index, message, finish_reason}``."""
    return {
        "id": ctx.completion_id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.alias,
        "choices": [{"logprobs": None, **choice} for choice in choices],
        "usage": usage,
        "system_fingerprint": None,
    }
