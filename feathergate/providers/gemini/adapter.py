"""The Gemini provider: URL, headers and JSON bytes around the pure translators.

``api_base`` may be the host root (LiteLLM's convention; ``/{api_version}``,
default ``v1beta``, is appended) or already end in a version segment such as
``/v1beta`` or ``/v1`` (used as is). The key goes in ``x-goog-api-key``, not
in ``?key=``, so it never lands in an access log. Streaming asks for
``alt=sse``: without it Gemini streams one incrementally-written JSON array
(PROTOCOLS.md §3.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from feathergate.config import Deployment
from feathergate.errors import UpstreamStatusError
from feathergate.providers.base import CallContext, Completion, UpstreamRequest
from feathergate.providers.gemini.messages import remote_image_urls
from feathergate.providers.gemini.request import PROVIDER, build_body
from feathergate.providers.gemini.response import map_error, parse_response
from feathergate.providers.gemini.stream import GeminiStreamTranslator
from feathergate.providers.outgoing import json_request

__all__ = ["DEFAULT_API_BASE", "DEFAULT_API_VERSION", "GeminiProvider", "key_headers", "model_url"]

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
_VERSION_SEGMENT = re.compile(r"/v\d+(?:(?:alpha|beta)\d*)?$")


def model_url(deployment: Deployment, *, stream: bool) -> str:
    base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/")
    if not _VERSION_SEGMENT.search(base):
        base = f"{base}/{deployment.api_version or DEFAULT_API_VERSION}"
    model = quote(deployment.model.removeprefix("models/"), safe="")
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base}/models/{model}:{method}"


def key_headers(dep: Deployment) -> dict[str, str]:
    """The deployment's key, as Gemini takes it (never in the URL)."""
    return {"x-goog-api-key": dep.api_key.value} if dep.api_key.value else {}


class GeminiProvider:
    name = PROVIDER

    def build_request(self, body: dict[str, Any], ctx: CallContext) -> UpstreamRequest:
        dep = ctx.deployment
        payload = build_body(body, ctx)
        headers = key_headers(dep)
        url = model_url(dep, stream=ctx.stream)
        return json_request(
            url, payload, source=body, deployment=dep, headers=headers, pieces=ctx.large_body
        )

    def parse_response(self, body: bytes, ctx: CallContext) -> Completion:
        return parse_response(body, ctx)

    def stream_translator(self, ctx: CallContext) -> GeminiStreamTranslator:
        return GeminiStreamTranslator(ctx)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_error(status, headers, body)

    def assets_to_fetch(self, body: dict[str, Any]) -> list[str]:
        return remote_image_urls(body)
