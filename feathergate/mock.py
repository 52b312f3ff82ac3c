"""``mock_response``: a deployment that answers locally, as LiteLLM's key does.

It is an OpenAI-speaking upstream behind an in-process transport, so a mock
call takes the same relay path as a real one, streaming included.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio
import trio.lowlevel

from feathergate.providers.base import CallContext
from feathergate.providers.openai import OpenAIProvider

__all__ = ["MockProvider", "MockResponse", "MockTransport"]


def _usage(prompt: object, text: str) -> dict[str, int]:
    prompt_tokens = max(1, len(json.dumps(prompt)) // 4)
    completion_tokens = max(1, len(text.split()))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class MockResponse:
    __slots__ = ("_parts", "headers", "status")

    def __init__(self, parts: list[bytes], content_type: str) -> None:
        self._parts = parts
        self.status = 200
        self.headers = {"content-type": content_type}

    async def next_chunk(self) -> bytes | None:
        # A schedule point, as a socket read is: the relay's pump writes
        # without one when the client's socket takes a piece at once.
        await trio.lowlevel.checkpoint()
        return self._parts.pop(0) if self._parts else None

    async def read(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data

    def close(self) -> None:
        self._parts = []


class MockTransport:
    """Answers every chat completion with the configured text."""

    def __init__(self, text: str) -> None:
        self.text = text

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
        request = json.loads(body)
        head = {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:12]}",
            "created": int(time.time()),
            "model": request.get("model", "mock"),
            "system_fingerprint": None,
        }
        usage = _usage(request.get("messages"), self.text)
        if not request.get("stream"):
            message = {"role": "assistant", "content": self.text, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            payload = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return MockResponse([json.dumps(payload).encode()], "application/json")

        def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _event(
                {**head, "object": "chat.completion.chunk", "choices": [choice], "usage": None}
            )

        words = self.text.split(" ")
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        parts = [chunk({"role": "assistant", "content": ""})]
        parts += [chunk({"content": piece}) for piece in pieces if piece]
        parts.append(chunk({}, "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            parts.append(
                _event({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            )
        parts.append(b"data: [DONE]\n\n")
        return MockResponse(parts, "text/event-stream")

    def close(self) -> None:
        pass


class MockProvider(OpenAIProvider):
    """Speaks OpenAI to the local mock transport, whatever the deployment's provider."""

    name = "mock"

    def url(self, ctx: CallContext, path: str = "chat/completions") -> str:
        return f"http://mock.invalid/{path}"

    def auth_headers(self, ctx: CallContext) -> list[tuple[str, str]]:
        return []
