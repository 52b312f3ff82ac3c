"""What the gateway's one seam (``Gateway.serve``) needs from a parsed request.

Pure functions over any endpoint's request (:class:`ClientRequest`): the
worst case an admission reserves for, and the chat request that asks the
upstream for its usage so that a stream is billed from the upstream's count.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from feathergate.chat import ChatRequest
from feathergate.config import KeySettings
from feathergate.operations.base import ClientRequest

__all__ = ["billed", "max_tokens"]


def max_tokens(body: dict[str, Any]) -> int | None:
    """The most tokens the call may generate, over all ``n`` choices; ``None``: unbounded."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            n = body.get("n")
            return value * (n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1)
    return None


def billed(request: ClientRequest, settings: KeySettings) -> ClientRequest:
    """``request``, asking for the stream's usage chunk when the client did not.

    The client still does not get it: the chat pipe strips it again
    (``strip_usage``). The Messages API's translation always asks upstream.
    """
    if (
        not isinstance(request, ChatRequest)
        or not request.stream
        or request.include_usage
        or not settings.always_include_stream_usage
    ):
        return request
    options = {**(request.body.get("stream_options") or {}), "include_usage": True}
    body = {**request.body, "stream_options": options}
    return replace(request, body=body, include_usage=True, strip_usage=True)
