"""The Messages API to an Anthropic upstream: a passthrough, lossless on purpose.

INGRESS.md §4.8.1. The request body goes out as the client sent it, byte for
byte, but for ``model`` (:mod:`feathergate.splice`), so ``cache_control``,
thinking blocks and their signatures, documents, server tools and fields
newer than this code all reach Anthropic untouched. ``anthropic-version`` is
the client's (``2023-06-01`` when it sent none) and ``anthropic-beta`` is the
client's, joined with the deployment's own ``extra_headers`` betas; the key is
the deployment's, never the client's. ``?beta=true`` (the SDK's beta
namespace) is kept.

The answer comes back the same way: a JSON body with only ``model`` spliced
back to the client's alias, or the SSE stream relayed event by event, with
only ``message_start`` re-encoded (its ``message.model``). The pipe still
reads the events it must: ``message_start`` and ``message_delta`` for the
usage the router counts, ``error`` (raised, so that an error before anything
reached the client can be retried and a later one ends the stream in
Anthropic's shape), and ``message_stop``, without which the stream was cut.

Errors keep Anthropic's own status (529 stays 529, 413 stays 413): the
client speaks Anthropic's API and its SDK maps them itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feathergate.config import Deployment
from feathergate.errors import (
    InvalidRequest,
    UpstreamProtocolError,
    UpstreamStatusError,
    type_for_status,
)
from feathergate.ingress.anthropic.request import MessagesRequest
from feathergate.operations.base import Answer
from feathergate.providers.anthropic.adapter import ANTHROPIC_VERSION, messages_url
from feathergate.providers.anthropic.response import TYPE_STATUS, header_value
from feathergate.providers.base import CallContext, UpstreamRequest, Usage, token_count
from feathergate.splice import parse_members, splice
from feathergate.sse import SSEDecoder, SSEEvent

__all__ = [
    "CountTokensPassthrough",
    "MessagesPassthrough",
    "PassthroughPipe",
    "count_tokens",
    "messages",
    "passthrough_error",
]


def _headers(request: MessagesRequest, dep: Deployment) -> list[tuple[str, str]]:
    headers = {
        "content-type": "application/json",
        "anthropic-version": request.version or ANTHROPIC_VERSION,
    }
    if dep.api_key.value:
        headers["x-api-key"] = dep.api_key.value
    betas = (request.betas or "").split(",")
    for name, value in dep.extra_headers:
        if name.lower() == "anthropic-beta":
            betas += value.split(",")
        else:
            headers[name.lower()] = value  # the deployment's word wins
    kept = dict.fromkeys(b.strip() for b in betas if b.strip())  # in order, once each
    if kept:
        headers["anthropic-beta"] = ",".join(kept)
    return list(headers.items())


def _upstream_request(request: MessagesRequest, dep: Deployment, path: str) -> UpstreamRequest:
    url = messages_url(dep.api_base) + path + ("?beta=true" if request.beta_query else "")
    return UpstreamRequest(url, _headers(request, dep), splice(request.members, dep.model))


def _tokens(usage: Any) -> Usage | None:
    if not isinstance(usage, Mapping):
        return None
    # Anthropic's input_tokens leaves out cache reads and writes; ours includes them.
    read = token_count(usage, "cache_read_input_tokens")
    written = token_count(usage, "cache_creation_input_tokens")
    return Usage(
        token_count(usage, "input_tokens") + read + written,
        token_count(usage, "output_tokens"),
        cached=read,
        cache_write=written,
    )


def passthrough_error(status: int, error: Any, retry_after: str | None) -> UpstreamStatusError:
    detail = error if isinstance(error, Mapping) else {}
    message = detail.get("message")
    kind = detail.get("type")
    return UpstreamStatusError(
        status,
        message if isinstance(message, str) and message else f"anthropic answered HTTP {status}",
        type=type_for_status(status),
        code=kind if isinstance(kind, str) else None,
        retry_after=retry_after,
    )


def _map_error(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamStatusError:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        text = body.decode("utf-8", "replace").strip()[:500]
        error = {"message": text or f"anthropic answered HTTP {status}"}
    return passthrough_error(status, error, header_value(headers, "retry-after"))


class PassthroughPipe:
    """Anthropic's SSE in, the same events out; only ``message_start`` is touched."""

    __slots__ = ("_alias", "_decoder", "_stopped", "_usage")

    def __init__(self, alias: str) -> None:
        self._alias = alias
        self._decoder = SSEDecoder()
        self._stopped = False
        self._usage: dict[str, Any] = {}

    @property
    def tokens(self) -> Usage | None:
        return _tokens(self._usage) if self._usage else None

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._event(e) for e in self._decoder.feed(data))

    def finish(self) -> bytes:
        tail = b"".join(self._event(e) for e in self._decoder.finish())
        if not self._stopped:
            raise UpstreamProtocolError("anthropic stream ended before message_stop")
        return tail

    def _event(self, event: SSEEvent) -> bytes:
        name, data = event.event, event.data
        if name == "message":  # no `event:` line; Anthropic always sends one, but be kind
            name = str(_json(data).get("type") or name)
        if name == "message_start":
            payload = _json(data)
            message = payload.get("message")
            if isinstance(message, dict):
                message["model"] = self._alias
                self._usage.update(message.get("usage") or {})
            data = json.dumps(payload, separators=(",", ":"))
        elif name == "message_delta":
            usage = _json(data).get("usage")
            if isinstance(usage, dict):  # cumulative (§2.4): the last value of each wins
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif name == "message_stop":
            self._stopped = True
        elif name == "error":
            error = _json(data).get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            status = TYPE_STATUS.get(kind, 500) if isinstance(kind, str) else 500
            raise passthrough_error(status, error, None)
        return f"event: {name}\ndata: {data}\n\n".encode()


