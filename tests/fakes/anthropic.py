"""A strict fake of the Anthropic Messages API (``/v1/messages`` and its count_tokens), as ASGI.

Strict: it answers with Anthropic's error body and status whatever the real
API rejects (the rules are in :mod:`tests.fakes.anthropic_rules`), so a
request that passes here should not 400 in production. It records every
request it received. Serve it with :func:`tests.support.servers.serve_asgi`.

Scripting::

    fake = FakeAnthropic()                      # expects x-api-key "sk-test"
    fake.script(
        Reply([Text("Let me check."), ToolUse("get_weather", {"city": "Paris"})]),
        ErrorReply(429, "rate_limit_error", "Rate limited", retry_after="7"),
        Reply([Text("Once upon")], error_after=3),   # `event: error` after 3 events
    )
    ... make calls ...
    fake.last.body["max_tokens"]                 # what FeatherGate sent
    [r.status for r in fake.requests]            # and how the fake answered each

Each request pops the next scripted reply (``fake.default`` when none is
left); a request the fake rejects pops nothing, and its ``Received.rejection``
says why. ``POST /v1/messages/count_tokens`` pops nothing: it answers
:func:`count_tokens` of the body. A replayed ``thinking`` block must carry a
signature the fake issued (``fake.signatures``). Replies stream when the
request says ``"stream": true``. Other
knobs on :class:`Reply`: ``cut_after`` (hang up mid-stream), ``raw`` (exact
bytes), ``usage`` (cache fields included), and ``before_headers`` / ``gate``
+ ``after_events`` (``trio.Event`` objects to stall on: no sleeps).
:func:`message_json` and :func:`stream_events` build the same wire shapes
without a server, for unit tests.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.fakes.anthropic_rules import Rejected, validate
from tests.fakes.asgi import (
    FakeServer,
    Receive,
    Scope,
    Send,
    headers_of,
    read_body,
    send_json,
    start_stream,
)

__all__ = [
    "ErrorReply",
    "FakeAnthropic",
    "Received",
    "Reply",
    "Text",
    "Thinking",
    "ToolUse",
    "Usage",
    "count_tokens",
    "encode_events",
    "message_json",
    "overloaded",
    "stream_events",
]

Event = tuple[str, dict[str, Any]]

MODEL = "claude-fake-1"
SIGNATURE = "EqQBCgIYAhIMfakeSignatureForTests=="


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    chunk: int = 12  # characters per text_delta


@dataclass(frozen=True, slots=True)
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str | None = None  # default: toolu_fake_<position>
    fragments: int = 3  # input_json_delta pieces, after the customary empty one


@dataclass(frozen=True, slots=True)
class Thinking:
    thinking: str
    signature: str = SIGNATURE
    chunk: int = 24


Block = Text | ToolUse | Thinking


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 25
    output_tokens: int | None = None  # default: about a token per four characters
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    blocks: Sequence[Block] = (Text("Hello from the fake Anthropic."),)
    stop_reason: str | None = None  # default: tool_use if a ToolUse is present, else end_turn
    stop_sequence: str | None = None
    usage: Usage = Usage()
    error_after: int | None = None  # stream: `event: error` after this many events (pings count)
    error: tuple[str, str] = ("overloaded_error", "Overloaded")
    cut_after: int | None = None  # stream: hang up after this many events, no message_stop
    pings: bool = True
    raw: bytes | None = None  # exact 200 body instead (e.g. a fixture file), either mode
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    before_headers: trio.Event | None = None  # wait on it before answering
    gate: trio.Event | None = None  # with after_events: stream that many events, then wait
    after_events: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    type: str
    message: str
    retry_after: str | None = None
    before_headers: trio.Event | None = None

    def body(self) -> dict[str, Any]:
        error = {"type": self.type, "message": self.message}
        return {"type": "error", "error": error, "request_id": _request_id()}


def overloaded() -> ErrorReply:
    return ErrorReply(529, "overloaded_error", "Overloaded")


@dataclass(slots=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None when it was not JSON
    raw: bytes = b""  # the body as it arrived
    query: str = ""
    status: int = 0
    rejection: str | None = None  # the error message, when the answer was an error


def count_tokens(body: Any) -> int:
    """The fake's count for a count_tokens body: about a token per four bytes of JSON."""
    return max(1, len(json.dumps(body)) // 4)


def _request_id() -> str:
    return f"req_fake{uuid.uuid4().hex[:20]}"


# -- the wire format ------------------------------------------------------------


def _stop_reason(reply: Reply) -> str:
    if reply.stop_reason is not None:
        return reply.stop_reason
    return "tool_use" if any(isinstance(b, ToolUse) for b in reply.blocks) else "end_turn"


def _usage(reply: Reply) -> dict[str, int]:
    usage = reply.usage
    output = usage.output_tokens
    if output is None:
        output = max(1, sum(len(json.dumps(_block_json(b, 0))) for b in reply.blocks) // 4)
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": output,
    }


def _block_json(block: Block, position: int) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    tool_id = block.id or f"toolu_fake_{position}"
    return {"type": "tool_use", "id": tool_id, "name": block.name, "input": block.input}


def message_json(
    reply: Reply, *, model: str = MODEL, message_id: str = "msg_fake"
) -> dict[str, Any]:
    """The non-streamed response for ``reply``."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_block_json(b, i) for i, b in enumerate(reply.blocks)],
        "stop_reason": _stop_reason(reply),
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply),
    }


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _split(text: str, count: int) -> list[str]:
    size = -(-len(text) // max(1, count))
    return _pieces(text, size) if text else []


def _block_events(block: Block, index: int) -> list[Event]:
    head = {"type": "content_block_start", "index": index}
    start: dict[str, Any]
    if isinstance(block, Text):
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block.text, block.chunk)]
    elif isinstance(block, Thinking):
        start = {"type": "thinking", "thinking": "", "signature": ""}
        pieces = _pieces(block.thinking, block.chunk)
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
        deltas.append({"type": "signature_delta", "signature": block.signature})
    else:
        start = {**_block_json(block, index), "input": {}}
        arguments = json.dumps(block.input, ensure_ascii=False) if block.input else ""
        deltas = [
            {"type": "input_json_delta", "partial_json": p}
            for p in ["", *_split(arguments, block.fragments)]
        ]
    return [
        ("content_block_start", {**head, "content_block": start}),
        *(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def stream_events(reply: Reply, *, model: str = MODEL, message_id: str = "msg_fake") -> list[Event]:
    """The streamed response for ``reply``, as ``(event name, data)`` pairs."""
    message = message_json(reply, model=model, message_id=message_id)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(reply.blocks):
        events.extend(_block_events(block, index))
        if index == 0 and reply.pings:
            events.append(("ping", {"type": "ping"}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    if reply.error_after is not None:
        kind, text = reply.error
        error = {"type": "error", "error": {"type": kind, "message": text}}
        events = [*events[: reply.error_after], ("error", error)]
    elif reply.cut_after is not None:
        events = events[: reply.cut_after]
    return events


def encode_events(events: Sequence[Event]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        for name, data in events
    )


# -- the ASGI app ---------------------------------------------------------------


@dataclass(slots=True)
class FakeAnthropic(FakeServer):
    api_key: str = "sk-test"
    default: Reply = field(default_factory=Reply)
    replies: deque[Reply | ErrorReply] = field(default_factory=deque)
    requests: list[Received] = field(default_factory=list)
    closed: int = 0  # responses whose ASGI call ended (completed or cut)
    signatures: set[str] = field(default_factory=lambda: {SIGNATURE})

    def script(self, *replies: Reply | ErrorReply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> Received:
        return self.requests[-1]

    async def _models(self, headers: dict[str, str], send: Send, received: Received) -> None:
        await _list_models(headers, self.api_key, send, received)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        raw = await read_body(receive)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        query = scope["query_string"].decode()
        received = Received(scope["path"], headers, body, raw, query)
        self.requests.append(received)
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            await self._models(headers, send, received)
            return
        paths = ("/v1/messages", "/v1/messages/count_tokens")
        if scope["method"] != "POST" or scope["path"] not in paths:
            await _send_error(send, ErrorReply(404, "not_found_error", "Not found"), received)
            return
        count = scope["path"] == paths[1]
        try:
            validate(headers, body, self.api_key, count=count, signatures=self.signatures)
        except Rejected as rejected:
            reply = ErrorReply(rejected.status, rejected.type, rejected.message)
            await _send_error(send, reply, received)
            return
        if count:
            received.status = 200
            await send_json(send, 200, {"input_tokens": count_tokens(body)})
            return
        scripted = self.replies.popleft() if self.replies else self.default
        if scripted.before_headers is not None:
            await scripted.before_headers.wait()
        if isinstance(scripted, ErrorReply):
            await _send_error(send, scripted, received)
            return
        received.status = 200
        message_id = f"msg_fake{uuid.uuid4().hex[:20]}"
        extra = {"request-id": _request_id(), **scripted.headers}
        if not body.get("stream"):
            if scripted.raw is not None:
                await _send_raw(send, scripted.raw, extra)
                return
            payload = message_json(scripted, model=body["model"], message_id=message_id)
            await send_json(send, 200, payload, extra)
            return
        await start_stream(send, {"cache-control": "no-cache", **extra})
        if scripted.raw is not None:
            chunks = [scripted.raw]
        else:
            events = stream_events(scripted, model=body["model"], message_id=message_id)
            chunks = [encode_events([event]) for event in events]
        for i, chunk in enumerate(chunks):
            if scripted.gate is not None and scripted.after_events == i:
                await scripted.gate.wait()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if scripted.gate is not None and scripted.after_events == len(chunks):
            await scripted.gate.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_raw(send: Send, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _list_models(
    headers: dict[str, str], api_key: str, send: Send, received: Received
) -> None:
    """``GET /v1/models``, as Anthropic lists models: the key and the version are required."""
    if headers.get("x-api-key") != api_key:
        await _send_error(
            send, ErrorReply(401, "authentication_error", "invalid x-api-key"), received
        )
    elif "anthropic-version" not in headers:
        missing = ErrorReply(400, "invalid_request_error", "anthropic-version: header is required")
        await _send_error(send, missing, received)
    else:
        received.status = 200
        card = {"type": "model", "id": "claude-fake", "display_name": "Fake", "created_at": ""}
        page = {"data": [card], "has_more": False, "first_id": "claude-fake", "last_id": None}
        await send_json(send, 200, page)


async def _send_error(send: Send, reply: ErrorReply, received: Received) -> None:
    received.status = reply.status
    received.rejection = reply.message
    headers = {"request-id": _request_id()}
    if reply.retry_after is not None:
        headers["retry-after"] = reply.retry_after
    await send_json(send, reply.status, reply.body(), headers)
