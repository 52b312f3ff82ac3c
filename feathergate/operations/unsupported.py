"""Endpoints a deployment's provider does not offer: a clear 400, before any upstream call.

Which providers lack which endpoint is data, in :mod:`feathergate.catalog`
(``lacks``); an adapter with no operation for an endpoint at all (Anthropic
has no embeddings) gets :class:`NotOffered` from :mod:`feathergate.endpoints`.
The 400 names the model and the provider, so the client knows the gateway,
not the upstream, refused, and that another model is the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.catalog import CATALOG
from feathergate.errors import InvalidRequest, UpstreamStatusError
from feathergate.operations.base import Answer, StreamPipe
from feathergate.providers.base import CallContext, UpstreamRequest
from feathergate.providers.openai.errors import map_openai_error

__all__ = ["NotOffered", "check_offered", "completions", "embeddings"]

_API_NAMES = {"embeddings": "embeddings API", "completions": "legacy completions API"}


def _refusal(ctx: CallContext, endpoint: str) -> InvalidRequest:
    provider = ctx.deployment.provider
    return InvalidRequest(
        f"model '{ctx.alias}' is served by provider '{provider}', which has no "
        f"{_API_NAMES[endpoint]}; POST /v1/{endpoint} needs a model whose provider has one",
        param="model",
    )


def check_offered(ctx: CallContext, endpoint: str) -> None:
    """Raise the 400 when the catalog says the deployment's provider lacks ``endpoint``."""
    info = CATALOG.get(ctx.deployment.provider)
    if info is not None and endpoint in info.lacks:
        raise _refusal(ctx, endpoint)


class NotOffered:
    """Every call is the 400; nothing is ever sent."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def build_request(self, request: Any, ctx: CallContext) -> UpstreamRequest:
        raise _refusal(ctx, self.endpoint)

    def parse_response(self, body: bytes, request: Any, ctx: CallContext) -> Answer:
        raise _refusal(ctx, self.endpoint)  # never reached: no request was built

    def stream(self, request: Any, ctx: CallContext) -> StreamPipe:
        raise _refusal(ctx, self.endpoint)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_openai_error(status, headers, body)  # never reached, as above


def embeddings(adapter: str) -> NotOffered:
    return NotOffered("embeddings")


def completions(adapter: str) -> NotOffered:
    return NotOffered("completions")
