"""Build the key service from a config: prices per deployment, deployments per model."""

from __future__ import annotations

from feathergate.config import Config
from feathergate.keys.pricing import Price, load_table, price_for
from feathergate.keys.service import KeyService
from feathergate.state.base import SharedState

__all__ = ["build_key_service", "deployment_prices"]


def deployment_prices(config: Config) -> dict[str, Price | None]:
    table = load_table()
    return {d.id: price_for(d.model, d.model_info, table) for d in config.deployments}


def build_key_service(config: Config, shared: SharedState | None = None) -> KeyService | None:
    """The service, or ``None`` when no key store is configured (master key only).

    ``shared`` is the Redis-backed seam when the config enables shared state:
    key and team limits, budgets and cache invalidations then go through it.
    """
    if not config.keys.enabled:
        return None
    groups: dict[str, tuple[str, ...]] = {}
    for dep in config.deployments:
        groups[dep.model_name] = (*groups.get(dep.model_name, ()), dep.id)
    master = config.server.master_key.value if config.server.master_key else None
    return KeyService(config.keys, master, deployment_prices(config), groups, state=shared)
