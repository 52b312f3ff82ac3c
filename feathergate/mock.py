"""``mock_response``: a deployment that answers locally, as LiteLLM's key does.

It is an OpenAI-speaking upstream behind an ``httpx.MockTransport``, so a
mock call takes the same relay path as a real one, streaming included.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx

from feathergate.providers.base import CallContext
from feathergate.providers.openai import OpenAIProvider

__all__ = ["MockProvider", "mock_transport"]


def _usage(prompt: object, text: str) -> dict[str, int]:
    prompt_tokens = max(1, len(json.dumps(prompt)) // 4)
    completion_tokens = max(1, len(text.split()))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def mock_transport(text: str) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        head = {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:12]}",
            "created": int(time.time()),
            "model": body.get("model", "mock"),
            "system_fingerprint": None,
        }
        usage = _usage(body.get("messages"), text)
        if not body.get("stream"):
            message = {"role": "assistant", "content": text, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            payload = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return httpx.Response(200, json=payload)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                data = {
                    **head,
                    "object": "chat.completion.chunk",
                    "choices": [choice],
                    "usage": None,
                }
                return b"data: " + json.dumps(data).encode() + b"\n\n"

            yield chunk({"role": "assistant", "content": ""})
            words = text.split(" ")
            for piece in [w + " " for w in words[:-1]] + words[-1:]:
                if piece:
                    yield chunk({"content": piece})
            yield chunk({}, "stop")
            if include_usage:
                data = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                yield b"data: " + json.dumps(data).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events())

    return httpx.MockTransport(handler)


class MockProvider(OpenAIProvider):
    """Speaks OpenAI to the local mock transport, whatever the deployment's provider."""

    name = "mock"

    def url(self, ctx: CallContext) -> str:
        return "http://mock.invalid/chat/completions"

    def auth_headers(self, ctx: CallContext) -> list[tuple[str, str]]:
        return []
