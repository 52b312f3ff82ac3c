"""Anthropic Messages API behind the OpenAI Chat Completions API (PROTOCOLS.md §2, §4)."""

from feathergate.providers.anthropic.adapter import AnthropicProvider

__all__ = ["AnthropicProvider"]
