"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, Groq, ...), and Azure.

The request body passes through untouched but for ``model``; responses come
back untouched but for ``model``, which is set to the client's alias.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from feathergate.catalog import CATALOG
from feathergate.errors import UpstreamProtocolError, UpstreamStatusError
from feathergate.providers.base import CallContext, Completion, UpstreamRequest
from feathergate.providers.openai.errors import map_openai_error
from feathergate.providers.openai.pipe import OpenAIPassthroughPipe, splice_model
from feathergate.providers.openai.stream import OpenAIStreamTranslator
from feathergate.providers.outgoing import json_request

__all__ = ["AzureProvider", "OpenAIProvider"]

_DEFAULT_AZURE_VERSION = "2024-10-21"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise UpstreamProtocolError("upstream sent a response that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError("upstream sent a response that is not a JSON object")
    return data


class OpenAIProvider:
    name = "openai"

    def url(self, ctx: CallContext, path: str = "chat/completions") -> str:
        dep = ctx.deployment
        base = dep.api_base or CATALOG[dep.provider].default_api_base or ""
        return f"{base}/{path}"

    def auth_headers(self, ctx: CallContext) -> list[tuple[str, str]]:
        key = ctx.deployment.api_key.value
        return [("authorization", f"Bearer {key}")] if key else []

    def build_request(self, body: dict[str, Any], ctx: CallContext) -> UpstreamRequest:
        return json_request(
            self.url(ctx),
            {**body, "model": ctx.deployment.model},
            source=body,
            deployment=ctx.deployment,
            headers=dict(self.auth_headers(ctx)),
            ascii=True,
            pieces=ctx.large_body,
        )

    def parse_response(self, body: bytes, ctx: CallContext) -> Completion:
        data = _parse(body)
        data["model"] = ctx.alias
        return data

    def relay_response(self, body: bytes, ctx: CallContext) -> tuple[bytes, Completion] | None:
        """The client's body: the upstream's bytes with the alias spliced in, and its object.

        None for a subclass that parses its own way. Re-encoding cost as much
        as parsing, and changed the bytes (number spellings, escapes) for nothing.
        """
        if type(self).parse_response is not OpenAIProvider.parse_response:
            return None
        data = _parse(body)
        spliced = splice_model(body, data.get("model"), json.dumps(ctx.alias).encode())
        data["model"] = ctx.alias
        return (spliced if spliced is not None else json.dumps(data).encode()), data

    def stream_translator(self, ctx: CallContext) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(ctx)

    def stream_pipe(
        self, ctx: CallContext, *, strip_usage: bool = False
    ) -> OpenAIPassthroughPipe | None:
        """Bytes in, bytes out (``pipe.py``), unless a subclass translates its own way."""
        if type(self).stream_translator is not OpenAIProvider.stream_translator:
            return None
        return OpenAIPassthroughPipe(ctx, strip_usage=strip_usage)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_openai_error(status, headers, body)


class AzureProvider(OpenAIProvider):
    """Azure OpenAI: the deployment name is in the path, the key in ``api-key``."""

    name = "azure"

    def url(self, ctx: CallContext, path: str = "chat/completions") -> str:
        dep = ctx.deployment
        base = dep.api_base or ""
        if base.endswith("/openai/v1"):  # the v1 surface takes no api-version
            return f"{base}/{path}"
        version = quote(dep.api_version or _DEFAULT_AZURE_VERSION, safe="")
        # With `azure/*` the deployment name is the client's text: quoted, it
        # stays one path segment and plain ASCII on the wire.
        deployment = quote(dep.model, safe="")
        return f"{base}/openai/deployments/{deployment}/{path}?api-version={version}"

    def auth_headers(self, ctx: CallContext) -> list[tuple[str, str]]:
        key = ctx.deployment.api_key.value
        return [("api-key", key)] if key else []
