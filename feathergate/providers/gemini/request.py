"""OpenAI Chat Completions request -> Gemini ``GenerateContentRequest`` (PROTOCOLS.md §4.2).

Pure: the deployment's ``drop_params`` and the pre-downloaded images come in
through the :class:`CallContext`. A parameter Gemini has no field for is a
400 naming it (:class:`UnsupportedParameter`), or silently left out when the
deployment sets ``drop_params``, LiteLLM's switch for the same choice.
``user`` is always left out: it is an end-user tag for abuse monitoring and
Gemini has nowhere to put it, so refusing it would only break clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from feathergate.errors import InvalidRequest, UnsupportedParameter
from feathergate.providers.base import CallContext
from feathergate.providers.gemini.messages import convert_messages
from feathergate.providers.gemini.schema import InlineBudget, clean_parameters
from feathergate.providers.gemini.wire import (
    FunctionCallingConfig,
    FunctionDeclaration,
    GenerateContentRequest,
    GenerationConfig,
    ThinkingConfig,
)

__all__ = ["MAX_STOP_SEQUENCES", "PROVIDER", "THINKING_BUDGETS", "build_body"]

PROVIDER = "gemini"
MAX_STOP_SEQUENCES = 5

# litellm's budgets for low/medium/high; the ends are ours. "none" is 0 (off,
# where the model allows it); "max" stays within every 2.5 model's ceiling.
THINKING_BUDGETS = {
    "none": 0,
    "minimal": 128,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,
    "max": 24576,
}

_SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",  # not OpenAI, but sent by LiteLLM users and native to Gemini
    "n": "candidateCount",
    "seed": "seed",
}
_PENALTIES = {"presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}
# Handled below, or with no effect on what Gemini generates.
# fmt: off
_KNOWN = frozenset({
    *_SAMPLING, *_PENALTIES,
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "stop", "logprobs", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "reasoning_effort", "user", "thinking",
})
# fmt: on


def build_body(body: Mapping[str, Any], ctx: CallContext) -> GenerateContentRequest:
    drop = ctx.deployment.drop_params
    for key, value in body.items():
        if key not in _KNOWN and value is not None and not drop:
            raise UnsupportedParameter(key, PROVIDER)
    contents, system = convert_messages(body.get("messages"), ctx.assets)
    request: GenerateContentRequest = {"contents": contents}
    if system is not None:
        request["systemInstruction"] = system
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    declarations = _declarations(body.get("tools"), drop)
    if declarations:
        request["tools"] = [{"functionDeclarations": declarations}]
    calling = _tool_choice(body.get("tool_choice"), [d["name"] for d in declarations])
    if calling is not None:
        request["toolConfig"] = {"functionCallingConfig": calling}
    if body.get("parallel_tool_calls") is False and len(declarations) > 1 and not drop:
        # Gemini may always answer with parallel calls; one tool makes that moot.
        raise UnsupportedParameter("parallel_tool_calls", PROVIDER)
    return request


def _generation_config(body: Mapping[str, Any]) -> GenerationConfig:
    config: dict[str, Any] = {
        name: body[key] for key, name in _SAMPLING.items() if body.get(key) is not None
    }
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = _stop(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    # 0 is OpenAI's default, and Gemini 3 rejects penalties outright.
    for key, name in _PENALTIES.items():
        if body.get(key):
            config[name] = body[key]
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if body.get("top_logprobs"):
            config["logprobs"] = body["top_logprobs"]
    config.update(_response_format(body.get("response_format")))
    effort = body.get("reasoning_effort")
    if effort is not None:
        config["thinkingConfig"] = _thinking(effort)
    elif body.get("thinking") is not None:
        config["thinkingConfig"] = _thinking_budget(body["thinking"])
    return cast(GenerationConfig, config)


def _stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise InvalidRequest("stop must be a string or an array of strings", param="stop")
    sequences = [s for s in sequences if s]
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"stop: gemini accepts at most {MAX_STOP_SEQUENCES} sequences, got {len(sequences)}",
            param="stop",
        )
    return sequences


def _response_format(response_format: Any) -> dict[str, Any]:
    if response_format is None:
        return {}
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        # responseJsonSchema takes JSON Schema as is ($ref, additionalProperties, ...).
        return {"responseMimeType": "application/json", "responseJsonSchema": dict(schema)}
    raise InvalidRequest(f"response_format.type {kind!r} is not supported", param="response_format")


def _thinking(effort: Any) -> ThinkingConfig:
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        allowed = ", ".join(THINKING_BUDGETS)
        raise InvalidRequest(f"reasoning_effort must be one of {allowed}", param="reasoning_effort")
    if budget == 0:
        return {"thinkingBudget": 0}
    return {"thinkingBudget": budget, "includeThoughts": True}


def _thinking_budget(thinking: Any) -> ThinkingConfig:
    """LiteLLM's ``thinking`` parameter (Anthropic's shape), which the Messages ingress sends."""
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
    if kind == "enabled" and isinstance(budget, int) and not isinstance(budget, bool):
        return {"thinkingBudget": budget, "includeThoughts": True}
    if kind == "adaptive":
        return {"thinkingBudget": -1, "includeThoughts": True}  # Gemini's dynamic thinking
    if kind == "disabled":
        return {"thinkingBudget": 0}
    raise InvalidRequest(
        "thinking must be {type: enabled, budget_tokens}, {type: adaptive} or {type: disabled}",
        param="thinking",
    )


def _declarations(tools: Any, drop: bool) -> list[FunctionDeclaration]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    declarations: list[FunctionDeclaration] = []
    budget = InlineBudget()
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            if drop:
                continue
            raise UnsupportedParameter(f"tools[{i}].type", PROVIDER)
        fn = tool.get("function")
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"tools[{i}].function.name is required", param="tools")
        declaration: FunctionDeclaration = {"name": fn["name"]}
        if isinstance(fn.get("description"), str) and fn["description"]:
            declaration["description"] = fn["description"]
        if fn.get("parameters") is not None:
            param = f"tools[{i}].function.parameters"
            parameters = clean_parameters(fn["parameters"], param, budget)
            if parameters is not None:
                declaration["parameters"] = parameters
        declarations.append(declaration)
    return declarations


def _tool_choice(choice: Any, names: list[str]) -> FunctionCallingConfig | None:
    if choice is None or (not names and choice in ("auto", "none")):
        return None
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "none":
        return {"mode": "NONE"}
    if not names:
        raise InvalidRequest("tool_choice requires tools", param="tool_choice")
    if choice == "required":
        return {"mode": "ANY"}
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "function" and isinstance(choice.get("function"), Mapping):
        return {"mode": "ANY", "allowedFunctionNames": [_known(choice["function"], names)]}
    if kind == "allowed_tools" and isinstance(choice.get("allowed_tools"), Mapping):
        allowed = choice["allowed_tools"]
        listed = allowed.get("tools") if isinstance(allowed.get("tools"), list) else []
        chosen = [_known(t.get("function"), names) for t in listed if isinstance(t, Mapping)]
        # VALIDATED: "call one of these, or answer in text", OpenAI's allowed_tools "auto".
        mode = "ANY" if allowed.get("mode") == "required" else "VALIDATED"
        return {"mode": mode, "allowedFunctionNames": chosen}
    raise InvalidRequest(f"tool_choice {choice!r} is not supported", param="tool_choice")


def _known(function: Any, names: list[str]) -> str:
    name = function.get("name") if isinstance(function, Mapping) else None
    if name not in names:
        raise InvalidRequest(f"tool_choice names unknown function {name!r}", param="tool_choice")
    return str(name)
