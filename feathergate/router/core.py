"""The router's front door: a config in, one :class:`AttemptPlan` per request out."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import trio

from feathergate.config import Config
from feathergate.errors import ModelNotFound
from feathergate.router.groups import ModelTable
from feathergate.router.plan import AttemptPlan
from feathergate.router.selection import DeploymentStatus, Selector
from feathergate.router.shared import LEAST_BUSY_EVERY, SharedRouterState
from feathergate.router.state import InMemoryState, RouterState
from feathergate.state.base import DEFAULT_EVERY, SharedState

__all__ = ["Router"]


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
        self._selector = Selector(
            config.router,
            InMemoryState() if state is None else state,
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

    def snapshot(self) -> dict[str, DeploymentStatus]:
        """Per deployment id: in flight, usage this minute, recent failures, cooldown."""
        return {dep.id: self._selector.status(dep) for dep in self.config.deployments}
