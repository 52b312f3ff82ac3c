"""Every API endpoint the gateway relays, in one table.

A row says, for one endpoint: the paths it answers on, the *ingress* codec
that parses what the client sent, the *operation* each kind of deployment runs
for it (keyed by the deployment's adapter, ``*`` for every other one), and
the *envelope* its errors are written in, before the response started and as
the stream's last event after. :class:`feathergate.gateway.Gateway` looks the
path up here and drives the row through the one relay, so the router
(retries, fallbacks, cooldowns, limits), the deadlines, disconnect handling,
drain on shutdown, metrics and the master key apply to every row alike. A new
endpoint is a new row (and its codec and operations), never a copy of the
chat path.

Operations are named ``module:function`` and imported on first use, so a
gateway only loads what its traffic needs; ``function(adapter)`` returns the
:class:`feathergate.operations.base.Operation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module

from feathergate.envelopes import ANTHROPIC, OPENAI, ErrorEnvelope
from feathergate.ingress import Ingress
from feathergate.ingress.anthropic.request import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from feathergate.ingress.openai_chat import OPENAI_CHAT
from feathergate.ingress.openai_completions import OPENAI_COMPLETIONS
from feathergate.ingress.openai_embeddings import OPENAI_EMBEDDINGS
from feathergate.operations.base import Operation

__all__ = ["ENDPOINTS", "ROUTES", "Endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    paths: tuple[str, ...]
    ingress: Ingress
    operations: Mapping[str, str]  # adapter (or "*") -> "module:function"
    envelope: ErrorEnvelope
    # Anthropic's SDKs send the key as x-api-key (ANTHROPIC_API_KEY) or as a
    # bearer token (ANTHROPIC_AUTH_TOKEN); OpenAI's only as a bearer token.
    api_key_header: bool = False
    # Whether the request's size counts towards a deployment's tpm estimate
    # (and a virtual key's spend: an unmetered row is free to keys).
    metered: bool = True
    # Whether the call generates tokens: a virtual key's budget reserves for
    # them. Embeddings do not; they are priced per input token alone.
    generates: bool = True
    _loaded: dict[str, Operation] = field(default_factory=dict, compare=False, repr=False)

    def operation(self, adapter: str) -> Operation:
        found = self._loaded.get(adapter)
        if found is None:
            target = self.operations.get(adapter) or self.operations["*"]
            module, _, name = target.partition(":")
            factory: Callable[[str], Operation] = getattr(import_module(module), name)
            found = self._loaded[adapter] = factory(adapter)
        return found


# fmt: off
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "chat completions",
        paths=("/v1/chat/completions", "/chat/completions"),
        ingress=OPENAI_CHAT,
        operations={
            "*": "feathergate.operations.chat:chat",  # the provider's chat translators
        },
        envelope=OPENAI,
    ),
    Endpoint(
        "messages",
        paths=("/v1/messages",),
        ingress=ANTHROPIC_MESSAGES,
        operations={
            "anthropic": "feathergate.providers.anthropic.passthrough:messages",  # lossless
            "*": "feathergate.operations.messages:messages",  # Messages <-> Chat <-> provider
        },
        envelope=ANTHROPIC,
        api_key_header=True,
    ),
    Endpoint(
        "count tokens",
        paths=("/v1/messages/count_tokens",),
        ingress=ANTHROPIC_COUNT_TOKENS,
        operations={
            "anthropic": "feathergate.providers.anthropic.passthrough:count_tokens",
            "gemini": "feathergate.providers.gemini.count_tokens:count_tokens",
            "*": "feathergate.operations.local:count_tokens",  # a documented estimate
        },
        envelope=ANTHROPIC,
        api_key_header=True,
        metered=False,
    ),
    Endpoint(
        "embeddings",
        paths=("/v1/embeddings", "/embeddings"),
        ingress=OPENAI_EMBEDDINGS,
        operations={
            "openai": "feathergate.operations.embeddings:passthrough",  # model renamed
            "azure": "feathergate.operations.embeddings:passthrough",
            "gemini": "feathergate.providers.gemini.embeddings:embeddings",  # fans out
            "mock": "feathergate.operations.embeddings:mock",
            "*": "feathergate.operations.unsupported:embeddings",  # a 400
        },
        envelope=OPENAI,
        generates=False,
    ),
    Endpoint(
        "completions",
        paths=("/v1/completions", "/completions"),
        ingress=OPENAI_COMPLETIONS,
        operations={
            "openai": "feathergate.operations.completions:passthrough",  # model renamed
            "azure": "feathergate.operations.completions:passthrough",
            "mock": "feathergate.operations.completions:mock",
            "*": "feathergate.operations.unsupported:completions",  # a 400
        },
        envelope=OPENAI,
    ),
)
# fmt: on

ROUTES: dict[str, Endpoint] = {path: e for e in ENDPOINTS for path in e.paths}
"""Path -> endpoint. The query string plays no part (``?beta=true`` included)."""
