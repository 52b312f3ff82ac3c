"""Google Gemini (generativelanguage v1beta) behind the OpenAI Chat Completions API.

PROTOCOLS.md §3 and §4.2-4.8. Pure translators (``request``, ``messages``,
``schema``, ``response``, ``stream``) beside one adapter that owns the URL and
headers; tool-call ids and the thought signatures they carry are in ``ids``.
"""

from feathergate.providers.gemini.adapter import GeminiProvider
from feathergate.providers.gemini.ids import strip_thought_signature

__all__ = ["GeminiProvider", "strip_thought_signature"]
