"""What a background health check sends to a deployment, and how its answer reads.

Pure: no I/O. The cheapest call each API has that proves the base URL, the
key and (where the API can say) the model: the model listing of
OpenAI-compatible servers, Azure and Anthropic, and Gemini's
``models/{model}``, which answers 404 for a model it does not serve. None of
them costs tokens. A ``mock_response`` deployment has nothing to check.

Outcomes are described in plain words built from the status alone: an
upstream's error body may quote the key (OpenAI's does, partly masked), so
it is never shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from feathergate.catalog import CATALOG
from feathergate.config import Deployment
from feathergate.providers.anthropic.adapter import ANTHROPIC_VERSION, messages_url
from feathergate.providers.gemini.adapter import model_url

__all__ = ["Probe", "describe_status", "probe_for"]

_AZURE_VERSION = "2024-10-21"


@dataclass(frozen=True, slots=True)
class Probe:
    url: str
    headers: list[tuple[str, str]]


def probe_for(dep: Deployment) -> Probe | None:
    """The GET that checks ``dep``; ``None`` when there is nothing to call (a mock)."""
    if dep.mock_response is not None:
        return None
    key = dep.api_key.value
    if dep.adapter == "anthropic":
        url = messages_url(dep.api_base).removesuffix("/messages") + "/models"
        headers = [("anthropic-version", ANTHROPIC_VERSION)]
        headers += [("x-api-key", key)] if key else []
    elif dep.adapter == "gemini":
        one = model_url(dep, stream=False).rsplit(":", 1)[0]  # .../models/{model}
        url = one.rsplit("/", 1)[0] if "*" in dep.model else one
        headers = [("x-goog-api-key", key)] if key else []
    elif dep.adapter == "azure":
        base = dep.api_base or ""
        if base.endswith("/openai/v1"):
            url = f"{base}/models"
        else:
            version = quote(dep.api_version or _AZURE_VERSION, safe="")
            url = f"{base}/openai/models?api-version={version}"
        headers = [("api-key", key)] if key else []
    else:
        info = CATALOG.get(dep.provider)
        base = dep.api_base or (info.default_api_base if info else None) or ""
        url = f"{base}/models"
        headers = [("authorization", f"Bearer {key}")] if key else []
    merged = dict(headers)
    for name, value in dep.extra_headers:
        merged[name.lower()] = value
    return Probe(url, list(merged.items()))


def describe_status(status: int) -> str:
    """A failed check's status, in words that hold nothing the upstream wrote."""
    if status in (401, 403):
        return f"the upstream refused the API key (HTTP {status})"
    if status == 404:
        return "the upstream does not know this model or path (HTTP 404)"
    if status == 429:
        return "the upstream is rate limiting (HTTP 429)"
    if status >= 500:
        return f"the upstream failed (HTTP {status})"
    return f"the upstream answered HTTP {status}"
