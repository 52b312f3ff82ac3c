from feathergate.providers.openai.adapter import AzureProvider, OpenAIProvider

__all__ = ["AzureProvider", "OpenAIProvider"]
