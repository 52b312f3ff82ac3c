"""What the fake Gemini server refuses, with the errors Google sends for it.

Kept apart from :mod:`tests.fakes.gemini` (the scripted server) so each stays small.
Field lists are the v1beta proto messages, camelCase only (see that module).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["Rejection", "check_call", "check_identity", "google_error"]

Message = dict[str, Any]

_KEY_INVALID = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
]

_NO_DATA = "required oneof field 'data' must have one initialized field"
# fmt: off
_FIELDS: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "request": "contents systemInstruction generationConfig tools toolConfig safetySettings "
               "cachedContent",
    "content": "role parts",
    "part": "text thought thoughtSignature inlineData fileData functionCall functionResponse "
            "executableCode codeExecutionResult",
    "functionCall": "name args id",
    "functionResponse": "name response id",
    "inlineData": "mimeType data",
    "fileData": "mimeType fileUri",
    "generationConfig": "temperature topP topK maxOutputTokens stopSequences candidateCount "
                        "seed presencePenalty frequencyPenalty responseLogprobs logprobs "
                        "responseMimeType responseSchema responseJsonSchema thinkingConfig "
                        "responseModalities",
    "thinkingConfig": "thinkingBudget includeThoughts thinkingLevel",
    "tool": "functionDeclarations googleSearch codeExecution urlContext",
    "declaration": "name description parameters parametersJsonSchema response",
    "toolConfig": "functionCallingConfig",
    "functionCallingConfig": "mode allowedFunctionNames",
    "schema": "type format title description nullable enum maxItems minItems properties "
              "required minProperties maxProperties minLength maxLength pattern example "
              "anyOf propertyOrdering default items minimum maximum",
}.items()}
# fmt: on
_DATA = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse"})


def google_error(code: int, message: str, status: str, details: Iterable[Message] = ()) -> Message:
    return {"error": {"code": code, "message": message, "status": status, "details": [*details]}}


class Rejection(Exception):
    """A request the real API would refuse; ``error`` is Google's body for it."""

    def __init__(
        self, message: str, status: str = "INVALID_ARGUMENT", code: int = 400, details: Any = ()
    ) -> None:
        super().__init__(message)
        self.error = google_error(code, message, status, details)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _fields(obj: Any, kind: str, where: str) -> Message:
    if not isinstance(obj, dict):
        raise Rejection(f"Invalid JSON payload received. Expected an object at '{where}'.")
    unknown = [key for key in obj if key not in _FIELDS[kind]]
    if unknown:
        at = f" at '{where}'" if where else ""
        lines = [f'Unknown name "{key}"{at}: Cannot find field.' for key in unknown]
        violations = [{"field": where, "description": line} for line in lines]
        raise Rejection(
            "\n".join(f"Invalid JSON payload received. {line}" for line in lines),
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": violations,
                }
            ],
        )
    return obj


def _schema(schema: Any, where: str) -> None:
    if isinstance(schema, dict) and isinstance(schema.get("type"), list):
        raise Rejection(
            f"Invalid JSON payload received. Unknown name \"type\" at '{where}': "
            "Proto field is not repeating, cannot start list."
        )
    _fields(schema, "schema", where)
    for value in schema.get("enum", []):
        if not isinstance(value, str):
            raise Rejection(
                f"Invalid JSON payload received. Invalid value at '{where}.enum[0]' "
                f"(TYPE_STRING), {json.dumps(value)}"
            )
    properties = schema.get("properties", {})
    for n, value in enumerate(properties.values()):
        _schema(value, f"{where}.properties[{n}].value")
    for n, name in enumerate(schema.get("required", [])):
        if name not in properties:
            raise Rejection(
                f"* GenerateContentRequest.{where}.required[{n}]: property is not defined\n"
            )
    if "items" in schema:
        _schema(schema["items"], f"{where}.items")
    for n, branch in enumerate(schema.get("anyOf", [])):
        _schema(branch, f"{where}.any_of[{n}]")


def check_call(
    version: str,
    model: str,
    key: str | None,
    body: Any,
    *,
    api_key: str,
    models: Iterable[str],
    signatures: set[str] | None,
) -> None:
    """Raise :class:`Rejection` as Gemini would; ``signatures`` set means Gemini 3's check."""
    check_identity(version, model, key, api_key=api_key, models=models)
    if not isinstance(body, dict):
        raise Rejection("Invalid JSON payload received. Unexpected token.")
    _Validator(signatures).request(body)


def check_identity(
    version: str,
    model: str,
    key: str | None,
    *,
    api_key: str,
    models: Iterable[str],
    method: str = "generateContent",
) -> None:
    """The model exists for ``method`` and the key is the right one."""
    if model not in models:
        raise Rejection(
            f"models/{model} is not found for API version {version}, or is not supported for "
            f"{method}. Call ListModels to see the list of available models and their "
            "supported methods.",
            "NOT_FOUND",
            404,
        )
    if not key:
        raise Rejection(
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
            "PERMISSION_DENIED",
            403,
        )
    if key != api_key:
        raise Rejection("API key not valid. Please pass a valid API key.", details=_KEY_INVALID)


