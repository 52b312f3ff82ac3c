"""OpenAI Chat Completions request -> Anthropic Messages request (PROTOCOLS.md §4.1).

Pure: no I/O. Choices a reviewer should know, each made so that an OpenAI
client keeps working rather than being told about Anthropic's rules:

- ``temperature`` is **clamped** to [0, 1]. Clients routinely send OpenAI's
  0-2 range; the common gateways clamp rather than reject, and so do we.
- ``max_tokens`` is required upstream. Precedence: ``max_completion_tokens``,
  then ``max_tokens``, then the deployment's ``model_info.max_output_tokens``,
  then :data:`DEFAULT_MAX_TOKENS` (8192: litellm's 4096 truncates long
  tool-call JSON, PROTOCOLS.md §4.8.10).
- ``reasoning_effort`` becomes ``thinking.budget_tokens`` (:data:`THINKING_BUDGETS`).
  Anthropic counts thinking inside ``max_tokens`` and needs ``max_tokens >
  budget``; when it is not, the budget is added on top so the visible answer
  keeps the client's allowance. With thinking on, ``temperature``, ``top_p``
  and ``top_k`` are not sent (the API accepts only their defaults), and a
  forced ``tool_choice`` is a 400. Thinking is left off when the last assistant
  turn has tool calls but no echoed thinking block, which the API would reject.
- ``response_format`` becomes a forced tool; see :mod:`.tools`.
- Parameters Anthropic lacks (``seed``, penalties, ``logit_bias``, ``logprobs``,
  and anything unknown) raise :class:`UnsupportedParameter`, or are dropped when
  the deployment has ``drop_params``. ``null`` and OpenAI's no-op defaults
  (``frequency_penalty: 0``, ``logprobs: false``, ``n: 1`` ...) always pass.
- Tool call ids are rewritten to ``^[a-zA-Z0-9_-]+$`` by :func:`sanitize_tool_id`,
  a deterministic function, so ``tool_use.id`` and ``tool_use_id`` still match.
- ``user`` becomes ``metadata.user_id`` unless it looks like an e-mail address
  or phone number, which Anthropic asks never to be sent.
- Whitespace-only ``stop`` entries (rejected upstream) are a 400, or dropped
  with ``drop_params``. ``top_k``, not an OpenAI field, is passed through.

``messages`` are converted in :mod:`.messages`, ``tools`` in :mod:`.tools`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from feathergate.config import Deployment
from feathergate.errors import InvalidRequest, UnsupportedParameter
from feathergate.providers.anthropic.messages import convert_messages, sanitize_tool_id
from feathergate.providers.anthropic.tools import JSON_TOOL_NAME, translate_tools
from feathergate.providers.anthropic.wire import MessageParam, MessagesRequest, ThinkingParam

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_TOOL_NAME",
    "PROVIDER",
    "THINKING_BUDGETS",
    "sanitize_tool_id",
    "translate_request",
]

PROVIDER = "anthropic"  # the name UnsupportedParameter reports
DEFAULT_MAX_TOKENS = 8192
THINKING_BUDGETS = {
    "minimal": 1024,  # the API's minimum budget
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,
    "max": 16384,
}

_HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "reasoning_effort",
    }
)
# OpenAI-side bookkeeping with no effect on the answer itself.
_IGNORED = frozenset({"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"})
_NOOP_DEFAULTS: dict[str, Any] = {
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "top_logprobs": 0,
    "logit_bias": {},
}
_PERSONAL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|\+?[\d\s().-]{7,}")


def translate_request(
    body: Mapping[str, Any], deployment: Deployment, *, stream: bool
) -> MessagesRequest:
    """Raise :class:`InvalidRequest` for what cannot be translated."""
    _check_params(body, deployment.drop_params)
    system, messages = convert_messages(body.get("messages"))
    budget = _thinking_budget(body.get("reasoning_effort"), messages)
    request: MessagesRequest = {
        "model": deployment.model,
        "max_tokens": _max_tokens(body, deployment, budget),
        "messages": messages,
    }
    if system:
        request["system"] = system
    if stream:
        request["stream"] = True
    if budget is None:
        _sampling(body, request)
    else:
        request["thinking"] = ThinkingParam(type="enabled", budget_tokens=budget)
    _stop(body.get("stop"), deployment.drop_params, request)
    translate_tools(body, request, thinking=budget is not None)
    user = body.get("user")
    if isinstance(user, str) and user.strip() and not _PERSONAL.fullmatch(user.strip()):
        request["metadata"] = {"user_id": user}
    return request


def _check_params(body: Mapping[str, Any], drop: bool) -> None:
    for key, value in body.items():
        if key in _HANDLED or key in _IGNORED or value is None:
            continue
        if key in _NOOP_DEFAULTS and value == _NOOP_DEFAULTS[key]:
            continue
        if not drop:
            raise UnsupportedParameter(key, PROVIDER)
    n = body.get("n")
    if n is not None and (not _is_int(n) or n < 1):
        raise InvalidRequest("'n' must be a positive integer", param="n")
    if n is not None and n > 1:
        raise InvalidRequest("anthropic returns one choice per request; 'n' must be 1", param="n")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise InvalidRequest(f"'{key}' must be a positive integer", param=key)
    return int(value)


def _max_tokens(body: Mapping[str, Any], deployment: Deployment, budget: int | None) -> int:
    chosen = _positive_int(body, "max_completion_tokens")
    if chosen is None:
        chosen = _positive_int(body, "max_tokens")
    if chosen is None:
        limit = deployment.model_info.get("max_output_tokens")
        chosen = limit if _is_int(limit) and limit > 0 else DEFAULT_MAX_TOKENS
    if budget is not None and chosen <= budget:
        return budget + chosen
    return chosen


def _thinking_budget(effort: Any, messages: list[MessageParam]) -> int | None:
    if effort is None or effort == "none":
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        choices = ", ".join(["none", *THINKING_BUDGETS])
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {choices}", param="reasoning_effort"
        )
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is not None and any(b["type"] == "tool_use" for b in last["content"]):
        first = last["content"][0]["type"]
        if first not in ("thinking", "redacted_thinking"):
            return None  # PROTOCOLS.md §4.8.16: the client dropped the signed blocks
    return THINKING_BUDGETS[effort]


def _sampling(body: Mapping[str, Any], request: MessagesRequest) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature):
            raise InvalidRequest("'temperature' must be a number", param="temperature")
        request["temperature"] = min(max(float(temperature), 0.0), 1.0)
    top_p = body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p):
            raise InvalidRequest("'top_p' must be a number", param="top_p")
        request["top_p"] = float(top_p)
    top_k = body.get("top_k")
    if top_k is not None:
        if not _is_int(top_k):
            raise InvalidRequest("'top_k' must be an integer", param="top_k")
        request["top_k"] = int(top_k)


def _stop(stop: Any, drop: bool, request: MessagesRequest) -> None:
    if stop is None:
        return
    values = [stop] if isinstance(stop, str) else stop
    if not isinstance(values, list) or not all(isinstance(s, str) for s in values):
        raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")
    kept = [s for s in values if s.strip()]
    if len(kept) < len(values) and not drop:
        raise InvalidRequest(
            "anthropic rejects whitespace-only stop sequences; "
            "remove them or set drop_params: true",
            param="stop",
        )
    if kept:
        request["stop_sequences"] = kept
