"""The Messages API over a chat provider: for every upstream that is not Anthropic.

::

    Messages request --to_chat--> Chat request --provider--> upstream
    client <--MessagesEncoder-- Chat chunks <--provider translator-- upstream SSE

The provider's own translators do the upstream's half (the OpenAI-compatible
passthrough, or Chat <-> Gemini), so this module only chooses the Chat
request's dialect per deployment:

- OpenAI and Azure get ``max_completion_tokens`` (their reasoning models
  refuse ``max_tokens``); other OpenAI-compatible servers keep ``max_tokens``,
  which is what they all know.
- ``max_tokens`` is clamped to ``model_info.max_output_tokens`` (or
  ``max_tokens``) when the deployment declares one: Claude Code asks for
  32,000 and more, and e.g. gpt-4o refuses anything over 16,384.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feathergate.config import Deployment
from feathergate.errors import UpstreamStatusError
from feathergate.ingress.anthropic.request import MessagesRequest
from feathergate.ingress.anthropic.stream import MessagesEncoder
from feathergate.ingress.anthropic.to_chat import Family, translation
from feathergate.ingress.anthropic.to_message import to_message
from feathergate.operations.base import Answer
from feathergate.providers import get_provider
from feathergate.providers.base import (
    CallContext,
    Provider,
    UpstreamRequest,
    Usage,
    translate_sse,
    usage_of,
)
from feathergate.sse import SSEDecoder

__all__ = ["MessagesPipe", "MessagesViaChat", "message_id", "messages"]

_MAX_COMPLETION_TOKENS = frozenset({"openai", "azure"})


def message_id(ctx: CallContext) -> str:
    return "msg_" + ctx.completion_id.removeprefix("chatcmpl-")


def _output_limit(dep: Deployment) -> int | None:
    for key in ("max_output_tokens", "max_tokens"):
        value = dep.model_info.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class MessagesPipe:
    """Upstream SSE bytes -> chat chunks (the provider's translator) -> Messages events."""

    __slots__ = ("_decoder", "_encoder", "_translator")

    def __init__(self, provider: Provider, ctx: CallContext, encoder: MessagesEncoder) -> None:
        self._decoder = SSEDecoder()
        self._translator = provider.stream_translator(ctx)
        self._encoder = encoder

    @property
    def tokens(self) -> Usage | None:
        return self._encoder.tokens

    def feed(self, data: bytes) -> bytes:
        return translate_sse(self._decoder, self._translator, data, self._encoder.encode)

    def finish(self) -> bytes:
        translator = self._translator
        chunks = [c for e in self._decoder.finish() for c in translator.feed(e)]
        return self._encoder.encode(chunks + translator.finish()) + self._encoder.finish()


class MessagesViaChat:
    __slots__ = ("family", "provider")

    def __init__(self, provider: Provider, family: Family) -> None:
        self.provider = provider
        self.family = family

    def chat_body(self, request: MessagesRequest, dep: Deployment) -> dict[str, Any]:
        body = dict(translation(request, self.family).body)
        body["model"] = request.model
        limit = _output_limit(dep)
        if limit is not None and body.get("max_tokens", 0) > limit:
            body["max_tokens"] = limit
        renamed = self.family == "openai" and dep.provider in _MAX_COMPLETION_TOKENS
        if renamed and "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        return body

    def assets_to_fetch(self, request: MessagesRequest) -> list[str]:
        fetch = getattr(self.provider, "assets_to_fetch", None)
        if fetch is None:
            return []
        urls: list[str] = fetch(translation(request, self.family).body)
        return urls

    def build_request(self, request: MessagesRequest, ctx: CallContext) -> UpstreamRequest:
        return self.provider.build_request(self.chat_body(request, ctx.deployment), ctx)

    def _encoder(self, request: MessagesRequest, ctx: CallContext) -> MessagesEncoder:
        found = translation(request, self.family)
        return MessagesEncoder(
            message_id=message_id(ctx), alias=ctx.alias, names=found.names, stops=found.stop
        )

    def parse_response(self, body: bytes, request: MessagesRequest, ctx: CallContext) -> Answer:
        completion = self.provider.parse_response(body, ctx)
        found = translation(request, self.family)
        message = to_message(
            completion,
            message_id=message_id(ctx),
            alias=ctx.alias,
            names=found.names,
            stops=found.stop,
        )
        payload = json.dumps(message).encode()
        return Answer(payload, usage_of(completion.get("usage")))

    def stream(self, request: MessagesRequest, ctx: CallContext) -> MessagesPipe:
        return MessagesPipe(self.provider, ctx, self._encoder(request, ctx))

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return self.provider.map_error(status, headers, body)


def messages(adapter: str) -> MessagesViaChat:
    return MessagesViaChat(get_provider(adapter), "gemini" if adapter == "gemini" else "openai")
