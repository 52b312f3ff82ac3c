"""Messages API request -> Chat Completions request, for upstreams that are not Anthropic.

Pure. The chat request then goes through the provider's own, tested chat
translators (OpenAI-compatible passthrough, or Chat -> Gemini), so this module
only has to say what each Messages field means in Chat Completions
(INGRESS.md §4.7-4.8):

- ``system`` (a string or text blocks, joined by blank lines) is the first
  message; a ``role: "system"`` message inside ``messages`` (newer SDKs, Claude
  Code) stays a system message where it stands (Gemini hoists it).
- A user turn's ``tool_result`` blocks become ``tool`` messages first, in
  block order, then one user message with the rest of the turn; images inside
  tool results join that user message, since ``tool`` messages carry text only.
  ``is_error`` results start with ``Error:``.
- Assistant text blocks are joined, ``tool_use`` blocks become ``tool_calls``
  (ids and names through :mod:`.names`), ``thinking`` and
  ``redacted_thinking`` are dropped: their signatures mean nothing to another
  model family (INGRESS.md §4.8.4).
- Images are data: URIs or URLs; PDF documents are ``file`` parts, text
  documents text.
- ``tools`` are functions; server tools (``web_search_20250305``, ``bash_*``,
  ...) have no equivalent and are left out, so the rest of the conversation
  still works. ``tool_choice`` auto/any/tool/none is auto/required/function/
  none, ``disable_parallel_tool_use`` is ``parallel_tool_calls: false``.
- ``stop_sequences`` is ``stop``; ``temperature``, ``top_p`` pass; ``top_k``
  only to Gemini (OpenAI rejects it); ``max_tokens`` passes (the operation
  renames and clamps it per upstream).
- ``thinking``: for OpenAI-compatible upstreams ``reasoning_effort``
  (:func:`reasoning_effort`); for Gemini the budget itself, which the Gemini
  translator turns into ``thinkingConfig``. ``adaptive`` takes
  ``output_config.effort``.
- ``metadata.user_id`` (Claude Code's is a long JSON string) is hashed into
  a short ``user``; ``output_config.format`` is ``response_format``.
- Fields with no Chat Completions meaning (``cache_control``,
  ``context_management``, ``container``, ``service_tier``, ``defer_loading``
  on tools, ...) are dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from feathergate.errors import InvalidRequest
from feathergate.ingress.anthropic.names import chat_tool_id, short_tool_name
from feathergate.ingress.anthropic.request import MessagesRequest

__all__ = ["ChatTranslation", "Family", "reasoning_effort", "to_chat", "translation"]

Family = Literal["openai", "gemini"]

_EFFORTS = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class ChatTranslation:
    body: dict[str, Any]  # the Chat Completions request
    names: Mapping[str, str]  # upstream tool name -> the client's name
    stop: tuple[str, ...]  # the client's stop sequences


def reasoning_effort(budget: int) -> str:
    """``budget_tokens`` -> OpenAI's effort: under 2048 low, under 8192 medium, else high.

    Claude Code's "think" (4,000) is medium, "think hard" and "ultrathink" are
    high; values past ``high`` are not accepted by every OpenAI model.
    """
    if budget < 2048:
        return "low"
    return "medium" if budget < 8192 else "high"


def _bad(where: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{where}: {message}", param=where)


def to_chat(body: Mapping[str, Any], family: Family, *, stream: bool) -> ChatTranslation:
    """Raise :class:`InvalidRequest` (naming the field) for what cannot be translated."""
    names: dict[str, str] = {}
    messages = [*_system(body.get("system"))]
    raw_messages = body.get("messages")
    for i, message in enumerate(raw_messages if isinstance(raw_messages, list) else []):
        messages.extend(_message(message, f"messages.{i}", names))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = _tools(body.get("tools"), names)
    if tools:
        chat["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, Mapping):
            _tool_choice(choice, chat)
    for key in ("temperature", "top_p", *(("top_k",) if family == "gemini" else ())):
        if _is_number(body.get(key)):
            chat[key] = body[key]
    stop = body.get("stop_sequences")
    stops = tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else ()
    if stops:
        chat["stop"] = list(stops)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        chat["max_tokens"] = max_tokens
    _thinking(body, family, chat)
    user = _user(body.get("metadata"))
    if user:
        chat["user"] = user
    _output_format(body.get("output_config"), chat)
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return ChatTranslation(chat, names, stops)


def translation(request: MessagesRequest, family: Family) -> ChatTranslation:
    """``request`` in Chat Completions terms, translated once per family and kept with it.

    A request may be tried on several deployments (retries, fallbacks); they
    all share the translation.
    """
    found = request.memo.get(family)
    if not isinstance(found, ChatTranslation):
        found = request.memo[family] = to_chat(request.body, family, stream=request.stream)
    return found


# -- messages ---------------------------------------------------------------------------


def _system(system: Any) -> list[dict[str, Any]]:
    text = _texts(system, "system")
    return [{"role": "system", "content": text}] if text else []


def _texts(content: Any, where: str) -> str:
    """A string, or text blocks joined by blank lines (a system prompt's)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(where, "must be a string or an array of text blocks")
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise _bad(f"{where}.{j}", "only text blocks are allowed here")
        if isinstance(block.get("text"), str) and block["text"]:
            texts.append(block["text"])
    return "\n\n".join(texts)


def _blocks(content: Any, where: str) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"{where}.content", "must be a string or an array of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise _bad(f"{where}.content.{j}", "must be a content block with a 'type'")
    return content


def _message(message: Mapping[str, Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    role = message.get("role")
    if role == "system":
        text = _texts(message.get("content"), f"{where}.content")
        return [{"role": "system", "content": text}] if text else []
    if role == "user":
        return _user_turn(_blocks(message.get("content"), where), where)
    if role == "assistant":
        return _assistant_turn(_blocks(message.get("content"), where), where, names)
    raise _bad(f"{where}.role", "must be 'user' or 'assistant'")


def _user_turn(blocks: list[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []  # from tool results: right after them
    rest: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        if block["type"] == "tool_result":
            text, found = _tool_result(block, at)
            out.append({"role": "tool", "tool_call_id": _tool_use_id(block, at), "content": text})
            images.extend(found)
        else:
            rest.extend(_part(block, at))
    parts = images + rest
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _tool_use_id(block: Mapping[str, Any], where: str) -> str:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise _bad(f"{where}.tool_use_id", "Field required")
    return chat_tool_id(tool_use_id)


def _tool_result(block: Mapping[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, inner in enumerate(content):
            at = f"{where}.content.{k}"
            kind = inner.get("type") if isinstance(inner, Mapping) else None
            if kind == "image":
                images.extend(_part(inner, at))
            elif kind == "search_result" and isinstance(inner, Mapping):
                texts.append(_texts(inner.get("content"), f"{at}.content"))
            elif isinstance(inner, Mapping):
                texts.extend(p["text"] for p in _part(inner, at) if p["type"] == "text")
    elif content is not None:
        raise _bad(f"{where}.content", "must be a string or an array of content blocks")
    text = "\n".join(t for t in texts if t)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return text, images


def _part(block: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    kind = block["type"]
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}.text", "Field required")
        return [{"type": "text", "text": text}] if text else []
    if kind == "image":
        return [{"type": "image_url", "image_url": {"url": _image_url(block, where)}}]
    if kind == "document":
        return _document(block, where)
    raise _bad(f"{where}.type", f"a {kind!r} block cannot be sent to this model's upstream")


def _image_url(block: Mapping[str, Any], where: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "base64" and isinstance(source, Mapping):
        return f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    if kind == "url" and isinstance(source, Mapping) and isinstance(source.get("url"), str):
        return str(source["url"])
    raise _bad(f"{where}.source", "only base64 and url image sources can be translated")


def _document(block: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    title = block.get("title") if isinstance(block.get("title"), str) else None
    if kind == "text" and isinstance(source, Mapping):
        text = str(source.get("data") or "")
        return [{"type": "text", "text": f"{title}\n\n{text}" if title else text}] if text else []
    if kind == "content" and isinstance(source, Mapping):
        inner = source.get("content")
        if isinstance(inner, str):
            return [{"type": "text", "text": inner}] if inner else []
        blocks = inner if isinstance(inner, list) else []
        return [p for k, b in enumerate(blocks) for p in _part(b, f"{where}.source.content.{k}")]
    if kind == "base64" and isinstance(source, Mapping):
        mime = str(source.get("media_type") or "application/pdf")
        data = f"data:{mime};base64,{source.get('data', '')}"
        filename = title or "document.pdf"
        return [{"type": "file", "file": {"filename": filename, "file_data": data}}]
    raise _bad(f"{where}.source", "only base64, text and content documents can be translated")


def _assistant_turn(
    blocks: list[Mapping[str, Any]], where: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = block["type"]
        if kind == "text":
            texts.extend(p["text"] for p in _part(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at, names))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _bad(f"{at}.type", f"a {kind!r} block cannot be sent to this model's upstream")
    text = "".join(texts)
    if not text and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_call(block: Mapping[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.id", "Field required")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.name", "Field required")
    arguments = block.get("input")
    function = {
        "name": _name(name, names),
        "arguments": json.dumps(arguments if isinstance(arguments, Mapping) else {}),
    }
    return {"id": chat_tool_id(call_id), "type": "function", "function": function}


def _name(name: str, names: dict[str, str]) -> str:
    short = short_tool_name(name)
    names[short] = name
    return short


# -- tools and parameters -----------------------------------------------------------------


def _tools(tools: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("tools", "must be an array")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise _bad(f"tools.{i}", "must be an object")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool: nothing in Chat Completions runs it
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"tools.{i}.name", "Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, Mapping):
            raise _bad(f"tools.{i}.input_schema", "Field required")
        function: dict[str, Any] = {"name": _name(name, names), "parameters": dict(schema)}
        if isinstance(tool.get("description"), str) and tool["description"]:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Mapping[str, Any], chat: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        function = {"name": short_tool_name(choice["name"])}
        chat["tool_choice"] = {"type": "function", "function": function}
    else:
        raise _bad("tool_choice.type", "must be 'auto', 'any', 'tool' (with a name) or 'none'")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        chat["parallel_tool_calls"] = False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _thinking(body: Mapping[str, Any], family: Family, chat: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind == "enabled" and isinstance(thinking, Mapping):
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise _bad("thinking.budget_tokens", "must be a positive integer")
        if family == "gemini":
            chat["thinking"] = {"type": "enabled", "budget_tokens": budget}
        else:
            chat["reasoning_effort"] = reasoning_effort(budget)
    elif kind == "adaptive":
        config = body.get("output_config")
        effort = config.get("effort") if isinstance(config, Mapping) else None
        if family == "gemini":
            chat["thinking"] = {"type": "adaptive"}
        else:
            chat["reasoning_effort"] = effort if effort in _EFFORTS else "medium"
            if effort in ("xhigh", "max"):
                chat["reasoning_effort"] = "high"


def _user(metadata: Any) -> str | None:
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    # OpenAI caps `user` at 64 characters and some servers at [A-Za-z0-9_-].
    return "u_" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


def _output_format(config: Any, chat: dict[str, Any]) -> None:
    fmt = config.get("format") if isinstance(config, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if isinstance(schema, Mapping):
            spec = {"name": "output", "schema": dict(schema)}
            chat["response_format"] = {"type": "json_schema", "json_schema": spec}
