"""What the Chat Completions side said, in Messages API terms: reasons, usage, blocks.

Shared by the whole-answer translator (:mod:`.to_message`) and the stream
encoder (:mod:`.stream`), so a streamed answer reassembles to what the
non-streamed one returns.

``stop_reason`` (INGRESS.md §4.7, §4.8.7): any tool call is ``tool_use``;
``length`` is ``max_tokens``; ``content_filter`` is ``refusal``; ``stop`` is
``stop_sequence`` when the upstream said which of the client's sequences
matched (vLLM's ``stop_reason``; OpenAI and Gemini never say), else
``end_turn``.

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes, OpenAI's
``prompt_tokens`` includes them, so ``input = prompt - cached - written``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.providers.base import token_count

__all__ = ["message_usage", "stop_reason"]

_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(
    finish_reason: Any, *, saw_tool: bool, matched: Any, stops: tuple[str, ...]
) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)`` for a choice's ``finish_reason``."""
    if saw_tool:
        return "tool_use", None
    reason = _REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else None
    if reason == "tool_use":
        return "end_turn", None  # "tool_calls" with no call: nothing for the client to run
    if reason in (None, "end_turn") and isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    return reason or "end_turn", None


def message_usage(usage: Any) -> dict[str, int]:
    """OpenAI usage (as every chat translator reports it) -> Anthropic usage."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    cached = token_count(details, "cached_tokens")
    written = token_count(details, "cache_write_tokens")
    return {
        "input_tokens": max(token_count(usage, "prompt_tokens") - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": token_count(usage, "completion_tokens"),
    }
