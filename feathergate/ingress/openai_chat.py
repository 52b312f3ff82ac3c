"""``POST /v1/chat/completions``: OpenAI's Chat Completions, the gateway's native API.

The checks themselves live in :mod:`feathergate.chat`; chat bodies go to every
provider's translators unchanged, so the parsed request is the body itself.
"""

from __future__ import annotations

from feathergate.chat import ChatRequest, parse_chat_request
from feathergate.ingress import Headers

__all__ = ["OPENAI_CHAT", "OpenAIChatIngress"]


class OpenAIChatIngress:
    def parse(self, raw: bytes, headers: Headers, query: bytes, max_messages: int) -> ChatRequest:
        return parse_chat_request(raw, max_messages)


OPENAI_CHAT = OpenAIChatIngress()
