"""``POST /v1/embeddings`` on Gemini: ``batchEmbedContents``, in batches of 100 (INGRESS.md §2).

Gemini embeds at most 100 requests per call (the 101st is a 400), so a
client's inputs are cut into batches of 100 and the operation *fans out*
(:class:`~feathergate.operations.base.FansOut`): the relay makes the calls at
once, at most :data:`CONCURRENCY` in flight, and hands the answers back in
order to :meth:`GeminiEmbeddings.merge`, which joins and re-indexes them.

Mapping (LiteLLM's, ``batch_embed_content_transformation.py``):

- each input string is one ``requests[]`` entry, ``model: models/{model}``
  and one text part (several parts would be *one* fused vector);
- ``dimensions`` -> ``outputDimensionality``; LiteLLM's ``task_type`` ->
  ``taskType``, and ``title``, on every entry;
- ``encoding_format`` and ``user`` are not sent: Gemini answers floats, and
  the gateway encodes base64 when asked; other fields are a 400 naming them,
  or dropped with ``drop_params``;
- token arrays cannot be sent: nothing maps OpenAI's token ids to Gemini's.

Vectors truncated by ``outputDimensionality`` come back from Gemini without
being normalized (only the full 3,072 are); OpenAI's ``dimensions`` returns
unit vectors, so these are L2-normalized here, and clients comparing by dot
product get what they got from OpenAI.

Gemini reports no usage for batches. ``usage`` is then the gateway's
estimate (:func:`~feathergate.operations.embeddings.estimate_tokens`), and
the response says so in ``x-feathergate-usage: estimated``; when an answer
carries ``usageMetadata`` (newer models), its ``promptTokenCount`` is used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from feathergate import clientjson
from feathergate.config import Deployment
from feathergate.errors import (
    InvalidRequest,
    InvalidUpstreamRequest,
    UnsupportedParameter,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from feathergate.ingress.openai_embeddings import EmbeddingsRequest
from feathergate.operations.base import Answer, StreamPipe
from feathergate.operations.embeddings import (
    ESTIMATED,
    Vector,
    estimate_tokens,
    openai_payload,
    to_base64,
)
from feathergate.providers.base import CallContext, UpstreamRequest, Usage
from feathergate.providers.gemini.adapter import key_headers, model_url
from feathergate.providers.gemini.response import map_error
from feathergate.providers.outgoing import request_headers

__all__ = ["BATCH_SIZE", "CONCURRENCY", "GeminiEmbeddings", "embeddings"]

BATCH_SIZE = 100  # Gemini's limit per batchEmbedContents call
CONCURRENCY = 8  # batch calls in flight per client request (2,048 inputs: 21 calls)

_HANDLED = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_EXTENSIONS = {"task_type": "taskType", "title": "title"}  # LiteLLM's names -> Gemini's


def _entry_fields(request: EmbeddingsRequest, dep: Deployment) -> dict[str, Any]:
    """What every ``requests[]`` entry carries besides its model and text."""
    fields: dict[str, Any] = {}
    for key, value in request.body.items():
        if key in _HANDLED or value is None:
            continue
        target = _EXTENSIONS.get(key)
        if target is None:
            if dep.drop_params:
                continue
            raise UnsupportedParameter(key, "gemini")
        if not isinstance(value, str):
            raise InvalidRequest(f"'{key}' must be a string", param=key)
        fields[target] = value
    if request.dimensions is not None:
        fields["outputDimensionality"] = request.dimensions
    return fields


def _vectors(body: bytes, expected: int) -> tuple[list[list[float]], int | None]:
    """One batch's vectors, and its prompt tokens when Gemini counted them."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise UpstreamProtocolError("gemini returned a body that is not JSON") from None
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list) or len(embeddings) != expected:
        got = len(embeddings) if isinstance(embeddings, list) else "no"
        raise UpstreamProtocolError(f"gemini returned {got} embeddings for {expected} inputs")
    vectors = []
    for embedding in embeddings:
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise UpstreamProtocolError("gemini returned an embedding without 'values'")
        vectors.append(values)
    usage = data.get("usageMetadata")
    tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    return vectors, tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


def _normalized(values: list[float]) -> list[float]:
    try:
        norm = math.hypot(*values)
    except TypeError:
        raise UpstreamProtocolError("gemini returned an embedding that is not numbers") from None
    if norm == 0.0 or abs(norm - 1.0) < 1e-6:
        return values
    return [x / norm for x in values]


class GeminiEmbeddings:
    concurrency = CONCURRENCY

    def build_requests(self, request: EmbeddingsRequest, ctx: CallContext) -> list[UpstreamRequest]:
        if request.tokens:
            raise InvalidRequest(
                f"model '{ctx.alias}' is a Gemini model, which embeds text: "
                "token arrays cannot be sent to it",
                param="input",
            )
        texts = [text for text in request.inputs if isinstance(text, str)]  # all of them
        dep = ctx.deployment
        model = "models/" + dep.model.removeprefix("models/")
        fields = _entry_fields(request, dep)
        url = model_url(dep, stream=False).removesuffix(":generateContent") + ":batchEmbedContents"
        headers = request_headers(dep, key_headers(dep))
        requests = []
        for start in range(0, len(texts), BATCH_SIZE):
            entries = [
                {"model": model, "content": {"parts": [{"text": text}]}, **fields}
                for text in texts[start : start + BATCH_SIZE]
            ]
            content = clientjson.dumps({"requests": entries}, request.body)
            requests.append(UpstreamRequest(url, headers, content))
        return requests

    def merge(self, bodies: list[bytes], request: EmbeddingsRequest, ctx: CallContext) -> Answer:
        total = len(request.inputs)
        vectors: list[list[float]] = []
        counted: int | None = 0
        for i, body in enumerate(bodies):
            expected = min(BATCH_SIZE, total - i * BATCH_SIZE)
            batch, tokens = _vectors(body, expected)
            vectors += batch
            counted = None if tokens is None or counted is None else counted + tokens
        if request.dimensions is not None:
            vectors = [_normalized(values) for values in vectors]
        encoded: list[Vector] = []
        if request.encoding == "base64":
            encoded += [to_base64(values) for values in vectors]
        else:
            encoded += vectors
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if counted is None:
            counted, headers = estimate_tokens(request), ESTIMATED
        return Answer(openai_payload(encoded, ctx.alias, counted), Usage(counted, 0), headers)

    def build_request(self, request: EmbeddingsRequest, ctx: CallContext) -> UpstreamRequest:
        requests = self.build_requests(request, ctx)
        if len(requests) != 1:
            raise InvalidUpstreamRequest("more than 100 inputs take several calls (the fan-out)")
        return requests[0]

    def parse_response(self, body: bytes, request: EmbeddingsRequest, ctx: CallContext) -> Answer:
        return self.merge([body], request, ctx)

    def stream(self, request: EmbeddingsRequest, ctx: CallContext) -> StreamPipe:
        raise InvalidRequest("embeddings are not streamed")

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_error(status, headers, body)


def embeddings(adapter: str) -> GeminiEmbeddings:
    return GeminiEmbeddings()
