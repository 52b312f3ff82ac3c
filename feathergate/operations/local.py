"""Operations answered by the gateway itself, and the in-process transport they ride on.

A local answer takes the same relay path as an upstream one (router,
deadlines, metrics), like ``mock_response`` does: the operation computes the
answer while "building the request", and :class:`LocalTransport` answers
every request with its own body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from feathergate.errors import InvalidRequest, UpstreamStatusError
from feathergate.ingress.anthropic.request import MessagesRequest
from feathergate.ingress.anthropic.tokens import estimate_tokens
from feathergate.mock import MockResponse
from feathergate.operations.base import Answer, StreamPipe
from feathergate.providers.base import CallContext, UpstreamRequest
from feathergate.providers.openai.errors import map_openai_error

__all__ = ["LOCAL", "LocalCountTokens", "LocalTransport", "count_tokens"]


class LocalTransport:
    """Answers each request with the body it was sent: the answer a local operation computed."""

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float | None,
        on_sent: Callable[[], None] | None = None,
    ) -> MockResponse:
        return MockResponse([body], "application/json")

    def close(self) -> None:
        pass


LOCAL = LocalTransport()


class LocalCountTokens:
    """``count_tokens`` for upstreams that cannot count a Messages request: an estimate.

    See :mod:`feathergate.ingress.anthropic.tokens` for what is counted and why.
    """

    local = True  # the gateway answers; no upstream is called

    def build_request(self, request: MessagesRequest, ctx: CallContext) -> UpstreamRequest:
        answer = json.dumps({"input_tokens": estimate_tokens(request.body)}).encode()
        return UpstreamRequest("local:count_tokens", [], answer)

    def parse_response(self, body: bytes, request: MessagesRequest, ctx: CallContext) -> Answer:
        return Answer(body)

    def stream(self, request: MessagesRequest, ctx: CallContext) -> StreamPipe:
        raise InvalidRequest("count_tokens answers are not streamed")

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return map_openai_error(status, headers, body)  # never called: the answer is always 200


def count_tokens(adapter: str) -> LocalCountTokens:
    return LocalCountTokens()
