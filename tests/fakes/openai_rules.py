"""What the real OpenAI API rejects (chat, embeddings, legacy completions), for the strict fake.

The messages follow OpenAI's own (``Unrecognized request argument supplied:
top_k``, ``Invalid 'tools[0].function.name': string does not match pattern``)
closely enough to recognise; tests assert on the status and type.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["Rejected", "validate", "validate_completions", "validate_embeddings"]

# CreateChatCompletionRequest's properties (openapi.yaml), the deprecated ones included.
_PARAMS = frozenset(
    {
        "model", "messages", "audio", "frequency_penalty", "function_call", "functions",
        "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata",
        "modalities", "n", "parallel_tool_calls", "prediction", "presence_penalty",
        "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
        "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
        "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p",
        "user", "verbosity", "web_search_options",
    }
)  # fmt: skip
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_USER_PARTS = frozenset({"text", "image_url", "input_audio", "file"})
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class Rejected(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.error = {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }


def validate(body: Any) -> None:
    """Raise :class:`Rejected` (a 400) as api.openai.com would."""
    if not isinstance(body, dict):
        raise Rejected("We could not parse the JSON body of your request.")
    for key in body:
        if key not in _PARAMS:
            raise Rejected(f"Unrecognized request argument supplied: {key}", key)
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        raise Rejected(
            f"Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(stop)} instead.",
            "stop",
            "array_above_max_length",
        )
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        raise Rejected(f"Invalid value: '{effort}'.", "reasoning_effort", "invalid_value")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise Rejected(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    for i, tool in enumerate(body.get("tools") or []):
        name = (tool.get("function") or {}).get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise Rejected(
                f"Invalid 'tools[{i}].function.name': string does not match pattern. "
                "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' "
                "and is at most 64 characters long.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
    _messages(body.get("messages"))


def _messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Rejected("Invalid 'messages': empty array.", "messages", "empty_array")
    pending: list[str] = []  # tool_call ids the next tool messages must answer
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise Rejected(f"Invalid value: '{role}'.", f"messages[{i}].role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise Rejected(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.remove(call_id)
            continue
        if pending:
            raise Rejected(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
                "messages",
            )
        content = message.get("content")
        if role == "user" and isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in _USER_PARTS:
                    raise Rejected(
                        f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
                        "'input_audio', and 'file'.",
                        f"messages[{i}].content[{j}].type",
                    )
        if role == "assistant":
            pending = [c.get("id") for c in message.get("tool_calls") or []]
    if pending:
        raise Rejected(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(pending)}",
            "messages",
        )


# CreateEmbeddingRequest (additionalProperties: false).
_EMBEDDING_PARAMS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_MAX_INPUTS = 2048
# CreateCompletionRequest's properties.
_COMPLETION_PARAMS = frozenset(
    {
        "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
        "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
        "suffix", "temperature", "top_p", "user",
    }
)  # fmt: skip


def _invalid_input() -> Rejected:
    return Rejected(
        "'$.input' is invalid. Please check the API reference: "
        "https://platform.openai.com/docs/api-reference.",
        "input",
    )


def _unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    for key in body:
        if key not in known:
            raise Rejected(f"Unrecognized request argument supplied: {key}", key)


def validate_embeddings(body: Any) -> None:
    """Raise :class:`Rejected` (a 400) as api.openai.com's /v1/embeddings would."""
    if not isinstance(body, dict):
        raise Rejected("We could not parse the JSON body of your request.")
    _unknown(body, _EMBEDDING_PARAMS)
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _invalid_input()
    if len(raw) > _MAX_INPUTS:
        raise Rejected(
            f"'$.input' is too long. Maximum length is {_MAX_INPUTS}, "
            f"but got an array with length {len(raw)}.",
            "input",
        )
    if all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        raw = [raw]
    for item in raw:
        if isinstance(item, str):
            if not item:
                raise _invalid_input()
        elif not isinstance(item, list) or not item or not all(isinstance(t, int) for t in item):
            raise _invalid_input()
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise Rejected(
            f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
            "encoding_format",
            "invalid_value",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if str(body.get("model")).startswith("text-embedding-ada"):
            raise Rejected("This model does not support specifying dimensions.", "dimensions")
        if not isinstance(dimensions, int) or dimensions < 1:
            raise Rejected(
                f"Invalid 'dimensions': integer below minimum value. Expected a value >= 1, "
                f"but got {dimensions} instead.",
                "dimensions",
                "integer_below_min_value",
            )


def validate_completions(body: Any) -> None:
    """Raise :class:`Rejected` (a 400) as api.openai.com's /v1/completions would."""
    if not isinstance(body, dict):
        raise Rejected("We could not parse the JSON body of your request.")
    _unknown(body, _COMPLETION_PARAMS)
    if "prompt" not in body:
        raise Rejected("you must provide a prompt parameter", "prompt")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise Rejected(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if body.get("stream") and body.get("best_of", 1) > 1:
        raise Rejected("Cannot stream results with best_of greater than 1.", "best_of")
    logprobs = body.get("logprobs")
    if isinstance(logprobs, int) and logprobs > 5:
        raise Rejected(
            f"Invalid 'logprobs': integer above maximum value. Expected a value <= 5, "
            f"but got {logprobs} instead.",
            "logprobs",
            "integer_above_max_value",
        )
