"""Which ``litellm_params.model`` prefixes FeatherGate serves, and how.

A table, not code: the prefix picks a wire protocol (``adapter``), a default
host and the environment variable LiteLLM reads the key from when the config
gives none. Everything OpenAI-compatible shares the ``openai`` adapter;
``lacks`` names the endpoints (``embeddings``, ``completions``) a provider's
API does not have, so that a request for one is a clear 400 instead of the
upstream's 404.

A model written without a prefix gets its provider the way LiteLLM infers it,
for the families FeatherGate serves (:func:`split_model`).

A leaf module: the config loader and the providers both read it, so it
imports neither (it used to live in ``providers``, which made config and
providers import each other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CATALOG", "KNOWN_ELSEWHERE", "ProviderInfo", "split_model"]


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    adapter: str
    default_api_base: str | None
    key_env: str | None
    key_required: bool = True
    lacks: frozenset[str] = frozenset()  # endpoints its API does not offer


_CHAT_ONLY = frozenset({"embeddings", "completions"})


def _compat(
    name: str,
    base: str | None,
    env: str | None,
    required: bool = True,
    lacks: frozenset[str] = frozenset(),
) -> ProviderInfo:
    return ProviderInfo(name, "openai", base, env, required, lacks)


CATALOG: dict[str, ProviderInfo] = {
    info.name: info
    for info in (
        _compat("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        # LiteLLM's prefix for OpenAI's legacy completions models (gpt-3.5-turbo-instruct).
        _compat("text-completion-openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ProviderInfo(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            "ANTHROPIC_API_KEY",
            lacks=_CHAT_ONLY,
        ),
        ProviderInfo(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com",
            "GEMINI_API_KEY",
            lacks=frozenset({"completions"}),
        ),
        ProviderInfo("azure", "azure", None, "AZURE_API_KEY"),
        _compat("hosted_vllm", None, "HOSTED_VLLM_API_KEY", required=False),
        _compat("lm_studio", None, "LM_STUDIO_API_KEY", required=False),
        _compat("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", lacks=_CHAT_ONLY),
        _compat(
            "deepseek",
            "https://api.deepseek.com/v1",
            "DEEPSEEK_API_KEY",
            lacks=frozenset({"embeddings"}),
        ),
        _compat("together_ai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
        _compat("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        _compat("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
        # Mistral's completions are fill-in-the-middle, at /fim/completions.
        _compat(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            lacks=frozenset({"completions"}),
        ),
        _compat("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        _compat("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
        _compat(
            "perplexity",
            "https://api.perplexity.ai",
            "PERPLEXITYAI_API_KEY",
            lacks=frozenset({"completions"}),
        ),
    )
}

# LiteLLM providers whose protocols FeatherGate does not speak yet. A config
# naming them still loads (with a warning); requests to them get a 501.
KNOWN_ELSEWHERE = frozenset(
    {
        "bedrock",
        "bedrock_converse",
        "vertex_ai",
        "vertex_ai_beta",
        "azure_ai",
        "cohere",
        "cohere_chat",
        "huggingface",
        "replicate",
        "sagemaker",
        "ollama",
        "ollama_chat",
        "watsonx",
        "databricks",
        "cloudflare",
        "anyscale",
        "ai21",
        "nlp_cloud",
        "aleph_alpha",
        "petals",
        "palm",
        "codestral",
        "text-completion-codestral",
        "cerebras",
        "sambanova",
        "friendliai",
        "github",
        "nvidia_nim",
        "volcengine",
        "predibase",
        "triton",
        "clarifai",
        "voyage",
        "jina_ai",
        "custom_openai",
        "openai_like",
    }
)


# Bare names LiteLLM maps to a provider (``get_llm_provider`` looks them up in
# its model list): OpenAI's legacy completion models first, since
# ``gpt-3.5-turbo-instruct`` also starts with ``gpt-``.
_INFERRED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(ft:)?(gpt-3\.5-turbo-instruct|babbage-002|davinci-002)([-:].*)?"),
        "text-completion-openai",
    ),
    (
        re.compile(
            r"(ft:)?(gpt-|chatgpt-|o[1-9](-|$)|text-embedding-|omni-moderation|dall-e-|whisper-"
            r"|tts-|computer-use-).*|\*"
        ),
        "openai",
    ),
    (re.compile(r"claude-.*"), "anthropic"),
)


def split_model(model: str) -> tuple[str | None, str]:
    """``'anthropic/claude-x'`` -> ``('anthropic', 'claude-x')``.

    Without a prefix the provider is inferred the way LiteLLM does for the
    families FeatherGate serves (``gpt-*``, the ``o`` series and
    ``text-embedding-*`` are OpenAI's, ``claude-*`` Anthropic's); any other
    bare name has no provider (``None``), and the config loader says so.
    """
    prefix, sep, rest = model.partition("/")
    if sep:
        return prefix, rest  # an unknown prefix is reported by the config loader
    for pattern, provider in _INFERRED:
        if pattern.fullmatch(model):
            return provider, model
    return None, model
