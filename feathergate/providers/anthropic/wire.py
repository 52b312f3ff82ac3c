"""The Anthropic Messages API JSON (``anthropic-version: 2023-06-01``) as TypedDicts.

Only what FeatherGate sends or reads. Response shapes describe what a
well-behaved upstream sends; the translators still check types at the edges
because a TypedDict is a promise about JSON, not a proof.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

__all__ = [
    "Base64Source",
    "ContentBlock",
    "DocumentBlock",
    "ErrorBody",
    "ErrorDetail",
    "ImageBlock",
    "Message",
    "MessageParam",
    "MessagesRequest",
    "Metadata",
    "RedactedThinkingBlock",
    "TextBlock",
    "ThinkingBlock",
    "ThinkingParam",
    "ToolChoice",
    "ToolParam",
    "ToolResultBlock",
    "ToolUseBlock",
    "URLSource",
    "Usage",
]

CacheControl = dict[str, Any]


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str
    cache_control: NotRequired[CacheControl]


class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(TypedDict):
    type: Literal["url"]
    url: str


class ImageBlock(TypedDict):
    type: Literal["image"]
    source: Base64Source | URLSource
    cache_control: NotRequired[CacheControl]


class DocumentBlock(TypedDict):
    type: Literal["document"]
    source: Base64Source | URLSource
    cache_control: NotRequired[CacheControl]


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[str | list[TextBlock | ImageBlock]]
    is_error: NotRequired[bool]


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(TypedDict):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
)


class MessageParam(TypedDict):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class ToolParam(TypedDict):
    name: str
    input_schema: dict[str, Any]
    description: NotRequired[str]
    cache_control: NotRequired[CacheControl]


class ToolChoice(TypedDict, total=False):
    type: Required[Literal["auto", "any", "tool", "none"]]
    name: str
    disable_parallel_tool_use: bool


class ThinkingParam(TypedDict):
    type: Literal["enabled"]
    budget_tokens: int


class Metadata(TypedDict):
    user_id: str


class MessagesRequest(TypedDict, total=False):
    model: Required[str]
    max_tokens: Required[int]
    messages: Required[list[MessageParam]]
    system: list[TextBlock]
    temperature: float
    top_p: float
    top_k: int
    stop_sequences: list[str]
    stream: bool
    tools: list[ToolParam]
    tool_choice: ToolChoice
    metadata: Metadata
    thinking: ThinkingParam


class Usage(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None
    cache_read_input_tokens: int | None


class Message(TypedDict):
    """A non-streamed response, and ``message_start.message`` in a stream."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]  # blocks of any type, including ones we ignore
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage


class ErrorDetail(TypedDict):
    type: str
    message: str


class ErrorBody(TypedDict):
    type: Literal["error"]
    error: ErrorDetail
    request_id: NotRequired[str]
