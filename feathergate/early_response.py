"""Responses that are ready before the request's body has arrived.

An HTTP/1.1 connection carries the next request only once this one's body
has been read. When a response ends before that, Hypercorn closes the
connection, and the response did not say so: a keep-alive client that sends
its next request at that moment gets "server disconnected" instead of an
answer. Quart answers 404, 405 and 401 without reading the body, and the
body of a small POST often reaches the socket a moment after its head.

:func:`wait_for_body` holds such a response until the body is in, for at
most ``BODY_GRACE`` seconds (Quart reads the body in the background, whatever
the route, so the wait ends as soon as it arrives). A body that takes longer
gets its answer with ``connection: close``: the client opens a new
connection for its next request instead of losing it.
"""

from __future__ import annotations

import trio

from feathergate.typing import ASGIApp, ASGIReceive, ASGISend, Message, Scope

__all__ = ["BODY_GRACE", "wait_for_body"]

# A body sent with its head arrives within milliseconds; one that takes a
# second is a large upload or a stalled client, and not worth holding the
# answer for.
BODY_GRACE = 1.0


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def wait_for_body(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that no response starts before the request body ended, within reason."""

    async def wrapped(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await app(scope, receive, send)
            return
        ended = trio.Event()

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                ended.set()
            return message

        async def held_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not ended.is_set():
                with trio.move_on_after(BODY_GRACE):
                    await ended.wait()
                if not ended.is_set():
                    headers = [*message.get("headers", ()), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        await app(scope, watched_receive, held_send)

    return wrapped
