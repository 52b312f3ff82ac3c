"""``POST /v1/completions`` to OpenAI-compatible upstreams: a passthrough (INGRESS.md §3).

vLLM, OpenAI's instruct models (``text-completion-openai/``), Azure and the
other OpenAI-compatible providers that have the legacy API get the body as
the client sent it but for ``model``; providers without it are a 400
(:mod:`feathergate.operations.unsupported`).

The answer comes back with only ``model`` spliced to the client's alias: the
whole body, or each streamed ``data:`` event (the events of a completions
stream have the same shape as the body, ``choices[].text`` holding the
delta). The pipe reads what it must: ``error`` events (raised, so the stream
ends with the gateway's error event), the chunk with a ``finish_reason`` or
``data: [DONE]`` (without either, the stream was cut), and ``usage``, which
reaches the client only when it asked (``stream_options.include_usage``), and
counts towards the deployment's tpm either way.

A ``mock_response`` deployment answers its text, streamed word by word too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from feathergate.errors import UpstreamProtocolError, UpstreamStatusError
from feathergate.ingress.openai_completions import CompletionsRequest
from feathergate.operations.base import Answer
from feathergate.operations.unsupported import check_offered
from feathergate.providers import get_provider
from feathergate.providers.base import CallContext, UpstreamRequest, Usage, usage_of
from feathergate.providers.openai import OpenAIProvider
from feathergate.providers.openai.errors import map_openai_error
from feathergate.providers.outgoing import request_headers
from feathergate.splice import Members, parse_members, set_member, splice
from feathergate.sse import DONE, SSEDecoder, SSEEvent

__all__ = [
    "CompletionsPassthrough",
    "CompletionsPipe",
    "MockCompletions",
    "mock",
    "passthrough",
]


def _members(text: str, what: str, source: bytes | None = None) -> Members:
    try:
        members = parse_members(text, "model", source)
    except ValueError:
        raise UpstreamProtocolError(f"upstream sent {what} that is not JSON") from None
    if not isinstance(members.value, dict):
        raise UpstreamProtocolError(f"upstream sent {what} that is not a JSON object")
    return members


class CompletionsPipe:
    """Upstream SSE in, the same events out with ``model`` renamed, then ``data: [DONE]``."""

    __slots__ = ("_alias", "_decoder", "_done", "_finished", "_include_usage", "tokens")

    def __init__(self, alias: str, include_usage: bool) -> None:
        self._alias = alias
        self._include_usage = include_usage
        self._decoder = SSEDecoder()
        self._done = False
        self._finished = False
        self.tokens: Usage | None = None

    def feed(self, data: bytes) -> bytes:
        return b"".join([self._event(event) for event in self._decoder.feed(data)])

    def finish(self) -> bytes:
        tail = b"".join([self._event(event) for event in self._decoder.finish()])
        if not (self._done or self._finished):
            raise UpstreamProtocolError("upstream stream ended before it was complete")
        return tail + DONE

    def _event(self, event: SSEEvent) -> bytes:
        data = event.data
        if data == "[DONE]":
            self._done = True
            return b""
        if self._done or not data:
            return b""
        members = _members(data, "a stream event")
        chunk: dict[str, Any] = members.value
        error = chunk.get("error")
        if error is not None:
            status = error.get("code") if isinstance(error, dict) else None
            status = status if isinstance(status, int) and 400 <= status <= 599 else 500
            raise map_openai_error(status, {}, data.encode())
        usage = chunk.get("usage")
        if usage:
            self.tokens = usage_of(usage)
        choices = chunk.get("choices")
        if not choices:
            if usage is None or not self._include_usage:
                return b""
        elif any(isinstance(c, dict) and c.get("finish_reason") for c in choices):
            self._finished = True
        return b"data: " + set_member(members, "model", self._alias) + b"\n\n"


class CompletionsPassthrough:
    __slots__ = ("provider",)

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider

    def build_request(self, request: CompletionsRequest, ctx: CallContext) -> UpstreamRequest:
        check_offered(ctx, "completions")
        dep = ctx.deployment
        headers = request_headers(dep, dict(self.provider.auth_headers(ctx)))
        url = self.provider.url(ctx, "completions")
        return UpstreamRequest(url, headers, splice(request.members, dep.model))

    def parse_response(self, body: bytes, request: CompletionsRequest, ctx: CallContext) -> Answer:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise UpstreamProtocolError("upstream sent a response that is not UTF-8") from None
        members = _members(text, "a response", body)
        tokens = usage_of(members.value.get("usage"))
        return Answer(set_member(members, "model", ctx.alias), tokens)

    def stream(self, request: CompletionsRequest, ctx: CallContext) -> CompletionsPipe:
        return CompletionsPipe(ctx.alias, request.include_usage)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_openai_error(status, headers, body)


def _mock_answer(text: str, request: CompletionsRequest, ctx: CallContext) -> bytes:
    """What an OpenAI-compatible server would answer: a body, or SSE bytes."""
    prompt = max(1, len(json.dumps(request.body.get("prompt"))) // 4)
    completion = max(1, len(text.split()))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    head = {
        "id": "cmpl-" + ctx.completion_id.removeprefix("chatcmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": ctx.deployment.model,
    }

    def choice(piece: str, finish: str | None) -> dict[str, Any]:
        return {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}

    if not ctx.stream:
        return json.dumps({**head, "choices": [choice(text, "stop")], "usage": usage}).encode()
    words = text.split(" ")
    pieces = [word + " " for word in words[:-1]] + words[-1:]
    events = [{**head, "choices": [choice(piece, None)]} for piece in pieces if piece]
    events.append({**head, "choices": [choice("", "stop")]})
    if request.include_usage:
        events.append({**head, "choices": [], "usage": usage})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + DONE


class MockCompletions(CompletionsPassthrough):
    """``mock_response``: the configured text, answered by the gateway itself."""

    local = True  # see feathergate.operations.local

    def build_request(self, request: CompletionsRequest, ctx: CallContext) -> UpstreamRequest:
        text = ctx.deployment.mock_response or ""
        return UpstreamRequest("local:completions", [], _mock_answer(text, request, ctx))


def passthrough(adapter: str) -> CompletionsPassthrough:
    provider = get_provider(adapter)
    assert isinstance(provider, OpenAIProvider)
    return CompletionsPassthrough(provider)


def mock(adapter: str) -> MockCompletions:
    return MockCompletions(OpenAIProvider())
