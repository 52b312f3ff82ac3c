"""A local ``count_tokens`` estimate, for upstreams that cannot count Messages requests.

Claude Code uses ``/v1/messages/count_tokens`` for ``/context`` and to decide
when to compact; a count that only looks at the messages' text (ten tokens
for a prompt whose system and tools weigh thousands) makes it overflow the
real context window (INGRESS.md §4.6). So everything that reaches the model
counts, and the estimate errs high:

- text (system, messages, thinking, tool results, text documents) and JSON
  (tool definitions, tool-use inputs): one token per 3 UTF-8 bytes, where
  English prose runs closer to 4 and code to 3;
- each image: 1,600 tokens (Anthropic's documented ceiling for one image);
- a base64 PDF: one token per 3 bytes of the decoded file;
- per message and per tool: 4 tokens of framing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["IMAGE_TOKENS", "estimate_tokens"]

IMAGE_TOKENS = 1600
_BYTES_PER_TOKEN = 3
_FRAMING = 4


def _text(text: str) -> int:
    return math.ceil(len(text.encode()) / _BYTES_PER_TOKEN)


def _json(value: Any) -> int:
    return _text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _content(content: Any) -> int:
    if isinstance(content, str):
        return _text(content)
    if not isinstance(content, list):
        return 0
    return sum(_block(block) for block in content if isinstance(block, Mapping))


def _block(block: Mapping[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        return _text(str(block.get("text") or ""))
    if kind == "thinking":
        return _text(str(block.get("thinking") or ""))
    if kind == "redacted_thinking":
        return _text(str(block.get("data") or ""))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "tool_use":
        return _text(str(block.get("name") or "")) + _json(block.get("input") or {})
    if kind in ("tool_result", "search_result"):
        return _content(block.get("content"))
    if kind == "document":
        found = block.get("source")
        source: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        if source.get("type") == "base64":
            return math.ceil(len(str(source.get("data") or "")) * 3 / 4 / _BYTES_PER_TOKEN)
        if source.get("type") == "text":
            return _text(str(source.get("data") or ""))
        return _content(source.get("content"))
    return _json(dict(block))  # a block this code does not know: its JSON, to err high


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """The estimated ``input_tokens`` of a Messages (or count_tokens) request body."""
    total = _content(body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, Mapping):
            total += _FRAMING + _content(message.get("content"))
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, Mapping):
            total += _FRAMING + _json(dict(tool))
    return max(total, 1)
