"""The official openai SDK as a test client.

The synchronous client runs in a worker thread: the async one leaves its
inner async generators for the garbage collector, which trio reports as
warnings that the suite turns into errors.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import openai
import trio
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

__all__ = ["SDK"]


class SDK:
    def __init__(self, base: str, api_key: str = "anything") -> None:
        self.client = openai.OpenAI(base_url=f"{base}/v1", api_key=api_key, max_retries=0)

    async def create(self, **kwargs: Any) -> ChatCompletion:
        call = partial(self.client.chat.completions.create, **kwargs)
        result: ChatCompletion = await trio.to_thread.run_sync(call)
        return result

    async def stream(self, **kwargs: Any) -> list[ChatCompletionChunk]:
        def run() -> list[ChatCompletionChunk]:
            with self.client.chat.completions.create(stream=True, **kwargs) as stream:
                return list(stream)

        return await trio.to_thread.run_sync(run)

    async def embed(self, **kwargs: Any) -> CreateEmbeddingResponse:
        call = partial(self.client.embeddings.create, **kwargs)
        result: CreateEmbeddingResponse = await trio.to_thread.run_sync(call)
        return result

    async def complete(self, **kwargs: Any) -> Completion:
        call = partial(self.client.completions.create, **kwargs)
        result: Completion = await trio.to_thread.run_sync(call)
        return result

    async def complete_stream(self, **kwargs: Any) -> list[Completion]:
        def run() -> list[Completion]:
            with self.client.completions.create(stream=True, **kwargs) as stream:
                return list(stream)

        return await trio.to_thread.run_sync(run)

    async def models(self) -> list[str]:
        page = await trio.to_thread.run_sync(self.client.models.list)
        return [m.id for m in page.data]

    def close(self) -> None:
        self.client.close()