def _json(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        raise UpstreamProtocolError(f"anthropic sent a malformed event: {data[:200]!r}") from None
    if not isinstance(payload, dict):
        raise UpstreamProtocolError("anthropic sent a stream event that is not an object")
    return payload


def _object(body: bytes) -> Any:
    try:
        return parse_members(body.decode("utf-8"), "model")
    except (ValueError, RecursionError):
        raise UpstreamProtocolError("anthropic sent a response that is not JSON") from None


class MessagesPassthrough:
    """``POST /v1/messages`` to an Anthropic upstream."""

    def build_request(self, request: MessagesRequest, ctx: CallContext) -> UpstreamRequest:
        return _upstream_request(request, ctx.deployment, "")

    def parse_response(self, body: bytes, request: MessagesRequest, ctx: CallContext) -> Answer:
        members = _object(body)
        if not isinstance(members.value, dict):
            raise UpstreamProtocolError("anthropic sent a response that is not a JSON object")
        return Answer(splice(members, ctx.alias), _tokens(members.value.get("usage")))

    def stream(self, request: MessagesRequest, ctx: CallContext) -> PassthroughPipe:
        return PassthroughPipe(ctx.alias)

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamStatusError:
        return _map_error(status, headers, body)


class CountTokensPassthrough(MessagesPassthrough):
    """``POST /v1/messages/count_tokens`` to an Anthropic upstream; never streamed."""

    def build_request(self, request: MessagesRequest, ctx: CallContext) -> UpstreamRequest:
        return _upstream_request(request, ctx.deployment, "/count_tokens")

    def parse_response(self, body: bytes, request: MessagesRequest, ctx: CallContext) -> Answer:
        if not isinstance(_object(body).value, dict):
            raise UpstreamProtocolError("anthropic sent a response that is not a JSON object")
        return Answer(body)

    def stream(self, request: MessagesRequest, ctx: CallContext) -> PassthroughPipe:
        raise InvalidRequest("count_tokens answers are not streamed")


def messages(adapter: str) -> MessagesPassthrough:
    return MessagesPassthrough()


def count_tokens(adapter: str) -> CountTokensPassthrough:
    return CountTokensPassthrough()
