"""The router's front door: a config in, one :class:`AttemptPlan` per request out."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import trio

from feathergate.config import Config, Deployment
from feathergate.errors import GatewayError, ModelNotFound
from feathergate.router.groups import ModelTable
from feathergate.router.plan import AttemptPlan
from feathergate.router.selection import DeploymentStatus, Selector
from feathergate.router.shared import LEAST_BUSY_EVERY, SharedRouterState
from feathergate.router.state import InMemoryState, RouterState
from feathergate.state.base import DEFAULT_EVERY, SharedState

__all__ = ["Router", "carried_state"]


class Router:
    """Routes by LiteLLM's ``router_settings``; holds no I/O, only state and a clock.

    ``clock`` is monotonic seconds (``trio.current_time`` by default, so it
    must be called inside ``trio.run``); ``wall_clock`` (``time.time``) is only
    used to read an HTTP-date ``Retry-After``. With a ``store``, rpm/tpm are
    counted there and the state (unless given) is shared through it.
    """

    def __init__(
        self,
        config: Config,
        state: RouterState | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        *,
        wall_clock: Callable[[], float] | None = None,
        store: SharedState | None = None,
    ) -> None:
        self.config = config
        self._table = ModelTable(config.deployments)
        clock = clock or trio.current_time
        if state is None and store is not None:
            strategy = config.router.routing_strategy
            state = SharedRouterState(
                store,
                clock,
                share_samples=strategy == "latency-based-routing",
                every=LEAST_BUSY_EVERY if strategy == "least-busy" else DEFAULT_EVERY,
            )
        self.state: RouterState = InMemoryState() if state is None else state
        self._selector = Selector(
            config.router,
            self.state,
            clock,
            rng or random.Random(),
            wall_clock or time.time,
            store,
        )

    @property
    def model_names(self) -> list[str]:
        """Concrete model names for ``/v1/models``; wildcard patterns are not listed."""
        return self._table.names

    def plan(self, model: str, *, stream: bool, prompt_tokens: int) -> AttemptPlan:
        group = self._table.resolve(model)
        if group is None:
            raise ModelNotFound(model)
        return AttemptPlan(
            self._selector,
            self._table,
            model,
            group,
            stream=stream,
            prompt_tokens=prompt_tokens,
        )

    def health_checked(self, dep: Deployment, err: GatewayError | None) -> None:
        """A background health check's outcome for ``dep``.

        A pass clears the deployment's recent failures (as a served request
        does). A failure counts like a failed request and also cools the
        deployment for ``cooldown_time`` at once: one probe every few minutes
        would never reach ``allowed_fails`` within the minute. The group's last
        healthy deployment is still never cooled.
        """
        if err is None:
            self.state.clear_failures(dep.id)
            return
        group = self._table.resolve(dep.model_name)
        if group is None:
            return
        self._selector.failure(dep, group, err)
        self._selector.cool(dep, group, self.config.router.cooldown_time)

    def snapshot(self) -> dict[str, DeploymentStatus]:
        """Per deployment id: in flight, usage this minute, recent failures, cooldown."""
        return {dep.id: self._selector.status(dep) for dep in self.config.deployments}


def carried_state(old: Router, config: Config) -> RouterState:
    """The state a router for ``config`` starts from when it replaces ``old`` (a reload).

    State is keyed by deployment id, so handing the same state on keeps the
    rpm/tpm windows, latency samples, failures and cooldowns of every
    deployment whose id survives, and the requests still running on ``old``
    keep counting into it. What only removed deployments held is dropped.
    """
    state = old.state
    if isinstance(state, InMemoryState):
        state.retain({dep.id for dep in config.deployments})
    return state
