"""OpenAI ``messages`` -> Anthropic ``system`` + ``messages`` (PROTOCOLS.md §4.1, rules 1-8).

The API rejects what OpenAI allows: system turns inside the conversation,
empty or whitespace-only text, tool results anywhere but first in the user
turn right after the calls, a conversation that opens with the assistant,
and tool ids outside ``^[a-zA-Z0-9_-]+$``. Each is repaired here so the
client's conversation survives: system and developer messages are hoisted
(in order) to the top-level ``system``, empty text is dropped, consecutive
turns of one role are merged with tool results moved first, a ``"."`` user
turn is put in front of a leading assistant turn, and ids are rewritten.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from feathergate import clientjson
from feathergate.errors import InvalidRequest
from feathergate.providers.anthropic.wire import (
    Base64Source,
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    MessageParam,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
)

__all__ = ["convert_messages", "sanitize_tool_id"]

_ID_OK = re.compile(r"[a-zA-Z0-9_-]+")
_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)", re.S)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Blocks the API wants at the start of a turn of each role.
_FIRST = {"user": {"tool_result"}, "assistant": {"thinking", "redacted_thinking"}}


def sanitize_tool_id(raw: str) -> str:
    """A valid Anthropic id, the same for the same input, distinct for distinct inputs.

    Valid ids pass unchanged, so Anthropic's own ``toolu_...`` ids round-trip.
    Others get their bad characters replaced and a digest of the original
    appended: ``call.1`` and ``call_1`` must not collide.
    """
    if _ID_OK.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    return f"{_ID_BAD.sub('_', raw)[:40] or 'call'}_{digest}"


def convert_messages(raw: Any) -> tuple[list[TextBlock], list[MessageParam]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    system: list[TextBlock] = []
    turns: list[MessageParam] = []
    for i, message in enumerate(raw):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{path} must be an object", param=path)
        role = message.get("role")
        role_out: Literal["user", "assistant"]
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), path))
            continue
        if role == "user":
            role_out, blocks = "user", _user_blocks(message.get("content"), path)
        elif role == "tool":
            role_out, blocks = "user", [_tool_result(message, path)]
        elif role == "assistant":
            role_out, blocks = "assistant", _assistant_blocks(message, path)
        else:
            raise InvalidRequest(f"{path}.role: unsupported role {role!r}", param=f"{path}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role_out:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role_out, "content": blocks})
    for turn in turns:
        first = _FIRST[turn["role"]]
        turn["content"].sort(key=lambda b: b["type"] not in first)  # stable
    if not turns or turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "."}]})
    _strip_prefill(turns)
    return system, turns


def _strip_prefill(turns: list[MessageParam]) -> None:
    """A final assistant turn is a prefill, and a prefill must not end in whitespace."""
    last = turns[-1]
    block = last["content"][-1]
    if last["role"] != "assistant" or block["type"] != "text":
        return
    block["text"] = block["text"].rstrip()  # never empty: blank text was dropped already


def _text(value: str, part: dict[str, Any] | None = None) -> list[TextBlock]:
    if not value.strip():
        return []
    block: TextBlock = {"type": "text", "text": value}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return [block]


def _parts(content: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(path, part)`` for each part of array content; a string is one text part."""
    if isinstance(content, str):
        return [(path, {"type": "text", "text": content})]
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidRequest(f"{path}.content must be a string or an array", param=path)
    parts: list[tuple[str, dict[str, Any]]] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{path}.content[{j}] must be an object", param=path)
        parts.append((f"{path}.content[{j}]", part))
    return parts


def _text_blocks(content: Any, path: str) -> list[TextBlock]:
    blocks: list[TextBlock] = []
    for part_path, part in _parts(content, path):
        kind = part.get("type")
        value = part.get("refusal") if kind == "refusal" else part.get("text")
        if kind not in ("text", "refusal") or not isinstance(value, str):
            raise InvalidRequest(f"{part_path}: expected a text part", param=part_path)
        blocks.extend(_text(value, part))
    return blocks


def _user_blocks(content: Any, path: str) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    for part_path, part in _parts(content, path):
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{part_path}.text must be a string", param=part_path)
            blocks.extend(_text(part["text"], part))
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), part_path))
        elif kind == "file":
            blocks.append(_document(part.get("file"), part_path))
        else:
            raise InvalidRequest(
                f"{part_path}: content type {kind!r} is not supported by anthropic", param=part_path
            )
    return blocks


def _image(spec: Any, path: str) -> ImageBlock:
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise InvalidRequest(f"{path}.image_url.url is required", param=path)
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": URLSource(type="url", url=url)}
    source = _base64(url, path)
    if source["media_type"] not in _IMAGE_TYPES:
        raise InvalidRequest(
            f"{path}: anthropic accepts only {', '.join(sorted(_IMAGE_TYPES))} images", param=path
        )
    return {"type": "image", "source": source}


def _document(spec: Any, path: str) -> DocumentBlock:
    data = spec.get("file_data") if isinstance(spec, dict) else None
    if not isinstance(data, str):
        raise InvalidRequest(
            f"{path}: anthropic needs the file inline as 'file_data' (file ids cannot be read)",
            param=path,
        )
    if data.startswith("data:"):
        source = _base64(data, path)
    else:
        source = Base64Source(type="base64", media_type="application/pdf", data=data)
    if source["media_type"] != "application/pdf":
        raise InvalidRequest(f"{path}: anthropic accepts only PDF files", param=path)
    return {"type": "document", "source": source}


def _base64(uri: str, path: str) -> Base64Source:
    match = _DATA_URI.fullmatch(uri)
    if match is None:
        raise InvalidRequest(
            f"{path}: expected an http(s) URL or a 'data:<mime>;base64,' URI", param=path
        )
    return {"type": "base64", "media_type": match["mime"].lower(), "data": match["data"]}


def _assistant_blocks(message: dict[str, Any], path: str) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    # litellm's extension: clients that kept the signed thinking blocks echo them here.
    for block in message.get("thinking_blocks") or []:
        if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
            blocks.append(block)  # type: ignore[arg-type]  # echoed unchanged, as required
    blocks.extend(_text_blocks(message.get("content"), path))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequest(f"{path}.tool_calls must be an array", param=f"{path}.tool_calls")
    blocks.extend(_tool_use(call, f"{path}.tool_calls[{k}]") for k, call in enumerate(calls))
    return blocks


def _tool_use(call: Any, path: str) -> ToolUseBlock:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise InvalidRequest(f"{path}.function is required", param=path)
    call_id, name = call.get("id"), function.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str) or not name:
        raise InvalidRequest(f"{path}: 'id' and 'function.name' are required", param=path)
    return {
        "type": "tool_use",
        "id": sanitize_tool_id(call_id),
        "name": name,
        "input": _arguments(function.get("arguments"), f"{path}.function.arguments"),
    }


def _arguments(arguments: Any, path: str) -> dict[str, Any]:
    """Rule 4: ``""``, unparseable or non-object arguments become ``{}``.

    Arguments nested too deeply to translate are a 400, not ``{}``: the model
    could not have produced them.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = clientjson.loads(arguments, path)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_result(message: dict[str, Any], path: str) -> ToolResultBlock:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise InvalidRequest(f"{path}.tool_call_id is required", param=f"{path}.tool_call_id")
    block: ToolResultBlock = {"type": "tool_result", "tool_use_id": sanitize_tool_id(call_id)}
    content = message.get("content")
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
    else:
        texts = _text_blocks(content, path)
        if texts:
            block["content"] = list(texts)
    return block
