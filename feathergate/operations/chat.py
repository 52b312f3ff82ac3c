"""Chat completions over any provider: the provider's translators, OpenAI's bytes out.

This is the hot path. The stream pipe is the relay's former inner loop,
unchanged: SSE decoder -> provider translator -> one ``data:`` line per chunk,
and ``data: [DONE]`` at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from feathergate.errors import UpstreamStatusError
from feathergate.operations.base import Answer, ClientRequest, StreamPipe
from feathergate.providers import get_provider
from feathergate.providers.base import (
    CallContext,
    Chunk,
    Provider,
    UpstreamRequest,
    Usage,
    translate_sse,
    usage_of,
)
from feathergate.sse import DONE, SSEDecoder, encode_data

__all__ = ["ChatOperation", "ChatPipe", "chat"]


class ChatPipe:
    __slots__ = ("_decoder", "_strip_usage", "_translator", "tokens")

    def __init__(self, provider: Provider, ctx: CallContext, *, strip_usage: bool = False) -> None:
        self._decoder = SSEDecoder()
        self._translator = provider.stream_translator(ctx)
        self._strip_usage = strip_usage
        self.tokens: Usage | None = None

    def _encode(self, chunks: list[Chunk]) -> bytes:
        for chunk in chunks:
            usage = chunk.get("usage")
            if usage:
                self.tokens = usage_of(usage)
                if self._strip_usage and not chunk.get("choices"):
                    chunks = [c for c in chunks if c is not chunk]
        return b"".join(encode_data(chunk) for chunk in chunks)

    def feed(self, data: bytes) -> bytes:
        return translate_sse(self._decoder, self._translator, data, self._encode)

    def finish(self) -> bytes:
        translator = self._translator
        chunks = [c for e in self._decoder.finish() for c in translator.feed(e)]
        return self._encode(chunks + translator.finish()) + DONE


class ChatOperation:
    """``POST /v1/chat/completions`` for one provider."""

    __slots__ = ("provider",)

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def assets_to_fetch(self, request: ClientRequest) -> list[str]:
        fetch = getattr(self.provider, "assets_to_fetch", None)
        return fetch(request.body) if fetch is not None else []

    def build_request(self, request: ClientRequest, ctx: CallContext) -> UpstreamRequest:
        return self.provider.build_request(request.body, ctx)

    def parse_response(self, body: bytes, request: ClientRequest, ctx: CallContext) -> Answer:
        # A provider may hand the client's bytes over itself (OpenAI's passthrough).
        own = getattr(self.provider, "relay_response", None)
        relayed = own(body, ctx) if own is not None else None
        if relayed is not None:
            payload, completion = relayed
            return Answer(payload, usage_of(completion.get("usage")))
        completion = self.provider.parse_response(body, ctx)
        return Answer(json.dumps(completion).encode(), usage_of(completion.get("usage")))

    def stream(self, request: ClientRequest, ctx: CallContext) -> StreamPipe:
        # Usage asked upstream for billing only (virtual keys) is not the client's.
        strip = bool(getattr(request, "strip_usage", False))
        # A provider may relay its stream its own way (OpenAI's passthrough: bytes).
        own = getattr(self.provider, "stream_pipe", None)
        pipe: StreamPipe | None = own(ctx, strip_usage=strip) if own is not None else None
        return pipe if pipe is not None else ChatPipe(self.provider, ctx, strip_usage=strip)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return self.provider.map_error(status, headers, body)


def chat(adapter: str) -> ChatOperation:
    return ChatOperation(get_provider(adapter))
