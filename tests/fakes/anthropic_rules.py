"""What the real Anthropic Messages API rejects, for the strict fake.

Messages follow the real ones (pydantic-style ``path: reason`` for schema
errors) closely enough for a human to recognise them; tests should assert on
the status and ``error.type``, not the wording.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

__all__ = ["Rejected", "validate"]

_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "service_tier",
        "output_config",
    }
)
_COUNT_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "cache_control",
        "output_config",
    }
)
# Fields the API takes only with a beta header (INGRESS.md §4.9, the appendix).
_BETA_TOP_LEVEL = {"context_management": "context-management-2025-06-27"}
_BETA_TOOL_KEYS = {
    "defer_loading": "advanced-tool-use-2025-11-20",
    "input_examples": "advanced-tool-use-2025-11-20",
}
_MID_CONVERSATION_SYSTEM = "mid-conversation-system-2026-04-07"  # role "system" in messages
_TOOL_KEYS = frozenset({"name", "description", "input_schema", "cache_control", "type"})
_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_BLOCKS = {
    "user": {"text", "image", "document", "tool_result"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking"},
}
_MEDIA = {"image/jpeg", "image/png", "image/gif", "image/webp"}


class Rejected(Exception):
    def __init__(
        self, message: str, status: int = 400, type: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(
    headers: dict[str, str],
    body: Any,
    api_key: str,
    *,
    count: bool = False,
    signatures: set[str] | None = None,
) -> None:
    """Raise :class:`Rejected` as the real API would; headers have lower-case names.

    ``count``: the body of ``/v1/messages/count_tokens``. ``signatures``: the
    thinking signatures this fake issued; a replayed thinking block must carry one.
    """
    if "x-api-key" not in headers:
        raise Rejected("x-api-key header is required", 401, "authentication_error")
    if headers["x-api-key"] != api_key:
        raise Rejected("invalid x-api-key", 401, "authentication_error")
    if "anthropic-version" not in headers:
        raise Rejected("anthropic-version: header is required")
    if not isinstance(body, dict):
        raise Rejected("There was an error parsing the body of your request: invalid JSON object")
    betas = {b.strip() for b in headers.get("anthropic-beta", "").split(",")}
    allowed = _COUNT_TOP_LEVEL if count else _TOP_LEVEL
    for key in body:
        if key in _BETA_TOP_LEVEL and _BETA_TOP_LEVEL[key] in betas:
            continue
        if key not in allowed:
            raise Rejected(f"{key}: Extra inputs are not permitted")
    for key in ("model", "messages") if count else ("model", "max_tokens", "messages"):
        if key not in body:
            raise Rejected(f"{key}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise Rejected("model: Input should be a valid string")
    if not count and (not _integer(body["max_tokens"]) or body["max_tokens"] < 1):
        raise Rejected("max_tokens: Input should be greater than or equal to 1")
    _sampling(body)
    _output_config(body.get("output_config"), betas)
    _system(body.get("system"))
    names = _tools(body.get("tools"), betas)
    _tool_choice(body.get("tool_choice"), names)
    _messages(body["messages"], bool(names), signatures, betas)
    _thinking(body, count)


def _sampling(body: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (not _number(value) or not 0 <= value <= 1):
            raise Rejected(f"{key}: Input should be between 0 and 1 (got {value!r})")
    if body.get("top_k") is not None and (not _integer(body["top_k"]) or body["top_k"] < 0):
        raise Rejected("top_k: Input should be greater than or equal to 0")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise Rejected("stop_sequences: Input should be a valid list of strings")
        if any(not s.strip() for s in stops):
            raise Rejected("stop_sequences: each stop sequence must contain non-whitespace")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise Rejected("metadata: Extra inputs are not permitted")


def _output_config(config: Any, betas: set[str]) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise Rejected("output_config: Input should be a valid dictionary")
    for key in config:
        if key not in ("effort", "format"):
            raise Rejected(f"output_config.{key}: Extra inputs are not permitted")
    if "effort" in config:
        if "effort-2025-11-24" not in betas:
            raise Rejected("output_config.effort: Extra inputs are not permitted")
        if config["effort"] not in ("low", "medium", "high", "xhigh", "max"):
            raise Rejected("output_config.effort: Input should be 'low', 'medium' or 'high'")


def _text_block(block: dict[str, Any], path: str) -> None:
    if not isinstance(block.get("text"), str):
        raise Rejected(f"{path}.text: Field required")
    if not block["text"]:
        raise Rejected("messages: text content blocks must be non-empty")
    if not block["text"].strip():
        raise Rejected("messages: text content blocks must contain non-whitespace text")


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Rejected("system: Input should be a valid list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Rejected(f"system.{i}.type: Input should be 'text'")
        _text_block(block, f"system.{i}")


def _tools(tools: Any, betas: set[str]) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Rejected("tools: Input should be a valid list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        path = f"tools.{i}.custom"
        if not isinstance(tool, dict):
            raise Rejected(f"tools.{i}: Input should be a valid dictionary")
        for key in tool:
            if key in _BETA_TOOL_KEYS and _BETA_TOOL_KEYS[key] in betas:
                continue
            if key not in _TOOL_KEYS:
                raise Rejected(f"{path}.{key}: Extra inputs are not permitted")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise Rejected(f"{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if name in names:
            raise Rejected("tools: Tool names must be unique.")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise Rejected(f"{path}.input_schema: Field required")
        if schema.get("type") != "object":
            raise Rejected(f"{path}.input_schema.type: Input should be 'object'")
        names.append(name)
    return names


def _tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None:
        return
    if not names:
        raise Rejected("tool_choice may only be specified while providing tools.")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise Rejected("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if kind == "tool" and choice.get("name") not in names:
        raise Rejected(f"tool_choice: tool '{choice.get('name')}' was not found in 'tools'")


def _thinking(body: dict[str, Any], count: bool) -> None:
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if thinking is None or kind in ("disabled", "adaptive"):
        return
    if kind != "enabled":
        raise Rejected("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    budget = thinking.get("budget_tokens")
    if not _integer(budget) or budget < 1024:
        raise Rejected("thinking.enabled.budget_tokens: Input should be at least 1024")
    if not count and budget >= body["max_tokens"]:
        raise Rejected("`max_tokens` must be greater than `thinking.budget_tokens`.")
    if body.get("temperature", 1) != 1:
        raise Rejected("`temperature` may only be set to 1 when thinking is enabled.")
    if body.get("top_k") is not None:
        raise Rejected("`top_k` cannot be set when thinking is enabled.")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise Rejected("Thinking may not be enabled when tool_choice forces tool use.")
    assistant = [m for m in body["messages"] if m["role"] == "assistant"]
    blocks = assistant[-1]["content"] if assistant else []
    calls = isinstance(blocks, list) and any(b["type"] == "tool_use" for b in blocks)
    if calls and blocks[0]["type"] not in ("thinking", "redacted_thinking"):
        raise Rejected(
            f"messages.{len(body['messages']) - 1}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{blocks[0]['type']}`. When `thinking` is "
            "enabled, a final `assistant` message must start with a thinking block."
        )


def _block(block: Any, role: str, path: str, signatures: set[str] | None = None) -> None:
    if not isinstance(block, dict) or block.get("type") not in _BLOCKS[role]:
        kind = block.get("type") if isinstance(block, dict) else None
        raise Rejected(f"{path}.type: block type {kind!r} is not allowed in a {role} message")
    kind = block["type"]
    if kind == "text":
        _text_block(block, path)
    elif kind == "thinking" and signatures is not None:
        if block.get("signature") not in signatures:
            raise Rejected(f"{path}: Invalid `signature` in `thinking` block")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not _ID.fullmatch(block["id"]):
            raise Rejected(f"{path}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("input"), dict):
            raise Rejected(f"{path}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise Rejected(f"{path}.tool_use_id: Field required")
        content = block.get("content")
        for j, inner in enumerate(content if isinstance(content, list) else []):
            _block(inner, "user", f"{path}.content.{j}")
    elif kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
            raise Rejected(f"{path}.source: Input tag does not match 'base64' or 'url'")
        base64 = source["type"] == "base64"
        if kind == "image" and base64 and source.get("media_type") not in _MEDIA:
            raise Rejected(f"{path}.source.base64.media_type: Input should be an image type")


def _messages(messages: Any, has_tools: bool, signatures: set[str] | None, betas: set[str]) -> None:
    if not isinstance(messages, list) or not messages:
        raise Rejected("messages: at least one message is required")
    turns: list[tuple[int, str, list[dict[str, Any]]]] = []  # (first index, role, blocks)
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system" and _MID_CONVERSATION_SYSTEM in betas and i > 0:
            _system(message.get("content"))  # a system turn between the others (newer Claude Code)
            continue
        if role not in ("user", "assistant"):
            raise Rejected(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        blocks = content
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}] if content else []
        final_assistant = i == len(messages) - 1 and role == "assistant"
        if not isinstance(blocks, list) or (not blocks and not final_assistant):
            raise Rejected(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for j, block in enumerate(blocks):
            _block(block, role, f"messages.{i}.content.{j}", signatures)
        if turns and turns[-1][1] == role:  # the API merges consecutive same-role turns
            turns[-1][2].extend(blocks)
        else:
            turns.append((i, role, list(blocks)))
    if turns[0][1] != "user":
        raise Rejected('messages: first message must use the "user" role')
    last = turns[-1][2]
    prefill = turns[-1][1] == "assistant" and last and last[-1]["type"] == "text"
    if prefill and last[-1]["text"] != last[-1]["text"].rstrip():
        raise Rejected("messages: final assistant content cannot end with trailing whitespace")
    _tool_pairs(turns, has_tools)


def _tool_pairs(turns: list[tuple[int, str, list[dict[str, Any]]]], has_tools: bool) -> None:
    seen: set[str] = set()
    any_tool_blocks = False
    for t, (i, _, blocks) in enumerate(turns):
        uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        any_tool_blocks = any_tool_blocks or bool(uses or results)
        if seen & set(uses) or len(set(uses)) != len(uses):
            raise Rejected(f"messages.{i}: `tool_use` ids must be unique")
        seen.update(uses)
        if results:
            kinds = [b["type"] for b in blocks]
            if kinds[: len(results)] != ["tool_result"] * len(results):
                raise Rejected(
                    f"messages.{i}: `tool_result` blocks must come first in the user message, "
                    "before any other content"
                )
            previous = turns[t - 1][2] if t else []
            called = {b["id"] for b in previous if b["type"] == "tool_use"}
            for j, tool_use_id in enumerate(results):
                if tool_use_id not in called:
                    raise Rejected(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {tool_use_id}. Each `tool_result` block must "
                        "have a corresponding `tool_use` block in the previous message."
                    )
        if uses:
            following = turns[t + 1][2] if t + 1 < len(turns) else []
            answered = {b["tool_use_id"] for b in following if b["type"] == "tool_result"}
            missing = [u for u in uses if u not in answered]
            if missing and t + 1 < len(turns):
                raise Rejected(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
    if any_tool_blocks and not has_tools:
        raise Rejected(
            "Requests which include `tool_use` or `tool_result` blocks must define tools."
        )
