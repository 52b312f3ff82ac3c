"""Build the key service from a config: prices per deployment, deployments per model."""

from __future__ import annotations

from feathergate.config import Config
from feathergate.keys.pricing import Price, load_table, price_for
from feathergate.keys.service import KeyService
from feathergate.state.base import SharedState

__all__ = ["build_key_service", "deployment_prices", "reconfigure"]


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
    return KeyService(
        config.keys, _master(config), deployment_prices(config), _groups(config), state=shared
    )


def reconfigure(service: KeyService, config: Config) -> None:
    """A reloaded config's deployments and master key; requests still running keep theirs.

    Each mapping is replaced whole, so a request reads either the old one or the new.
    """
    service.prices = deployment_prices(config)
    service.groups = _groups(config)
    service.master_key = _master(config)


def _groups(config: Config) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for dep in config.deployments:
        groups[dep.model_name] = (*groups.get(dep.model_name, ()), dep.id)
    return groups


def _master(config: Config) -> str | None:
    return config.server.master_key.value if config.server.master_key else None
