"""Chat Completions answer -> Messages API answer (INGRESS.md §4.3, §4.7 "Response mapping").

Pure. Block order is Anthropic's: thinking (from ``reasoning_content``, with
an empty signature: nobody signed it), then text, then one ``tool_use`` per
tool call. No empty text block is made (§4.8.4). Tool arguments that are not
a JSON object become ``{}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from feathergate.ingress.anthropic.answers import message_usage, stop_reason
from feathergate.ingress.anthropic.names import message_tool_id

__all__ = ["to_message", "tool_input", "tool_use_id"]


def tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def tool_use_id(upstream_id: Any, message_id: str, position: int) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return message_tool_id(upstream_id)
    digest = hashlib.sha256(f"{message_id}\0{position}".encode()).hexdigest()[:24]
    return f"toolu_{digest}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "") for p in content if isinstance(p, Mapping) and "text" in p
        )
    return ""


def to_message(
    completion: Mapping[str, Any],
    *,
    message_id: str,
    alias: str,
    names: Mapping[str, str],
    stops: tuple[str, ...],
) -> dict[str, Any]:
    choices = completion.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    choice: Mapping[str, Any] = first if isinstance(first, Mapping) else {}
    found = choice.get("message")
    message: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    refusal = message.get("refusal")
    text = refusal if isinstance(refusal, str) and refusal else _text(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            continue
        name = str(function.get("name") or "")
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call.get("id"), message_id, position),
                "name": names.get(name, name),
                "input": tool_input(function.get("arguments")),
            }
        )
    saw_tool = any(block["type"] == "tool_use" for block in content)
    matched = choice.get("stop_reason")  # vLLM says which stop sequence ended the answer
    reason, sequence = stop_reason(
        choice.get("finish_reason"), saw_tool=saw_tool, matched=matched, stops=stops
    )
    if isinstance(refusal, str) and refusal and not saw_tool:
        reason, sequence = "refusal", None
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": alias,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": message_usage(completion.get("usage")),
    }
