"""A fake OpenAI server that speaks the real wire format: chat, embeddings, legacy completions.

Tests script its replies (:class:`Reply`) and read back what it received.
A reply can wait on a ``trio.Event`` at a chosen point, so tests synchronise
on events instead of sleeping. It is strict (``strict=False`` turns that off):
it refuses with OpenAI's 400 what the real API refuses (see
:mod:`tests.fakes.openai_rules`).

``/embeddings`` answers :func:`fake_vector` for each input (``dimensions``,
else :data:`EMBEDDING_DIMENSIONS`: small, so tests stay fast), as floats or
as base64 float32s like OpenAI. Azure's paths
(``/openai/deployments/{name}/...?api-version=``) are served too, with the key
in ``api-key``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import trio

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
from tests.fakes.openai_rules import (
    Rejected,
    validate,
    validate_completions,
    validate_embeddings,
)

EMBEDDING_DIMENSIONS = 8


def fake_vector(item: str | list[int], dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The fake's embedding of one input: a unit vector drawn from its hash."""
    seed = hashlib.sha256(json.dumps(item).encode()).digest()
    raw = []
    for i in range(dimensions):
        block = hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
        raw.append(int.from_bytes(block[:4], "little") / 2**31 - 1.0)
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else max(1, len(item.split()))


