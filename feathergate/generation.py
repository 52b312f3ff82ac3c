"""What every request shares, and how a reload replaces it without touching running ones.

Design note
-----------
A :class:`Generation` is one config's worth of serving: the config, the
router built from it, the upstream pool view and the secrets to mask. It is
never changed after it is built. Each request takes the current generation
once, at its start, and uses only that one to its end, retries and
fallbacks included; :class:`Runtime` holds the reference to the current one.

A reload (SIGHUP, :mod:`feathergate.server`) parses and validates the new
config exactly as ``feathergate check`` does, off the event loop, and on
success builds the next generation beside the current one and swaps the
reference: one assignment, so a request sees either generation whole, never
a mix. An invalid config changes nothing. The old generation is *retired*:
it counts the requests still using it, and when the last one ends its pool
view is released, which closes the upstream origins no newer config uses
(origins both use keep their connections). The router's per-deployment state
passes to the new router for every deployment id that survives
(:func:`feathergate.router.carried_state`). The drain (shutdown's list of
running relays) belongs to the process, not to a generation.

Virtual keys (:mod:`feathergate.keys`) belong to the process too, like the
shared state they are built with: the key service, its store connection, its
caches, its spend buffer and its budget ledger live as long as the process.
A reload gives it the new config's prices, model groups and master key; its
own settings (``database_url`` and the rest of :class:`KeySettings`) wait
for a restart, and the reload says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from feathergate.catalog import CATALOG
from feathergate.config import Config, Deployment, KeySettings, ServerSettings
from feathergate.health.results import CheckResults
from feathergate.keys.service import KeyService
from feathergate.keys.wiring import build_key_service, reconfigure
from feathergate.lastresort import secrets_of
from feathergate.mock import MockTransport
from feathergate.observability import start_tracing
from feathergate.relay import Drain
from feathergate.router import Router, carried_state
from feathergate.state.base import SharedState
from feathergate.upstream import Origins, Transport, UpstreamPool

if TYPE_CHECKING:
    from feathergate.observability.tracing import Tracing

__all__ = ["RESTART_ONLY", "Generation", "Runtime", "restart_only_changes"]

log = logging.getLogger("feathergate")

# Settings read when the listening socket or Hypercorn is set up: a reload
# cannot change them, and says so when they differ.
RESTART_ONLY = (
    "keep_alive_timeout",
    "header_timeout",
    "tcp_user_timeout",
    "shutdown_grace_period",
)


def route(dep: Deployment) -> str | Transport:
    """Where a deployment's calls go: a local mock, or its API's base URL."""
    if dep.mock_response is not None:
        return MockTransport(dep.mock_response)
    info = CATALOG.get(dep.provider)
    return dep.api_base or (info.default_api_base if info is not None else None) or ""


class Generation:
    """One config's router and upstream pools, shared by the requests that began under it."""

    __slots__ = ("_active", "_retired", "config", "number", "pool", "released", "router", "secrets")

    def __init__(self, number: int, config: Config, router: Router, pool: UpstreamPool) -> None:
        self.number = number
        self.config = config
        self.router = router
        self.pool = pool
        self.secrets = secrets_of(config)  # masked out of every logged traceback
        self._active = 0
        self._retired = False
        self.released = trio.Event()  # set once retired and its last request has ended

    def enter(self) -> None:
        """One more request holds this generation; :meth:`leave` must follow, in ``finally``."""
        self._active += 1

    def leave(self) -> None:
        self._active -= 1
        if self._retired and not self._active:
            self._release()

    def retire(self) -> None:
        """A newer generation took over: release the pools once the last request is done."""
        self._retired = True
        if not self._active:
            self._release()

    def _release(self) -> None:
        self.pool.release()
        self.released.set()
        log.debug("config generation %d released its upstream pools", self.number)

    @property
    def active(self) -> int:
        return self._active


def restart_only_changes(old: ServerSettings, new: ServerSettings) -> list[str]:
    return [n for n in RESTART_ONLY if getattr(old, n) != getattr(new, n)]


class Runtime:
    """The current generation, the process's drain, and the upstream origins all share."""

    def __init__(self, config: Config, tracing: Tracing | None = None) -> None:
        # One tracer for the process: a reload keeps it (OTEL_* settings are the environment's).
        self.tracing = tracing or start_tracing(config)  # None unless tracing is on
        self.drain = Drain()
        self.draining = False
        self.opened = False
        self.origins = Origins()
        self.shared: SharedState | None = None
        if config.shared_state.enabled:
            from feathergate.state.redis import RedisState  # coredis only when configured

            self.shared = RedisState(config.shared_state)
        router = Router(config, store=self.shared)
        # Set up once per process, as the shared state is; see the design note.
        self.key_settings: KeySettings = config.keys
        self.keys: KeyService | None = build_key_service(config, self.shared)
        self.current = Generation(1, config, router, self._pool(config))
        self._retired: list[Generation] = []  # still serving requests begun before a reload
        self.reloaded = trio.Event()  # set (and replaced) after each reload attempt
        self.checks = CheckResults()  # background health checks, shown by /health

    def _pool(self, config: Config) -> UpstreamPool:
        return UpstreamPool(config, route, self.origins)

    # The current generation's parts, for code that reads them between requests.
    @property
    def config(self) -> Config:
        return self.current.config

    @property
    def router(self) -> Router:
        return self.current.router

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every key a running request may hold: the current config's and older ones'."""
        self._retired = [g for g in self._retired if g.active]
        if not self._retired:
            return self.current.secrets
        keys = {s for g in (self.current, *self._retired) for s in g.secrets}
        return tuple(sorted(keys, key=len, reverse=True))

    def swap(self, config: Config) -> Generation:
        """Serve ``config`` from the next request on; running requests keep their generation."""
        old = self.current
        # Shared state (Redis) is set up once per process: its settings wait for a restart.
        router = Router(config, state=carried_state(old.router, config), store=self.shared)
        new = Generation(old.number + 1, config, router, self._pool(config))
        if self.keys is not None:
            reconfigure(self.keys, config)
        self.current = new
        old.retire()
        self._retired = [g for g in (*self._retired, old) if g.active]
        return new

    def reload_finished(self) -> None:
        done, self.reloaded = self.reloaded, trio.Event()
        done.set()

    async def open(self, nursery: trio.Nursery | None = None) -> None:
        if self.keys is not None:
            assert nursery is not None, "virtual keys run background tasks"
            await self.keys.open(nursery)
        self.opened = True

    async def close(self) -> None:
        self.opened = False
        if self.keys is not None:
            await self.keys.close()  # flushes the spend buffer
        self.current.pool.release()
        await self.origins.aclose()
        if self.tracing is not None:
            await self.tracing.aclose()
