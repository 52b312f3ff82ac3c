"""One request's passage through virtual keys: identify, admit, finish.

:class:`feathergate.gateway.Gateway` drives every endpoint row through these
three steps when a key store is configured, so chat, messages, embeddings and
completions are identified, admitted (models, budgets, limits) and billed
alike; the endpoint row says whether a call costs anything (``metered``) and
whether it generates tokens a budget must reserve for (``generates``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from feathergate.endpoints import Endpoint
from feathergate.keys.gate import billed, max_tokens
from feathergate.keys.service import Admission, KeyService, Principal
from feathergate.operations.base import ClientRequest
from feathergate.providers.base import Usage
from feathergate.relay import Exchange

__all__ = ["KeySeam"]


class KeySeam:
    __slots__ = ("admission", "keys", "principal")

    def __init__(self, keys: KeyService) -> None:
        self.keys = keys
        self.principal: Principal | None = None
        self.admission: Admission | None = None

    async def identify(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Who is calling, before the body is read; raises when nobody may."""
        self.principal = await self.keys.identify(headers)

    async def admit(self, endpoint: Endpoint, request: ClientRequest, size: int) -> ClientRequest:
        """Admit the call once its model is known; the request to relay (usage asked upstream)."""
        if self.principal is None or not endpoint.metered:  # count_tokens costs nothing
            return request
        # About four bytes a token, as the router's tpm estimate.
        most = max_tokens(request.body) if endpoint.generates else 0
        self.admission = await self.keys.admit(self.principal, request.model, size // 4, most)
        if self.admission is None:
            return request
        return billed(request, self.keys.settings)

    @property
    def meter(self) -> Callable[[str, Usage | None], list[tuple[bytes, bytes]]] | None:
        """The answer's x-litellm-* headers, for :attr:`Exchange.meter`."""
        admission = self.admission
        if admission is None:
            return None
        return lambda dep_id, usage: self.keys.response_headers(admission, dep_id, usage)

    def finish(self, ex: Exchange | None, status: int) -> None:
        """Settle the call's spend; once, whatever way the request ended."""
        if self.admission is None:
            return
        dep = ex.deployment if ex is not None else None
        self.keys.finish(
            self.admission,
            dep.id if dep is not None else None,
            ex.tokens if ex is not None else None,
            ex.chunks if ex is not None else 0,
            status,
        )

    @property
    def label(self) -> str | None:
        """How the access log names the caller: ``master``, the key's alias or ``sk-...abcd``."""
        principal = self.principal
        if principal is None:
            return None
        if principal.master:
            return "master"
        key = principal.key
        return (key.key_alias or key.key_name) if key is not None else None

    @property
    def cost(self) -> float | None:
        """The call's cost in USD, once known (unpriced or unbilled: ``None``)."""
        return self.admission.cost if self.admission is not None else None
