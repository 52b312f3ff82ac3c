"""``POST /v1/messages/count_tokens`` on Gemini: ``models/{model}:countTokens``.

The request is translated like a message (Messages -> Chat -> Gemini, the
same path :mod:`feathergate.operations.messages` takes), and counted in the
``generateContentRequest`` form, the one whose count includes
``systemInstruction`` and ``tools`` (the ``contents`` form counts only the
turns). ``generationConfig`` is left out: it adds no tokens and count_tokens
requests carry no ``max_tokens``. Gemini's ``totalTokens`` is the answer's
``input_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feathergate import clientjson
from feathergate.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from feathergate.ingress.anthropic.request import MessagesRequest
from feathergate.ingress.anthropic.to_chat import translation
from feathergate.operations.base import Answer, StreamPipe
from feathergate.providers.base import CallContext, UpstreamRequest
from feathergate.providers.gemini.adapter import key_headers, model_url
from feathergate.providers.gemini.messages import remote_image_urls
from feathergate.providers.gemini.request import build_body
from feathergate.providers.gemini.response import map_error
from feathergate.providers.outgoing import request_headers

__all__ = ["GeminiCountTokens", "count_tokens"]


class GeminiCountTokens:
    def assets_to_fetch(self, request: MessagesRequest) -> list[str]:
        return remote_image_urls(translation(request, "gemini").body)

    def build_request(self, request: MessagesRequest, ctx: CallContext) -> UpstreamRequest:
        dep = ctx.deployment
        chat = translation(request, "gemini").body
        generate: dict[str, Any] = {
            key: value for key, value in build_body(chat, ctx).items() if key != "generationConfig"
        }
        generate["model"] = "models/" + dep.model.removeprefix("models/")
        url = model_url(dep, stream=False).removesuffix(":generateContent") + ":countTokens"
        content = clientjson.dumps({"generateContentRequest": generate}, chat, ascii=True)
        return UpstreamRequest(url, request_headers(dep, key_headers(dep)), content)

    def parse_response(self, body: bytes, request: MessagesRequest, ctx: CallContext) -> Answer:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise UpstreamProtocolError("gemini returned a body that is not JSON") from None
        total = data.get("totalTokens") if isinstance(data, dict) else None
        if not isinstance(total, int):
            raise UpstreamProtocolError("gemini's countTokens answer has no totalTokens")
        return Answer(json.dumps({"input_tokens": total}).encode())

    def stream(self, request: MessagesRequest, ctx: CallContext) -> StreamPipe:
        raise InvalidRequest("count_tokens answers are not streamed")

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_error(status, headers, body)


def count_tokens(adapter: str) -> GeminiCountTokens:
    return GeminiCountTokens()
