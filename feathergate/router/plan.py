"""One request's way through its group, its retries and its fallbacks.

The relay drives an :class:`AttemptPlan`; it never decides anything itself::

    plan = router.plan(model, stream=stream, prompt_tokens=estimate)
    dep = plan.next()                       # may raise RateLimited
    while True:
        refused = await plan.admit(dep)     # shared rpm/tpm; None: go ahead
        if refused is not None:
            ...                             # GiveUp: raise; Retry: dep = refused.dep
        plan.started(dep)
        try:
            ...                             # call the upstream
        except GatewayError as err:
            decision = plan.failed(dep, err)
            if isinstance(decision, GiveUp):
                raise decision.err
            await trio.sleep(decision.delay)
            dep = decision.dep
            continue
        except BaseException:               # cancelled, client gone
            plan.cancelled(dep)
            raise
        else:
            plan.succeeded(dep, latency=..., ttft=..., tokens=...)
            break

``admit`` is the plan's one ``await``: with shared state on and a
deployment that has ``rpm``/``tpm``, it asks the store's counters (one atomic
script, see :mod:`feathergate.state`) and, when they refuse, answers like
``next`` would with that deployment saturated. Everything else returns at
once, without a checkpoint.

Every ``started`` must be closed by exactly one of ``succeeded``, ``failed``
or ``cancelled``, so call them from ``except``/``else``/``finally`` paths; the
in-flight count relies on it. Extra calls are harmless: each closes at most
one open attempt of that deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from feathergate.config import Deployment
from feathergate.errors import GatewayError, RateLimited, SharedStateUnavailable
from feathergate.router.classify import ErrorClass, classify, retry_after_seconds
from feathergate.router.groups import Group, ModelTable
from feathergate.router.policy import RETRY_AFTER_CAP, backoff, fallback_targets, retry_budget
from feathergate.router.selection import Selector
from feathergate.state.base import Grant, Limit

__all__ = ["AttemptPlan", "Decision", "GiveUp", "Retry"]

# A request asks the shared counters at most this often (each refusal takes
# one deployment out), so a flapping answer cannot keep it looping.
MAX_REFUSALS = 16


@dataclass(frozen=True, slots=True)
class Retry:
    """Try ``dep`` after ``delay`` seconds; ``is_fallback`` when it serves another model."""

    dep: Deployment
    delay: float
    is_fallback: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    err: GatewayError


Decision = Retry | GiveUp


class AttemptPlan:
    def __init__(
        self,
        selector: Selector,
        table: ModelTable,
        model: str,
        group: Group,
        *,
        stream: bool,
        prompt_tokens: int,
    ) -> None:
        self.model = model
        self.retries = 0  # retries inside a group, failovers included, in every group
        self.fallbacks = 0  # fallback groups entered
        self._sel = selector
        self._table = table
        self._stream = stream
        self._tokens = max(0, prompt_tokens)
        self._names = (model, group.name)  # what fallback rules are looked up by
        self._group = group
        self._tried: set[str] = set()
        self._group_retries = 0
        self._open: dict[str, list[tuple[int, Grant | None]]] = {}
        self._grant: Grant | None = None  # admitted, not yet started
        self._refusals = 0
        self._visited = {model, group.name}
        self._targets: list[str] | None = None

    @property
    def group(self) -> str:
        """The ``model_name`` (or pattern) of the group now being tried."""
        return self._group.name

    def next(self) -> Deployment:
        """The first deployment to try; raises :class:`RateLimited` when none is ready."""
        choice = self._ready_or_fallback()
        if isinstance(choice, Deployment):
            return choice
        raise choice

    def _ready_or_fallback(self) -> Deployment | RateLimited:
        choice = self._choose()
        if isinstance(choice, Deployment):
            return choice
        # A saturated group is a rate limit, and LiteLLM falls back on those.
        fallback = self._fall_back(ErrorClass.RATE_LIMIT, retryable=True)
        if fallback is not None:
            return fallback.dep
        return RateLimited(
            f"every deployment of model '{self.model}' is at its rpm/tpm limit or cooling down",
            retry_after=choice if math.isfinite(choice) else None,
        )

    async def admit(self, dep: Deployment) -> Decision | None:
        """Count ``dep`` against its shared rpm/tpm; ``None`` means go ahead and start it.

        A refusal skips ``dep`` while its window is full and answers with
        another deployment (no retry is spent: nothing was sent), a fallback,
        or a 429 whose ``Retry-After`` is when the first one frees up.
        """
        store = self._sel.store
        self._grant = None
        if store is None or not (dep.rpm or dep.tpm):
            return None
        try:
            grant = await store.acquire("deployment", dep.id, Limit(dep.rpm, dep.tpm), self._tokens)
        except SharedStateUnavailable as err:
            return GiveUp(err)
        if grant.admitted:
            self._grant = grant
            return None
        self._sel.refuse(dep, grant.wait)
        self._refusals += 1
        fallbacks = self.fallbacks
        choice = self._ready_or_fallback() if self._refusals < MAX_REFUSALS else None
        if isinstance(choice, Deployment):
            return Retry(choice, 0.0, is_fallback=self.fallbacks > fallbacks)
        if choice is None or choice.retry_after is None:
            choice = RateLimited(
                f"every deployment of model '{self.model}' is at its rpm/tpm limit",
                retry_after=grant.wait,
            )
        return GiveUp(choice)

    def started(self, dep: Deployment) -> None:
        """The request is about to be sent: one more in flight, one more request in rpm/tpm."""
        grant, self._grant = self._grant, None
        self._open.setdefault(dep.id, []).append((self._sel.start(dep, self._tokens), grant))
        self._tried.add(dep.id)

    def succeeded(
        self,
        dep: Deployment,
        *,
        latency: float,
        ttft: float | None = None,
        tokens: int | None = None,
    ) -> None:
        """``tokens`` (prompt + completion, as the upstream reported) replace the estimate."""
        opened = self._close(dep, tokens)
        if opened is not None:
            self._sel.success(dep, opened, latency=latency, ttft=ttft, tokens=tokens)

    def cancelled(self, dep: Deployment, *, tokens: int | None = None) -> None:
        """Neither success nor failure (the client left): only releases the in-flight count."""
        opened = self._close(dep, tokens)
        if opened is not None:
            self._sel.release(dep, opened, tokens)

    def failed(self, dep: Deployment, err: GatewayError) -> Decision:
        """Record ``err`` against ``dep`` and say what to do next."""
        opened = self._close(dep, None)  # the estimate stays: the upstream saw it
        if opened is not None:
            self._sel.release(dep, opened, None)
        self._tried.add(dep.id)
        self._sel.failure(dep, self._group, err)
        cls = classify(err)
        decision = self._retry(dep, err, cls) or self._fall_back(cls, err.retryable)
        return decision or GiveUp(err)

    def _close(self, dep: Deployment, tokens: int | None) -> int | None:
        tickets = self._open.get(dep.id)
        if not tickets:
            return None
        ticket, grant = tickets.pop()
        store = self._sel.store
        if grant is not None and tokens is not None and store is not None:
            store.settle(grant, tokens)
        return ticket

    def _choose(self, exclude: frozenset[str] = frozenset()) -> Deployment | float:
        return self._sel.choose(
            self._group, self._tried, stream=self._stream, tokens=self._tokens, exclude=exclude
        )

    def _retry(self, dep: Deployment, err: GatewayError, cls: ErrorClass) -> Retry | None:
        if self._group_retries >= retry_budget(self._sel.settings, dep, err, cls):
            return None
        retry_after = retry_after_seconds(err, self._sel.wall_clock())
        too_long = retry_after is not None and retry_after > RETRY_AFTER_CAP
        choice = self._choose(frozenset({dep.id}) if too_long else frozenset())
        if not isinstance(choice, Deployment):
            return None
        delay = 0.0  # an untried deployment owes us no wait (LiteLLM: no sleep on failover)
        if choice.id in self._tried:
            delay = backoff(self._group_retries, self._sel.rng)
            if choice.id == dep.id and retry_after is not None:
                delay = max(delay, retry_after)
        self._group_retries += 1
        self.retries += 1
        return Retry(choice, delay)

    def _fall_back(self, cls: ErrorClass, retryable: bool) -> Retry | None:
        # Whether this failure may fall back at all is decided per failure; the
        # list itself is fixed by the first failure that falls back, and is
        # walked in order, never nested (a fallback's own rules are not used).
        targets = fallback_targets(self._sel.settings, self._names, cls, retryable)
        if not targets:
            return None
        if self._targets is None:
            self._targets = list(targets)
        while self._targets and self.fallbacks < self._sel.settings.max_fallbacks:
            target = self._targets.pop(0)
            group = self._table.resolve(target)
            if target in self._visited or group is None:
                continue
            self._visited.add(target)
            choice = self._sel.choose(group, (), stream=self._stream, tokens=self._tokens)
            if not isinstance(choice, Deployment):
                continue
            self._group, self._tried, self._group_retries = group, set(), 0
            self.fallbacks += 1
            return Retry(choice, 0.0, is_fallback=True)
        return None
