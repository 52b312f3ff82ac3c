"""Anthropic Messages response -> OpenAI ``chat.completion``, and Anthropic errors.

Pure. Shapes follow PROTOCOLS.md §4.3 (finish reasons), §4.4 (usage: the
prompt is input + cache reads + cache writes, because Anthropic's
``input_tokens`` excludes both) and §4.7 (error statuses). Thinking text is
returned as the de-facto ``reasoning_content`` extension; signatures are not,
as OpenAI clients have nowhere to keep them. When the ``response_format``
tool was called, its JSON is the whole ``content``: text blocks beside it
are dropped (the first call wins, should there be two).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feathergate.errors import UpstreamProtocolError, UpstreamStatusError
from feathergate.providers.anthropic.tools import JSON_TOOL_NAME
from feathergate.providers.base import CallContext, Completion
from feathergate.providers.chunks import completion, make_usage

__all__ = [
    "FINISH_REASONS",
    "TYPE_STATUS",
    "error_from_event",
    "finish_reason",
    "header_value",
    "map_anthropic_error",
    "parse_message",
    "translate_message",
    "translate_usage",
]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server-tool turn paused; the client must resend to go on
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Upstream status -> (client status, OpenAI error type), PROTOCOLS.md §4.7.
_STATUSES: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    402: (403, "permission_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    409: (409, "conflict_error"),
    413: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    529: (529, "overloaded_error"),
}
# Anthropic error.type -> the HTTP status it comes with (§2.5), for in-stream errors.
TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: Any, *, saw_tool: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and not saw_tool:
        return "stop"  # only the response_format tool was called: to the client, an answer
    return reason


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def translate_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    return make_usage(
        _count(usage, "input_tokens") + cache_read + cache_write,
        _count(usage, "output_tokens"),
        cached=cache_read,
        cache_write=cache_write,
    )


def arguments_json(value: Any) -> str:
    return json.dumps(value if isinstance(value, dict) else {}, ensure_ascii=False)


def translate_message(message: Mapping[str, Any], ctx: CallContext) -> Completion:
    text: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    answer: str | None = None  # the response_format tool's JSON: the whole content
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(str(block.get("text") or ""))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
        elif kind == "tool_use" and block.get("name") == JSON_TOOL_NAME:
            if answer is None:  # a second call cannot be joined to the first as JSON
                answer = arguments_json(block.get("input"))
        elif kind == "tool_use":
            function = {"name": str(block["name"]), "arguments": arguments_json(block.get("input"))}
            tool_calls.append({"id": str(block["id"]), "type": "function", "function": function})
        # redacted_thinking, server tools and future block types carry nothing for OpenAI
    # Text written around the JSON tool call ("I'll look that up.") would make
    # the content invalid JSON for clients that parse it (openai's parse()).
    content = "".join(text) if answer is None else answer
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls and not content else content,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    reason = finish_reason(message.get("stop_reason"), saw_tool=bool(tool_calls))
    usage = translate_usage(message.get("usage") or {})
    return completion(ctx, [{"index": 0, "message": reply, "finish_reason": reason}], usage)


def parse_message(body: bytes, ctx: CallContext) -> Completion:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise UpstreamProtocolError("anthropic sent a response that is not JSON") from None
    if not isinstance(data, dict) or data.get("type") != "message":
        raise UpstreamProtocolError("anthropic sent a response that is not a message")
    try:
        return translate_message(data, ctx)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamProtocolError(f"anthropic sent a malformed message ({exc!r})") from None


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """``name`` (lower-case) in ``headers``, whatever case they were written in."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _error(status: int, error: Any, retry_after: str | None, fallback: str) -> UpstreamStatusError:
    client_status, type_ = _STATUSES.get(
        status, (status, "api_error" if status >= 500 else "invalid_request_error")
    )
    detail = error if isinstance(error, dict) else {}
    message = detail.get("message")
    upstream_type = detail.get("type")
    return UpstreamStatusError(
        client_status,
        message if isinstance(message, str) and message else fallback,
        type=type_,
        code=upstream_type if isinstance(upstream_type, str) else None,
        retry_after=retry_after,
    )


def map_anthropic_error(
    status: int, headers: Mapping[str, str], body: bytes
) -> UpstreamStatusError:
    """Never fails: a body that is not Anthropic's JSON becomes the message."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    text = body.decode("utf-8", "replace").strip()[:500]
    fallback = text or f"anthropic answered HTTP {status}"
    return _error(status, error, header_value(headers, "retry-after"), fallback)


def error_from_event(data: Mapping[str, Any]) -> UpstreamStatusError:
    """An ``event: error`` arriving after the 200: mapped as if it had been the status."""
    error = data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = TYPE_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    return _error(status, error, None, "anthropic reported an error during the stream")
