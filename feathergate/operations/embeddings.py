"""``POST /v1/embeddings`` to OpenAI and every OpenAI-compatible server: a passthrough.

The request goes out as the client sent it but for ``model``
(:mod:`feathergate.splice`): ``encoding_format`` included, since OpenAI,
Azure and vLLM all answer base64, which is a quarter of the bytes of the
float lists. The answer comes back with only ``model`` spliced to the
client's alias, unless it breaks the contract an OpenAI client relies on, in
which case it is mended and re-encoded once:

- a vector in the wrong form (floats when base64 was asked, as some servers
  ignore the field, or the reverse) is converted: base64 is little-endian
  float32, what the ``openai`` SDK decodes;
- vectors out of order (or without ``index``) are put in input order;
- a missing ``usage`` is estimated (:func:`estimate_tokens`), so metering
  always has the prompt tokens.

The vector helpers and the estimate are shared with the translations
(:mod:`feathergate.providers.gemini.embeddings`). A ``mock_response``
deployment answers zero vectors (LiteLLM's ``mock_embedding``), one per input.
"""

from __future__ import annotations

import array
import base64
import binascii
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from feathergate.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from feathergate.ingress.openai_embeddings import EmbeddingsRequest
from feathergate.operations.base import Answer, StreamPipe
from feathergate.operations.unsupported import check_offered
from feathergate.providers import get_provider
from feathergate.providers.base import CallContext, UpstreamRequest, Usage
from feathergate.providers.openai import OpenAIProvider
from feathergate.providers.openai.errors import map_openai_error
from feathergate.providers.outgoing import request_headers
from feathergate.splice import parse_members, set_member, splice

__all__ = [
    "ESTIMATED",
    "EmbeddingsPassthrough",
    "MockEmbeddings",
    "Vector",
    "estimate_tokens",
    "from_base64",
    "mock",
    "openai_payload",
    "passthrough",
    "to_base64",
]

_BIG_ENDIAN = sys.byteorder == "big"
_MOCK_DIMENSIONS = 1536  # LiteLLM's mock_embedding
ESTIMATED = ((b"x-feathergate-usage", b"estimated"),)
"""The header that says ``usage`` was counted by the gateway, not the upstream."""

Vector = list[float] | str


def to_base64(vector: list[float]) -> str:
    """OpenAI's base64 form: the float32s, little-endian, no header."""
    try:
        packed = array.array("f", vector)
    except (TypeError, OverflowError):
        raise UpstreamProtocolError("upstream sent an embedding that is not numbers") from None
    if _BIG_ENDIAN:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def from_base64(text: str) -> list[float]:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise UpstreamProtocolError("upstream sent an embedding that is not base64") from None
    if len(raw) % 4:
        raise UpstreamProtocolError("upstream sent a base64 embedding of partial float32s")
    packed = array.array("f")
    packed.frombytes(raw)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tolist()


def estimate_tokens(request: EmbeddingsRequest) -> int:
    """Token arrays count exactly; text at about four UTF-8 bytes a token, at least one each.

    What the router's tpm estimate assumes too. OpenAI's tokenizers give
    about four characters a token for English prose.
    """
    total = 0
    for item in request.inputs:
        total += len(item) if isinstance(item, list) else max(1, math.ceil(len(item.encode()) / 4))
    return total


