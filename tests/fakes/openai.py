"""A fake OpenAI Chat Completions server that speaks the real wire format.

Tests script its replies (:class:`Reply`) and read back what it received.
A reply can wait on a ``trio.Event`` at a chosen point, so tests synchronise
on events instead of sleeping. It is strict (``strict=False`` turns that off):
it refuses with OpenAI's 400 what the real API refuses (see
:mod:`tests.fakes.openai_rules`).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
from tests.fakes.openai_rules import Rejected, validate


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


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


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
        body = json.loads(await read_body(receive) or b"{}")
        self.requests.append(Seen(scope["path"], headers, body))
        # Azure sends its key as `api-key`; the same fake serves both.
        keys = (headers.get("authorization"), f"Bearer {headers.get('api-key')}")
        if f"Bearer {self.api_key}" not in keys:
            error = {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            await send_json(send, 401, {"error": error})
            return
        if self.strict:
            try:
                validate(body)
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
        if body.get("stream"):
            await self._stream(send, body, reply)
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

    async def _stream(self, send: Send, body: dict[str, Any], reply: Reply) -> None:
        await start_stream(send, reply.headers)
        if reply.raw is not None:
            for i, piece in enumerate(reply.raw):
                if reply.gate is not None and reply.after_chunks == i:
                    await reply.gate.wait()
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        chunks = self._chunks(body, reply)
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
