"""The Anthropic provider: URL, headers and JSON bytes around the pure translators.

``api_base`` is the host root (LiteLLM's convention, e.g.
``https://api.anthropic.com``); ``/v1/messages`` is appended unless the base
already ends with it or with ``/v1``. ``anthropic-version`` is pinned to
``2023-06-01``, the version every published document describes
(PROTOCOLS.md, version warnings); a deployment's ``extra_headers`` may
override it or add ``anthropic-beta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.errors import UpstreamStatusError
from feathergate.providers.anthropic.request import PROVIDER, translate_request
from feathergate.providers.anthropic.response import map_anthropic_error, parse_message
from feathergate.providers.anthropic.stream import AnthropicStreamTranslator
from feathergate.providers.base import CallContext, Completion, UpstreamRequest
from feathergate.providers.outgoing import json_request

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_API_BASE", "AnthropicProvider", "messages_url"]

DEFAULT_API_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"


def messages_url(api_base: str | None) -> str:
    base = (api_base or DEFAULT_API_BASE).rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    if base.endswith("/v1"):
        return f"{base}/messages"
    return f"{base}/v1/messages"


class AnthropicProvider:
    name = PROVIDER

    def build_request(self, body: dict[str, Any], ctx: CallContext) -> UpstreamRequest:
        dep = ctx.deployment
        payload = translate_request(body, dep, stream=ctx.stream)
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if dep.api_key.value:
            headers["x-api-key"] = dep.api_key.value
        return json_request(
            messages_url(dep.api_base),
            payload,
            source=body,
            deployment=dep,
            headers=headers,
            pieces=ctx.large_body,
        )

    def parse_response(self, body: bytes, ctx: CallContext) -> Completion:
        return parse_message(body, ctx)

    def stream_translator(self, ctx: CallContext) -> AnthropicStreamTranslator:
        return AnthropicStreamTranslator(ctx)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_anthropic_error(status, headers, body)
