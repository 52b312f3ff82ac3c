"""Which deployment of a group may take a request now, and what each outcome records.

A deployment is *ready* when it is not cooling down and a request of the
caller's estimated size fits its ``rpm`` and ``tpm`` over the sliding minute.
Among ready ones, untried ones come first (failover), then the lowest
``order`` (missing ``order`` ranks after every explicit one), and only then
does the routing strategy choose. When none is ready, the answer is the
number of seconds until the first one will be.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection
from functools import partial
from typing import TypedDict

from feathergate.config import Deployment, RouterSettings
from feathergate.errors import GatewayError
from feathergate.router.classify import classify, retry_after_seconds
from feathergate.router.groups import Group
from feathergate.router.policy import cooldown_for, counts_as_failure
from feathergate.router.state import Load, RouterState, UsageEntry
from feathergate.router.strategies import STRATEGIES, Candidate
from feathergate.state.base import SharedState

__all__ = ["WINDOW", "DeploymentStatus", "Selector", "slot_wait"]

WINDOW = 60.0  # rpm, tpm and allowed_fails are all per minute, sliding
# A refused deployment is skipped at least this long, so that a refusal that
# says "in 0 s" cannot make a request ask again and again.
MIN_REFUSAL = 0.05


class DeploymentStatus(TypedDict):
    model_name: str
    in_flight: int
    requests: int
    tokens: int
    failures: int
    cooling_until: float | None  # on the router's clock
    cooldown_remaining: float


def slot_wait(
    load: Load,
    usage: Callable[[], tuple[UsageEntry, ...]],
    rpm: int | None,
    tpm: int | None,
    tokens: int,
    now: float,
) -> float:
    """Seconds until one more request of ``tokens`` fits ``rpm`` and ``tpm`` (0.0: it fits).

    The window's totals decide; its entries are read only when a limit is hit.
    A request larger than the whole ``tpm`` still goes through on an empty
    window; otherwise it could never be served.
    """
    over_rpm = bool(rpm) and load.requests + 1 > (rpm or 0)
    over_tpm = bool(tpm) and load.tokens > 0 and load.tokens + tokens > (tpm or 0)
    if not (over_rpm or over_tpm):
        return 0.0
    entries = usage()
    wait = 0.0
    if over_rpm:
        excess = load.requests + 1 - (rpm or 0)
        for e in entries:
            if excess <= 0:
                break
            excess -= e.requests
            wait = e.at + WINDOW - now
    if over_tpm:
        used = load.tokens
        for e in entries:
            if used <= 0 or used + tokens <= (tpm or 0):
                break
            used -= e.tokens
            wait = max(wait, e.at + WINDOW - now)
    return max(wait, 0.0)


def _rank(dep: Deployment) -> tuple[int, int]:
    return (0, dep.order) if dep.order is not None else (1, 0)


class Selector:
    def __init__(
        self,
        settings: RouterSettings,
        state: RouterState,
        clock: Callable[[], float],
        rng: random.Random,
        wall_clock: Callable[[], float],
        store: SharedState | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.clock = clock
        self.rng = rng
        self.wall_clock = wall_clock
        self.store = store  # set: rpm/tpm are counted there, across processes
        # Deployments the shared counters refused, until when (on ``clock``).
        self._saturated: dict[str, float] = {}
        # The config checked both at load (feathergate.config.routing).
        self._strategy = STRATEGIES[settings.routing_strategy]
        self._args = settings.routing_strategy_args

    def choose(
        self,
        group: Group,
        tried: Collection[str],
        *,
        stream: bool,
        tokens: int,
        exclude: Collection[str] = (),
    ) -> Deployment | float:
        """A ready deployment, or the seconds until one is ready (``inf``: none ever)."""
        now = self.clock()
        ready: list[tuple[Deployment, Candidate]] = []
        wait = math.inf
        for dep in group.deployments:
            if dep.id in exclude:
                continue
            since = now - WINDOW
            load = self.state.load(dep.id, since)
            cooling = self.state.health(dep.id, since).cooldown_end - now
            if self._saturated:
                cooling = max(cooling, self._saturated.get(dep.id, now) - now)
            usage = partial(self.state.usage, dep.id, since)
            dep_wait = max(cooling, slot_wait(load, usage, dep.rpm, dep.tpm, tokens, now))
            if dep_wait > 0:
                wait = min(wait, dep_wait)
                continue
            kind = "ttft" if stream else "latency"
            samples = self.state.samples(dep.id, kind, now - self._args.ttl)
            ready.append((dep, Candidate(dep, load.in_flight, load.requests, load.tokens, samples)))
        if not ready:
            return wait
        fresh = [pair for pair in ready if pair[0].id not in tried]
        pool = fresh or ready
        top = min(_rank(dep) for dep, _ in pool)
        tier = [candidate for dep, candidate in pool if _rank(dep) == top]
        if len(tier) == 1:
            return tier[0].dep
        return self._strategy(tier, self.rng, self._args)

    def refuse(self, dep: Deployment, wait: float) -> None:
        """The shared counters refused ``dep``: skip it for ``wait`` seconds."""
        now = self.clock()
        self._saturated = {k: v for k, v in self._saturated.items() if v > now}
        self._saturated[dep.id] = now + max(wait, MIN_REFUSAL)

    def start(self, dep: Deployment, tokens: int) -> int:
        return self.state.begin(dep.id, self.clock(), tokens)

    def release(self, dep: Deployment, ticket: int, tokens: int | None) -> None:
        self.state.end(dep.id, ticket, self.clock(), tokens)

    def success(
        self,
        dep: Deployment,
        ticket: int,
        *,
        latency: float,
        ttft: float | None,
        tokens: int | None,
    ) -> None:
        now = self.clock()
        self.state.end(dep.id, ticket, now, tokens)
        self.state.add_sample(dep.id, "latency", latency, now, self._args.max_latency_list_size)
        if ttft is not None:
            self.state.add_sample(dep.id, "ttft", ttft, now, self._args.max_latency_list_size)
        self.state.clear_failures(dep.id)

    def failure(self, dep: Deployment, group: Group, err: GatewayError) -> None:
        """Count ``err`` against ``dep`` and cool it down when the policy says so."""
        cls = classify(err)
        if not counts_as_failure(self.settings, err, cls):
            return
        now = self.clock()
        self.state.add_failure(dep.id, now)
        failures = self.state.health(dep.id, now - WINDOW).failures
        retry_after = retry_after_seconds(err, self.wall_clock())
        self._cool(dep, group, now, cooldown_for(self.settings, cls, failures, retry_after))

    def cool(self, dep: Deployment, group: Group, seconds: float) -> None:
        """Cool ``dep`` down for ``seconds`` now, unless it is the group's last healthy one."""
        self._cool(dep, group, self.clock(), seconds)

    def _cool(self, dep: Deployment, group: Group, now: float, seconds: float) -> None:
        if seconds > 0 and not self._last_healthy(dep, group, now):
            self.state.cool(dep.id, now + seconds)

    def _last_healthy(self, dep: Deployment, group: Group, now: float) -> bool:
        # A group with nothing left answers every request with an error; one
        # struggling deployment is better than none (LiteLLM does the same).
        return not any(
            other.id != dep.id and self.state.health(other.id, now).cooldown_end <= now
            for other in group.deployments
        )

    def status(self, dep: Deployment) -> DeploymentStatus:
        now = self.clock()
        load = self.state.load(dep.id, now - WINDOW)
        health = self.state.health(dep.id, now - WINDOW)
        cooling = health.cooldown_end > now
        return DeploymentStatus(
            model_name=dep.model_name,
            in_flight=load.in_flight,
            requests=load.requests,
            tokens=load.tokens,
            failures=health.failures,
            cooling_until=health.cooldown_end if cooling else None,
            cooldown_remaining=max(0.0, health.cooldown_end - now),
        )
