"""``POST /v1/completions``: OpenAI's legacy Completions API, a passthrough (INGRESS.md §3).

Only what routing and relaying need is checked: ``model``, ``stream`` and
``stream_options``. Everything else (``prompt`` in its four forms, ``suffix``,
``best_of``, ``echo``, ``logprobs``, vLLM's ``top_k``, ``min_p`` ...) is the
upstream's to judge, and reaches it byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feathergate.errors import InvalidRequest
from feathergate.ingress import Headers
from feathergate.ingress.passthrough_body import decode_object, required_model
from feathergate.splice import Members

__all__ = ["OPENAI_COMPLETIONS", "CompletionsIngress", "CompletionsRequest"]


@dataclass(frozen=True, slots=True, eq=False)
class CompletionsRequest:
    members: Members  # the body's text, parsed, with where ``model`` is in it
    model: str
    stream: bool
    include_usage: bool
    size: int = 0  # bytes of the raw body

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.members.value  # an object: the codec checked
        return body

    @property
    def json_mode(self) -> bool:
        return False


class CompletionsIngress:
    def parse(
        self, raw: bytes, headers: Headers, query: bytes, max_messages: int = 0
    ) -> CompletionsRequest:
        """``max_messages`` bounds conversations; a completions request has none."""
        members = decode_object(raw)
        body: dict[str, Any] = members.value
        model = required_model(body)
        stream = body.get("stream")
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise InvalidRequest("'stream' must be a boolean", param="stream")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object", param="stream_options")
        include_usage = bool(stream and options and options.get("include_usage"))
        return CompletionsRequest(members, model, stream, include_usage, len(raw))


OPENAI_COMPLETIONS = CompletionsIngress()
