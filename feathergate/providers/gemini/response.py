"""Gemini ``GenerateContentResponse`` -> OpenAI ``chat.completion``, and Google errors.

The per-part, finish-reason and usage rules live here once and the stream
translator reuses them, so a streamed answer reassembles to exactly what
the non-streamed one returns (tests/test_gemini_translate.py checks that).

* Text parts form ``content``; ``thought: true`` parts form the
  ``reasoning_content`` extension; ``content`` is ``null`` when no text came.
* A ``functionCall`` becomes a tool call with ``arguments =
  JSON.stringify(args ?? {})`` and an id from :mod:`.ids`. Gemini never
  streams argument fragments (§3.4), so each call is one delta.
* ``STOP`` (or no reason at all) after a function call is ``tool_calls``;
  blocking reasons are ``content_filter``; a prompt blocked before any
  candidate is one ``content_filter`` choice with ``content: null`` (§4.3).
* Usage per §4.4: completion = candidates + thoughts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from feathergate.errors import UpstreamProtocolError, UpstreamStatusError
from feathergate.providers.base import CallContext, Completion
from feathergate.providers.chunks import completion, make_usage
from feathergate.providers.gemini.ids import make_tool_call_id

__all__ = [
    "Piece",
    "choice_index",
    "error_from_payload",
    "finish_reason",
    "logprobs_of",
    "map_error",
    "parse_response",
    "pieces",
    "usage_of",
]

# fmt: off
_FILTERED = frozenset({
    "SAFETY", "RECITATION", "LANGUAGE", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "MODEL_ARMOR", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "NO_IMAGE",
    "IMAGE_RECITATION", "ESCALATION",
})
# fmt: on
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True, slots=True)
class Piece:
    """One part, as OpenAI will see it: ``kind`` is content, reasoning or tool."""

    kind: str
    text: str = ""
    tool_call: dict[str, Any] = field(default_factory=dict)


def pieces(candidate: Mapping[str, Any], seed: str, choice: int, first_tool: int) -> list[Piece]:
    """The candidate's parts in order; tool calls are numbered from ``first_tool``."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    out: list[Piece] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, Mapping):
            continue
        call = part.get("functionCall")
        if isinstance(call, Mapping):
            position = first_tool + sum(p.kind == "tool" for p in out)
            out.append(Piece("tool", tool_call=_tool_call(call, part, seed, choice, position)))
        elif isinstance(part.get("text"), str) and part["text"]:
            out.append(Piece("reasoning" if part.get("thought") else "content", part["text"]))
    return out


def _tool_call(
    call: Mapping[str, Any], part: Mapping[str, Any], seed: str, choice: int, position: int
) -> dict[str, Any]:
    args = call.get("args")
    signature = part.get("thoughtSignature")
    call_id = call.get("id")
    return {
        "id": make_tool_call_id(
            seed,
            choice,
            position,
            call_id=call_id if isinstance(call_id, str) else None,
            signature=signature if isinstance(signature, str) else None,
        ),
        "type": "function",
        "function": {
            "name": str(call.get("name", "")),
            "arguments": json.dumps(args if isinstance(args, Mapping) else {}, ensure_ascii=False),
        },
    }


def choice_index(candidate: Mapping[str, Any], position: int) -> int:
    """Gemini omits ``index`` for a lone candidate; fall back to the position."""
    index = candidate.get("index")
    return index if isinstance(index, int) else position


def finish_reason(reason: Any, saw_tool: bool) -> str:
    if reason in (None, "STOP"):
        return "tool_calls" if saw_tool else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    return "content_filter" if reason in _FILTERED else "stop"


def usage_of(meta: Any) -> dict[str, Any]:
    meta = meta if isinstance(meta, Mapping) else {}

    def count(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) else 0

    prompt, thoughts = count("promptTokenCount"), count("thoughtsTokenCount")
    completion_tokens = count("candidatesTokenCount") + thoughts
    total = meta.get("totalTokenCount")
    return make_usage(
        prompt,
        completion_tokens,
        total=total if isinstance(total, int) else None,
        cached=count("cachedContentTokenCount"),
        reasoning=thoughts,
    )