@dataclass
class Reply:
    text: str = "Hello there, friend"
    reasoning: str = ""  # vLLM/DeepSeek's reasoning_content, before the text
    stop_reason: str | None = None  # vLLM's extension: the stop string that ended the answer
    status: int = 200
    error: Any = None  # the body of an error reply (status >= 400)
    headers: dict[str, str] = field(default_factory=dict)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    finish_reason: str | None = None
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    )
    before_headers: trio.Event | None = None  # wait on it before answering
    after_chunks: int | None = None  # with ``gate``: send this many chunks (or raw parts); wait
    gate: trio.Event | None = None
    raw: list[bytes] | None = None  # exact stream bytes to send instead of chunks
    error_event: dict[str, Any] | None = None  # sent in the stream after the text
    delay: float = 0.0  # the upstream is slow to answer (its own behaviour, not a sync point)
    # Embeddings: how a lax OpenAI-compatible server may answer.
    floats_only: bool = False  # ignores encoding_format
    reversed_data: bool = False  # data[] in reverse order (indices still right)
    no_usage: bool = False


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    query: dict[str, list[str]] = field(default_factory=dict)
    raw: bytes = b""  # the body as it arrived


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str = "sk-upstream-secret", *, strict: bool = True) -> None:
        self.api_key = api_key
        self.strict = strict
        self.replies: deque[Reply] = deque()
        self.default = Reply()  # answers when no scripted reply is left
        self.requests: list[Seen] = []
        self.listing_status = 200  # what GET /v1/models answers (with the right key)

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        if scope["method"] == "GET" and scope["path"].endswith("/models"):
            await self._models(scope, headers, send)
            return
        raw = await read_body(receive)
        body = json.loads(raw or b"{}")
        path = scope["path"]
        query = parse_qs(scope["query_string"].decode())
        self.requests.append(Seen(path, headers, body, query, raw))
        azure = path.startswith("/openai/deployments/")
        if azure and not query.get("api-version"):
            await send_json(send, 404, {"error": {"code": "404", "message": "Resource not found"}})
            return
        key = headers.get("api-key") if azure else headers.get("authorization")
        if key != (self.api_key if azure else f"Bearer {self.api_key}"):
            error = {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            await send_json(send, 401, {"error": error})
            return
        endpoint = path.rsplit("/", 2)
        kind = "chat" if endpoint[-2:] == ["chat", "completions"] else endpoint[-1]
        if self.strict:
            rules = {"embeddings": validate_embeddings, "completions": validate_completions}
            try:
                rules.get(kind, validate)(body)
            except Rejected as rejected:
                await send_json(send, 400, {"error": rejected.error})
                return
        reply = self.replies.popleft() if self.replies else self.default
        if reply.before_headers is not None:
            await reply.before_headers.wait()
        if reply.delay:
            await trio.sleep(reply.delay)
        if reply.status >= 400:
            payload = (
                reply.error
                if reply.error is not None
                else {
                    "error": {
                        "message": "upstream failed",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            await send_json(send, reply.status, payload, reply.headers)
            return
        if kind == "embeddings":
            await send_json(send, 200, self._embeddings(body, reply), reply.headers)
        elif kind == "completions":
            if body.get("stream"):
                await self._stream(send, self._text_chunks(body, reply), reply)
            else:
                await send_json(send, 200, self._text_completion(body, reply), reply.headers)
        elif body.get("stream"):
            await self._stream(send, self._chunks(body, reply), reply)
        else:
            await send_json(send, 200, self._completion(body, reply), reply.headers)

    async def _models(self, scope: Scope, headers: dict[str, str], send: Send) -> None:
        """``GET /v1/models``: what health checks call; ``listing_status`` fails it."""
        self.requests.append(Seen(scope["path"], headers, {}))
        keys = (headers.get("authorization"), f"Bearer {headers.get('api-key')}")
        if f"Bearer {self.api_key}" not in keys:
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            await send_json(send, 401, {"error": {**error, "param": None, "code": None}})
        elif self.listing_status != 200:
            error = {"message": "overloaded", "type": "server_error", "param": None, "code": None}
            await send_json(send, self.listing_status, {"error": error})
        else:
            card = {"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "fake"}
            await send_json(send, 200, {"object": "list", "data": [card]})

    def _embeddings(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        raw = body["input"]
        if isinstance(raw, str) or (raw and isinstance(raw[0], int)):
            raw = [raw]
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64" and not reply.floats_only
        data = []
        for i, item in enumerate(raw):
            vector: Any = fake_vector(item, dimensions)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        if reply.reversed_data:
            data.reverse()
        tokens = sum(_tokens(item) for item in raw)
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if not reply.no_usage:
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return answer

    def _text_head(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**self._head(body), "id": "cmpl-fake", "object": "text_completion"}

    def _text_completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        choice = {
            "text": reply.text,
            "index": 0,
            "logprobs": None,
            "finish_reason": reply.finish_reason or "stop",
        }
        return {**self._text_head(body), "choices": [choice], "usage": reply.usage}

    def _text_chunks(self, body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        head = self._text_head(body)

        def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice]}

        words = reply.text.split(" ") if reply.text else []
        chunks = [chunk(w if i == len(words) - 1 else w + " ") for i, w in enumerate(words)]
        chunks.append(chunk("", reply.finish_reason or "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**head, "choices": [], "usage": reply.usage})
        return chunks

    def _head(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }

    def _finish(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
        }
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": args},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self._finish(reply),
        }
        if reply.stop_reason is not None:
            choice["stop_reason"] = reply.stop_reason
        return {
            **self._head(body),
            "object": "chat.completion",
            "choices": [choice],
            "usage": reply.usage,
        }

    def _chunks(self, body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        head = {**self._head(body), "object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice], "usage": None}

        chunks = [chunk({"role": "assistant", "content": ""})]
        if reply.reasoning:
            chunks.append(chunk({"reasoning_content": reply.reasoning}))
        words = reply.text.split(" ") if reply.text else []
        for i, word in enumerate(words):
            chunks.append(chunk({"content": word if i == len(words) - 1 else word + " "}))
        for index, (name, args) in enumerate(reply.tool_calls):
            first = {
                "index": index,
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [first]}))
            half = len(args) // 2
            for part in (args[:half], args[half:]):
                chunks.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                )
        chunks.append(chunk({}, self._finish(reply)))
        if reply.stop_reason is not None:
            chunks[-1]["choices"][0]["stop_reason"] = reply.stop_reason
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**head, "choices": [], "usage": reply.usage})
        return chunks

    async def _stream(self, send: Send, chunks: list[dict[str, Any]], reply: Reply) -> None:
        await start_stream(send, reply.headers)
        if reply.raw is not None:
            for i, piece in enumerate(reply.raw):
                if reply.gate is not None and reply.after_chunks == i:
                    await reply.gate.wait()
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        for i, chunk in enumerate(chunks):
            if reply.gate is not None and reply.after_chunks == i:
                await reply.gate.wait()
            if (
                reply.error_event is not None
                and chunk["choices"]
                and chunk["choices"][0]["finish_reason"]
            ):
                data = b"data: " + json.dumps(reply.error_event).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": data, "more_body": False})
                return
            data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if reply.gate is not None and reply.after_chunks == len(chunks):
            await reply.gate.wait()
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
