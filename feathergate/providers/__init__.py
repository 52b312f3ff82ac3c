"""The provider registry: a deployment's ``adapter`` names its provider here.

Imports are lazy so that startup only pays for the providers a config uses.
"""

from __future__ import annotations

from importlib import import_module

from feathergate.providers.base import Provider

__all__ = ["get_provider"]

_REGISTRY: dict[str, tuple[str, str]] = {
    "openai": ("feathergate.providers.openai", "OpenAIProvider"),
    "azure": ("feathergate.providers.openai", "AzureProvider"),
    "anthropic": ("feathergate.providers.anthropic", "AnthropicProvider"),
    "gemini": ("feathergate.providers.gemini", "GeminiProvider"),
    "mock": ("feathergate.mock", "MockProvider"),
}
_loaded: dict[str, Provider] = {}


def get_provider(adapter: str) -> Provider:
    provider = _loaded.get(adapter)
    if provider is None:
        module, name = _REGISTRY[adapter]
        provider = _loaded[adapter] = getattr(import_module(module), name)()
    return provider
