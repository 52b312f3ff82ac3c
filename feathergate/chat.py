"""Checks on an incoming chat request before any upstream is chosen.

Bounded work per request: the body nests at most
:data:`feathergate.clientjson.MAX_DEPTH` levels and holds at most
``max_messages`` messages (``feathergate_settings.max_messages``, by default
100,000, Anthropic's documented ceiling: no upstream takes more, and long
agent transcripts stay far below it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feathergate import clientjson
from feathergate.errors import InvalidRequest

__all__ = ["ChatRequest", "parse_chat_request"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    json_mode: bool = False  # response_format asks for a JSON object
    size: int = 0  # bytes of the raw body: what decides whether work on it leaves the loop
    # Usage was asked upstream for billing (virtual keys), not by the client: strip it again.
    strip_usage: bool = False


def parse_chat_request(raw: bytes, max_messages: int) -> ChatRequest:
    try:
        body = clientjson.parse(raw, None)
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    if len(messages) > max_messages:
        raise InvalidRequest(
            f"'messages' holds {len(messages)} messages; this gateway takes at most {max_messages}",
            param="messages",
        )
    clientjson.check_depth(body, None)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]"
            )
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true", param="stream_options"
            )
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    include_usage = bool(stream and options and options.get("include_usage"))
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    return ChatRequest(body, model, stream, include_usage, json_mode, len(raw))
