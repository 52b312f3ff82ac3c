"""``GET /health``: whether each model can be served now, and why not. Pure.

A deployment is *unhealthy* when the config leaves it nothing to call with
(unsupported provider, unset key variable), while the router cools it down,
or when its last background check failed. A model is served while one of
its deployments is healthy. The gateway is ``healthy`` when every model is,
``unhealthy`` when none is, ``degraded`` in between. The endpoint lists
follow LiteLLM's ``healthy_endpoints`` / ``unhealthy_endpoints``; no entry
holds a key or an API base.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from feathergate.config import Config, Deployment
from feathergate.health.results import CheckResult, CheckResults
from feathergate.router import DeploymentStatus

__all__ = ["health_report"]


def _when(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _problem(
    dep: Deployment, status: DeploymentStatus | None, check: CheckResult | None
) -> str | None:
    if dep.unavailable:
        return dep.unavailable
    if dep.missing_var and dep.mock_response is None:
        return f"the environment variable {dep.missing_var} is not set on the gateway"
    if check is not None and not check.healthy:
        return check.error or "the last health check failed"
    if status is not None and status["cooldown_remaining"] > 0:
        return (
            f"cooling down for {status['cooldown_remaining']:.0f} s more after "
            f"{status['failures']} recent failure(s)"
        )
    return None


def health_report(
    config: Config,
    snapshot: Mapping[str, DeploymentStatus],
    checks: CheckResults,
    generation: int,
) -> dict[str, Any]:
    healthy: list[dict[str, Any]] = []
    unhealthy: list[dict[str, Any]] = []
    served: dict[str, bool] = {}
    for dep in config.deployments:
        check = checks.get(dep.id)
        problem = _problem(dep, snapshot.get(dep.id), check)
        entry: dict[str, Any] = {
            "model": dep.model_name,
            "deployment": dep.id,
            "provider": dep.provider,
            "upstream_model": dep.model,
            "last_checked": _when(check.checked_at) if check else None,
        }
        if problem is None:
            healthy.append(entry)
        else:
            unhealthy.append({**entry, "error": problem})
        served[dep.model_name] = served.get(dep.model_name, False) or problem is None
    up = sum(served.values())
    status = "healthy" if served and up == len(served) else "unhealthy" if not up else "degraded"
    server = config.server
    return {
        "status": status,
        "models": {name: "healthy" if ok else "unhealthy" for name, ok in sorted(served.items())},
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
        "healthy_count": len(healthy),
        "unhealthy_count": len(unhealthy),
        "background_health_checks": {
            "enabled": server.background_health_checks,
            "interval": server.health_check_interval,
            "last_round": _when(checks.last_round),
        },
        "config_generation": generation,
    }