def logprobs_of(candidate: Mapping[str, Any]) -> dict[str, Any] | None:
    """``logprobsResult`` in OpenAI's ``{content: [...], refusal: null}`` shape."""
    result = candidate.get("logprobsResult")
    if not isinstance(result, Mapping):
        return None
    chosen = result.get("chosenCandidates") or []
    top = result.get("topCandidates") or []

    def entry(token: Mapping[str, Any]) -> dict[str, Any]:
        text = str(token.get("token", ""))
        logprob = token.get("logProbability", 0.0)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    content = []
    for i, token in enumerate(chosen):
        alternatives = top[i].get("candidates", []) if i < len(top) else []
        content.append({**entry(token), "top_logprobs": [entry(t) for t in alternatives]})
    return {"content": content, "refusal": None}


def parse_response(raw: bytes, ctx: CallContext) -> Completion:
    data = _decode(raw)
    try:
        return _completion(data, ctx)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UpstreamProtocolError(f"gemini sent a malformed response ({exc!r})") from None


def _completion(data: dict[str, Any], ctx: CallContext) -> Completion:
    seed = data.get("responseId")
    seed = seed if isinstance(seed, str) and seed else ctx.completion_id
    candidates = data.get("candidates")
    choices = []
    for position, candidate in enumerate(candidates if isinstance(candidates, list) else []):
        if isinstance(candidate, Mapping):
            choices.append(_choice(candidate, seed, choice_index(candidate, position)))
    if not choices:
        blocked = isinstance(data.get("promptFeedback"), Mapping) and bool(
            data["promptFeedback"].get("blockReason")
        )
        message = {"role": "assistant", "content": None, "refusal": None}
        reason = "content_filter" if blocked else "stop"
        choices = [{"index": 0, "message": message, "finish_reason": reason}]
    usage = usage_of(data["usageMetadata"]) if "usageMetadata" in data else None
    return completion(ctx, sorted(choices, key=lambda c: c["index"]), usage)


def _choice(candidate: Mapping[str, Any], seed: str, index: int) -> dict[str, Any]:
    found = pieces(candidate, seed, index, 0)
    text = "".join(p.text for p in found if p.kind == "content")
    reasoning = "".join(p.text for p in found if p.kind == "reasoning")
    calls = [p.tool_call for p in found if p.kind == "tool"]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": index,
        "message": message,
        "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
    }
    logprobs = logprobs_of(candidate)
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return choice


def _decode(raw: bytes) -> dict[str, Any]:
    """The response object; an ``error`` body (even wrapped in ``[...]``) raises it."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise UpstreamProtocolError("gemini returned a body that is not JSON") from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise UpstreamProtocolError("gemini returned JSON that is not a response object")
    if isinstance(data.get("error"), Mapping):
        raise error_from_payload(None, data["error"], {})
    return data


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamStatusError:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, list) and data:
        data = data[0]  # the non-SSE streaming endpoint wraps errors in an array (§3.4)
    error = data.get("error") if isinstance(data, Mapping) else None
    if not isinstance(error, Mapping):
        text = body.decode("utf-8", "replace").strip()
        detail = f": {text[:200]}" if text and not text.startswith("<") else ""
        error = {"message": f"gemini returned HTTP {status}{detail}"}
    return error_from_payload(status, error, headers)


def error_from_payload(
    status: int | None, error: Mapping[str, Any], headers: Mapping[str, str]
) -> UpstreamStatusError:
    """A Google ``error`` object; ``status`` None means take its ``code`` (in-stream errors)."""
    if status is None:
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    message = str(error.get("message") or f"gemini returned HTTP {status}")
    google_status = error.get("status")
    code_name = google_status if isinstance(google_status, str) else None
    details = error.get("details")
    details = details if isinstance(details, list) else []
    reasons = {d.get("reason") for d in details if isinstance(d, Mapping)}
    if status == 400 and "API_KEY_INVALID" in reasons:
        # Google says 400; OpenAI clients only raise AuthenticationError on 401 (§4.8.15).
        return UpstreamStatusError(
            401, message, type="authentication_error", code="invalid_api_key"
        )
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return UpstreamStatusError(
        status,
        message,
        type=error_type,
        code=code_name,
        retry_after=_retry_after(headers, details),
    )


def _retry_after(headers: Mapping[str, str], details: list[Any]) -> str | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            return value
    for detail in details:
        delay = detail.get("retryDelay") if isinstance(detail, Mapping) else None
        if isinstance(delay, str) and delay.endswith("s"):
            # google.rpc.RetryInfo: "23s" / "0.5s"; Retry-After wants whole seconds.
            try:
                return str(max(1, math.ceil(float(delay[:-1]))))
            except ValueError:
                return None
    return None