class _Validator:
    def __init__(self, signatures: set[str] | None) -> None:
        self._signatures = signatures

    def request(self, body: Message) -> None:
        _fields(body, "request", "")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise Rejection("* GenerateContentRequest.contents: contents is not specified\n")
        for i, content in enumerate(contents):
            self._content(content, f"contents[{i}]")
        if "systemInstruction" in body:
            self._content(body["systemInstruction"], "system_instruction", system=True)
        self._function_turns(contents)
        self._generation_config(body.get("generationConfig"))
        self._tools(body.get("tools"), body.get("toolConfig"))
        if self._signatures is not None:
            self._check_signatures(contents, self._signatures)

    def _content(self, content: Any, where: str, *, system: bool = False) -> None:
        _fields(content, "content", where)
        if not system and content.get("role") not in ("user", "model"):
            raise Rejection("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Rejection(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            self._part(part, f"{where}.parts[{j}]")

    def _part(self, part: Any, where: str) -> None:
        _fields(part, "part", where)
        present = [k for k in _DATA if part.get(k) not in (None, "")]  # "" is proto3's "unset"
        if len(present) != 1:
            raise Rejection(f"* GenerateContentRequest.{where}.data: {_NO_DATA}\n")
        kind = present[0]
        if kind == "text":
            return
        value = _fields(part[kind], kind, f"{where}.{_snake(kind)}")
        if kind == "functionCall" and not isinstance(value.get("args", {}), dict):
            raise Rejection(
                f"Invalid JSON payload received. Invalid value at '{where}.function_call.args' "
                f"(type.googleapis.com/google.protobuf.Struct), {json.dumps(value['args'])}"
            )
        if kind == "functionResponse" and not isinstance(value.get("response"), dict):
            raise Rejection(
                "Invalid JSON payload received. Invalid value at "
                f"'{where}.function_response.response' "
                f"(type.googleapis.com/google.protobuf.Struct), {json.dumps(value.get('response'))}"
            )
        if kind == "inlineData":
            try:
                base64.b64decode(str(value.get("data", "")), validate=True)
            except (binascii.Error, ValueError):
                raise Rejection(
                    f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
                    "Base64 decoding failed"
                ) from None

    @staticmethod
    def _function_turns(contents: list[Message]) -> None:
        for i, content in enumerate(contents):
            responses = sum("functionResponse" in part for part in content["parts"])
            previous = contents[i - 1] if i else {"parts": []}
            calls = sum("functionCall" in part for part in previous["parts"])
            if responses and (previous.get("role") != "model" or responses != calls):
                raise Rejection(
                    "Please ensure that the number of function response parts is equal to the "
                    "number of function call parts of the function call turn."
                )

    @staticmethod
    def _generation_config(config: Any) -> None:
        if config is None:
            return
        _fields(config, "generationConfig", "generation_config")
        if "thinkingConfig" in config:
            _fields(config["thinkingConfig"], "thinkingConfig", "generation_config.thinking_config")
        if len(config.get("stopSequences", [])) > 5:
            raise Rejection(
                "* GenerateContentRequest.generation_config.stop_sequences: "
                "the number of stop sequences must not exceed 5\n"
            )
        schema = "responseSchema" in config or "responseJsonSchema" in config
        if schema and config.get("responseMimeType") != "application/json":
            raise Rejection(
                "* GenerateContentRequest.generation_config.response_mime_type: "
                "response_mime_type must be application/json when a response schema is set\n"
            )

    @staticmethod
    def _tools(tools: Any, tool_config: Any) -> None:
        names: list[str] = []
        for i, tool in enumerate(tools or []):
            _fields(tool, "tool", f"tools[{i}]")
            for j, declaration in enumerate(tool.get("functionDeclarations", [])):
                where = f"tools[{i}].function_declarations[{j}]"
                _fields(declaration, "declaration", where)
                names.append(declaration.get("name"))
                parameters = declaration.get("parameters")
                if parameters is not None:
                    _schema(parameters, f"{where}.parameters")
                    if str(parameters.get("type", "")).lower() == "object" and not parameters.get(
                        "properties"
                    ):
                        raise Rejection(
                            f"* GenerateContentRequest.{where}.parameters.properties: "
                            "should be non-empty for OBJECT type\n"
                        )
        if tool_config is None:
            return
        _fields(tool_config, "toolConfig", "tool_config")
        where = "tool_config.function_calling_config"
        calling = _fields(
            tool_config.get("functionCallingConfig", {}), "functionCallingConfig", where
        )
        mode = calling.get("mode", "AUTO")
        if mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            raise Rejection(
                f"Invalid JSON payload received. Invalid value at '{where}.mode', {mode!r}"
            )
        allowed = calling.get("allowedFunctionNames", [])
        if allowed and mode not in ("ANY", "VALIDATED"):
            raise Rejection(
                f"* GenerateContentRequest.{where}.allowed_function_names: "
                "allowed_function_names can only be set when mode is ANY or VALIDATED\n"
            )
        for name in allowed:
            if name not in names:
                raise Rejection(
                    f"* GenerateContentRequest.{where}.allowed_function_names: "
                    f"function {name!r} is not declared\n"
                )

    @staticmethod
    def _check_signatures(contents: list[Message], issued: set[str]) -> None:
        """Gemini 3: since the last user text turn, each model step's first call is signed."""
        start = max(
            (
                i
                for i, c in enumerate(contents)
                if c["role"] == "user" and any("functionResponse" not in p for p in c["parts"])
            ),
            default=0,
        )
        for i, content in enumerate(contents[start:], start):
            calls = [p for p in content["parts"] if "functionCall" in p]
            if content["role"] != "model" or not calls:
                continue
            signature = calls[0].get("thoughtSignature")
            if signature not in issued and signature != "skip_thought_signature_validator":
                name = calls[0]["functionCall"].get("name")
                problem = "is missing a" if signature is None else "has an invalid"
                raise Rejection(
                    f"Function call `default_api:{name}` in the {i}. content block {problem} "
                    "thought_signature. See https://ai.google.dev/gemini-api/docs/thought-signatures"
                )
