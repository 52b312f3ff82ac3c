"""OpenAI ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format``.

``tool_choice`` maps ``auto``/``none``/``required``/named to ``auto``/``none``/
``any``/``tool`` (PROTOCOLS.md §4.1); ``allowed_tools`` keeps only the listed
tools. ``parallel_tool_calls: false`` sets ``disable_parallel_tool_use``.

``response_format`` (json_object, json_schema) becomes a tool named
:data:`JSON_TOOL_NAME` whose input schema is the requested one, as litellm
does; the response side turns its input into ``message.content`` with
``finish_reason: stop``. The model is made to call it (``tool_choice: tool``),
or, when the client declared tools of its own, to call *some* tool
(``any``), so it either uses a real tool or answers in JSON. With thinking on
nothing is forced: the API refuses that, and the model may write text before
the call, which the response side drops (the content is the JSON alone; see
:mod:`.response` and :mod:`.stream`). The response side recognises the tool
by name, so clients may not declare a tool of that name.

A history with tool calls but no ``tools`` gets one uncallable placeholder
tool and ``tool_choice: none``, because the API refuses tool blocks without
tool definitions (rule 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.errors import InvalidRequest
from feathergate.providers.anthropic.wire import (
    MessageParam,
    MessagesRequest,
    ToolChoice,
    ToolParam,
)

__all__ = ["JSON_TOOL_NAME", "translate_tools"]

JSON_TOOL_NAME = "json_tool_call"

_PERMISSIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": True,
}


def _placeholder_tool() -> ToolParam:
    return {
        "name": "placeholder_tool",
        "description": "Not callable. Declared because the history contains tool calls.",
        "input_schema": {"type": "object", "properties": {}},
    }


def _tool(raw: Any, path: str) -> ToolParam:
    if not isinstance(raw, dict) or raw.get("type", "function") != "function":
        raise InvalidRequest(f"{path}: only tools of type 'function' are supported", param=path)
    function = raw.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"{path}.function.name is required", param=f"{path}.function.name")
    name: str = function["name"]
    if name == JSON_TOOL_NAME:
        raise InvalidRequest(
            f"{path}: the tool name '{JSON_TOOL_NAME}' is reserved for response_format",
            param=f"{path}.function.name",
        )
    tool: ToolParam = {"name": name, "input_schema": _schema(function.get("parameters"), path)}
    if isinstance(function.get("description"), str) and function["description"]:
        tool["description"] = function["description"]
    if isinstance(raw.get("cache_control"), dict):
        tool["cache_control"] = raw["cache_control"]
    return tool


def _schema(schema: Any, path: str) -> dict[str, Any]:
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{path}: the schema must be an object", param=path)
    if "type" not in schema and "properties" in schema:
        return {"type": "object", **schema}
    if schema.get("type") != "object":
        raise InvalidRequest(
            f"{path}: anthropic needs a JSON schema whose top-level type is 'object'", param=path
        )
    return dict(schema)


def _tool_choice(raw: Any, names: list[str]) -> ToolChoice | None:
    if raw is None:
        return None
    simple: dict[str, ToolChoice] = {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
    }
    if isinstance(raw, str) and raw in simple:
        return simple[raw]
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or name not in names:
            raise InvalidRequest(
                "'tool_choice' names a function that is not in 'tools'", param="tool_choice"
            )
        return {"type": "tool", "name": name}
    if isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        mode = (raw.get("allowed_tools") or {}).get("mode", "auto")
        if mode in ("auto", "required"):
            return simple[mode]
    raise InvalidRequest("'tool_choice' has an unsupported value", param="tool_choice")


def _allowed(raw: Any) -> set[str] | None:
    """The names an ``allowed_tools`` choice keeps, or None for all."""
    if not (isinstance(raw, dict) and raw.get("type") == "allowed_tools"):
        return None
    entries = (raw.get("allowed_tools") or {}).get("tools") or []
    return {
        e["function"]["name"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("function"), dict) and "name" in e["function"]
    }


def _json_tool(response_format: Any) -> ToolParam | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        schema = dict(_PERMISSIVE_SCHEMA)
        description = "Respond with a JSON object."
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "'response_format.json_schema' must be an object", param="response_format"
            )
        raw_schema = spec.get("schema")
        schema = (
            dict(_PERMISSIVE_SCHEMA)
            if raw_schema is None
            else _schema(raw_schema, "response_format.json_schema.schema")
        )
        description = spec.get("description") or "Respond with a JSON object matching the schema."
    else:
        raise InvalidRequest("'response_format' has an unsupported type", param="response_format")
    return {"name": JSON_TOOL_NAME, "description": str(description), "input_schema": schema}


def translate_tools(body: Mapping[str, Any], request: MessagesRequest, *, thinking: bool) -> None:
    raw_tools = body.get("tools") or []
    if not isinstance(raw_tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    raw_choice = body.get("tool_choice")
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(raw_tools)]
    allowed = _allowed(raw_choice)
    if allowed is not None:
        tools = [t for t in tools if t["name"] in allowed]
    choice = _tool_choice(raw_choice, [t["name"] for t in tools]) if tools else None
    if thinking and choice is not None and choice["type"] in ("any", "tool"):
        raise InvalidRequest(
            "anthropic cannot force a tool call while reasoning_effort is set",
            param="tool_choice",
        )
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        # With thinking on, forcing is refused upstream: the model may then answer in text.
        if not thinking and (not tools or (choice is not None and choice["type"] == "none")):
            choice = {"type": "tool", "name": JSON_TOOL_NAME}
        elif not thinking and (choice is None or choice["type"] == "auto"):
            choice = {"type": "any"}  # either a real tool call or the JSON answer
        tools.append(json_tool)
    if not tools and _has_tool_blocks(request["messages"]):
        tools, choice = [_placeholder_tool()], {"type": "none"}
    if not tools:
        return
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    request["tools"] = tools
    if choice is not None:
        request["tool_choice"] = choice


def _has_tool_blocks(messages: list[MessageParam]) -> bool:
    return any(b["type"] in ("tool_use", "tool_result") for m in messages for b in m["content"])
