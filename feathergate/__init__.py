"""FeatherGate: an OpenAI-compatible LLM gateway that serves LiteLLM's proxy config."""

__version__ = "0.1.0"
