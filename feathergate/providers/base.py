"""The narrow provider interface.

A provider turns an OpenAI request into one upstream HTTP request, and the
upstream's answer back into OpenAI's shapes. Providers do no I/O: the relay
(:mod:`feathergate.relay`) makes the call, owns deadlines and cancellation,
and hands bytes to the provider's pure translators.

Pipeline, left to right::

    bytes -> SSEDecoder -> provider.stream_translator().feed(event) -> chunks -> client
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from feathergate.config import Deployment
from feathergate.errors import GatewayError, UpstreamStatusError
from feathergate.sse import SSEDecoder, SSEEvent

__all__ = [
    "Asset",
    "CallContext",
    "Chunk",
    "Completion",
    "FetchesAssets",
    "Provider",
    "StreamTranslator",
    "UpstreamRequest",
    "Usage",
    "token_count",
    "translate_sse",
    "usage_of",
]

Chunk = dict[str, Any]
"""One OpenAI ``chat.completion.chunk`` object (or ``{"error": ...}`` never: errors raise)."""

Completion = dict[str, Any]
"""One OpenAI ``chat.completion`` object."""


class Usage(NamedTuple):
    """Tokens as the upstream counted them: tpm, the access log, spans, and spend.

    ``input`` includes the ``cached`` (read from a prompt cache) and
    ``cache_write`` ones, ``output`` the ``reasoning`` ones; the three details
    are priced apart by :func:`feathergate.keys.pricing.cost` and are 0 when
    the upstream does not say.
    """

    input: int
    output: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output


def token_count(usage: Any, key: str) -> int:
    """``usage[key]`` if it is a count, else 0 (and 0 for a usage that is no mapping)."""
    value = usage.get(key) if isinstance(usage, Mapping) else None
    # A negative count from a broken upstream would make a call earn money back.
    return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(usage: Any) -> Usage | None:
    """An OpenAI ``usage`` object (``prompt_tokens``, ``completion_tokens``), if it is one."""
    if not isinstance(usage, Mapping) or "prompt_tokens" not in usage:
        return None
    prompt = usage.get("prompt_tokens_details")
    return Usage(
        token_count(usage, "prompt_tokens"),
        token_count(usage, "completion_tokens"),
        cached=token_count(prompt, "cached_tokens"),
        cache_write=token_count(prompt, "cache_write_tokens"),
        reasoning=token_count(usage.get("completion_tokens_details"), "reasoning_tokens"),
    )


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: list[tuple[str, str]]
    content: bytes
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Asset:
    """An image the gateway downloaded for a provider that wants inline data."""

    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a translator needs to know about the call it serves."""

    alias: str  # the model name the client asked for, echoed in every response
    deployment: Deployment
    stream: bool
    include_usage: bool
    completion_id: str  # "chatcmpl-...": the same on every chunk
    created: int
    assets: Mapping[str, Asset] = field(default_factory=dict)
    # response_format asks for JSON: the answer's content must be JSON alone
    # (Anthropic holds back text written around its JSON tool call).
    json_mode: bool = False
    # The client's body is large: translated in a worker thread, to be encoded
    # in pieces (feathergate.clientjson).
    large_body: bool = False


class StreamTranslator(Protocol):
    """Synchronous, all state on the object; testable at every byte boundary.

    ``feed`` raises :class:`UpstreamStatusError` for an error event inside the
    stream; ``finish`` raises :class:`feathergate.errors.UpstreamProtocolError`
    when the stream ended before it was complete. Neither emits ``[DONE]``: the
    relay does, after ``finish``.
    """

    def feed(self, event: SSEEvent) -> list[Chunk]: ...

    def finish(self) -> list[Chunk]: ...


def translate_sse(
    decoder: SSEDecoder,
    translator: StreamTranslator,
    data: bytes,
    encode: Callable[[list[Chunk]], bytes],
) -> bytes:
    """The chunks of the events ``data`` completes, through ``encode``.

    An error event raises, as ``translator.feed`` does, with the chunks that
    came before it in this read encoded as the error's ``ahead``: the client
    gets them, then the error.
    """
    chunks: list[Chunk] = []
    try:
        for event in decoder.feed(data):
            chunks += translator.feed(event)
    except GatewayError as err:
        err.ahead = encode(chunks)
        raise
    return encode(chunks)


class Provider(Protocol):
    name: str

    def build_request(self, body: dict[str, Any], ctx: CallContext) -> UpstreamRequest:
        """Translate; raise :class:`feathergate.errors.InvalidRequest` for what cannot be."""
        ...

    def parse_response(self, body: bytes, ctx: CallContext) -> Completion: ...

    def stream_translator(self, ctx: CallContext) -> StreamTranslator: ...

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError: ...


class FetchesAssets(Protocol):
    """Optional: a provider that needs remote images downloaded and inlined."""

    def assets_to_fetch(self, body: dict[str, Any]) -> list[str]:
        """The http(s) URLs in ``body`` that the relay must download first."""
        ...