def openai_payload(vectors: list[Vector], alias: str, tokens: int) -> bytes:
    """An OpenAI embeddings response, the vectors in the order given."""
    data = [
        {"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json.dumps(
        {"object": "list", "data": data, "model": alias, "usage": usage}, separators=(",", ":")
    ).encode()


def _usage_tokens(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    for key in ("total_tokens", "prompt_tokens"):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _check(data: list[Any], base64_wanted: bool) -> tuple[bool, bool]:
    """Whether ``data`` is in input order, and every vector in the form asked; one pass."""
    in_order = forms_ok = True
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise UpstreamProtocolError("upstream sent an embedding that is not an object")
        if in_order and item.get("index") != position:
            in_order = False
        vector = item.get("embedding")
        if isinstance(vector, str):
            forms_ok = forms_ok and base64_wanted
        elif isinstance(vector, list):
            forms_ok = forms_ok and not base64_wanted
        else:
            raise UpstreamProtocolError(
                "upstream sent an embedding that is neither a list nor base64"
            )
    return in_order, forms_ok


def _reordered(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``data`` sorted by ``index``; raises unless the indices are 0..n-1 (or all missing)."""
    indices: list[Any] = [item.get("index") for item in data]
    if all(index is None for index in indices):
        return data  # no indices at all: the order given is the only one there is
    numbers = all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
    if not numbers or sorted(indices) != list(range(len(data))):
        raise UpstreamProtocolError("upstream sent embeddings whose indices do not match")
    return sorted(data, key=lambda item: item["index"])


def _converted(vector: Any, base64_wanted: bool) -> Vector:
    if isinstance(vector, str):
        return vector if base64_wanted else from_base64(vector)
    floats: list[float] = vector
    return to_base64(floats) if base64_wanted else floats


def openai_answer(body: bytes, request: EmbeddingsRequest, alias: str) -> Answer:
    """An OpenAI-shaped answer to the client: spliced when it keeps the contract, else mended."""
    try:
        members = parse_members(body.decode("utf-8"), "model", body)
    except ValueError:  # UnicodeDecodeError included
        raise UpstreamProtocolError(
            "upstream sent an embeddings response that is not JSON"
        ) from None
    value = members.value
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, list):
        raise UpstreamProtocolError("upstream sent an embeddings response without 'data'")
    if len(data) != len(request.inputs):
        raise UpstreamProtocolError(
            f"upstream sent {len(data)} embeddings for {len(request.inputs)} inputs"
        )
    base64_wanted = request.encoding == "base64"
    in_order, forms_ok = _check(data, base64_wanted)
    tokens = _usage_tokens(value.get("usage"))
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if tokens is None:
        tokens = estimate_tokens(request)
        headers = ESTIMATED
    elif in_order and forms_ok:
        return Answer(set_member(members, "model", alias), Usage(tokens, 0))
    items = data if in_order else _reordered(data)
    vectors = [_converted(item.get("embedding"), base64_wanted) for item in items]
    return Answer(openai_payload(vectors, alias, tokens), Usage(tokens, 0), headers)


class EmbeddingsPassthrough:
    """OpenAI, Azure and every OpenAI-compatible provider: the body as sent, ``model`` renamed."""

    __slots__ = ("provider",)

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider

    def build_request(self, request: EmbeddingsRequest, ctx: CallContext) -> UpstreamRequest:
        check_offered(ctx, "embeddings")
        dep = ctx.deployment
        headers = request_headers(dep, dict(self.provider.auth_headers(ctx)))
        url = self.provider.url(ctx, "embeddings")
        return UpstreamRequest(url, headers, splice(request.members, dep.model))

    def parse_response(self, body: bytes, request: EmbeddingsRequest, ctx: CallContext) -> Answer:
        return openai_answer(body, request, ctx.alias)

    def stream(self, request: EmbeddingsRequest, ctx: CallContext) -> StreamPipe:
        raise InvalidRequest("embeddings are not streamed")

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_openai_error(status, headers, body)


class MockEmbeddings(EmbeddingsPassthrough):
    """``mock_response``: zero vectors, one per input, answered by the gateway itself."""

    local = True  # see feathergate.operations.local

    def build_request(self, request: EmbeddingsRequest, ctx: CallContext) -> UpstreamRequest:
        zeros: list[Vector] = [[0.0] * (request.dimensions or _MOCK_DIMENSIONS)] * len(
            request.inputs
        )
        payload = openai_payload(zeros, ctx.deployment.model, estimate_tokens(request))
        return UpstreamRequest("local:embeddings", [], payload)


def passthrough(adapter: str) -> EmbeddingsPassthrough:
    provider = get_provider(adapter)
    assert isinstance(provider, OpenAIProvider)
    return EmbeddingsPassthrough(provider)


def mock(adapter: str) -> MockEmbeddings:
    return MockEmbeddings(OpenAIProvider())
