"""Background health checks (LiteLLM's ``general_settings.background_health_checks``).

Every ``health_check_interval`` seconds (and at once after a reload), each
deployment of the current config gets one cheap probe (:mod:`.probe`), at
most ``_PARALLEL`` at a time, each under its own deadline: the deployment's
connect deadline for the connection, and ``_DEADLINE`` seconds (LiteLLM's
``HEALTH_CHECK_TIMEOUT_SECONDS``) or its total deadline, if shorter, for the
whole check. The probes use the generation's own pools, held like a request
holds them, so a reload mid-round closes nothing under them. Outcomes go to
the router (:meth:`feathergate.router.Router.health_checked`) and to
:class:`CheckResults`, which ``/health`` shows.
"""

from __future__ import annotations

import logging
import time

import trio

from feathergate.config import Deployment
from feathergate.errors import GatewayError, UpstreamStatusError, UpstreamTimeout
from feathergate.generation import Generation, Runtime
from feathergate.health.probe import describe_status, probe_for
from feathergate.health.results import CheckResult, CheckResults
from feathergate.router.groups import usable

__all__ = ["check_deployment", "check_round", "run_checks"]

log = logging.getLogger("feathergate.health")

_PARALLEL = 8
_DEADLINE = 60.0


async def check_deployment(gen: Generation, dep: Deployment) -> GatewayError | None:
    """Probe ``dep`` once; the failure as the relay would have seen it, or ``None``."""
    probe = probe_for(dep)
    if probe is None:
        return None
    deadline = min(_DEADLINE, dep.deadlines.total or _DEADLINE)
    connect = min(deadline, dep.deadlines.connect or deadline)
    try:
        with trio.fail_after(deadline):
            response = await gen.pool.transport(dep).send(
                "GET", probe.url, probe.headers, b"", connect_timeout=connect
            )
            status = response.status
            response.close()  # the listing itself is not needed: the connection is dropped
    except trio.TooSlowError:
        return UpstreamTimeout("total", deadline)
    except GatewayError as err:
        return err
    if status >= 400:
        return UpstreamStatusError(status, describe_status(status), type="health_check")
    return None


def _words(err: GatewayError) -> str:
    if isinstance(err, UpstreamStatusError):
        return describe_status(err.http_status)
    return str(err)  # our own messages: connect failures, deadlines, never a key


async def _check_one(
    gen: Generation, dep: Deployment, results: CheckResults, limit: trio.CapacityLimiter
) -> None:
    async with limit:
        if not usable(dep):
            return  # /health reports these from the config; nothing to call
        err = await check_deployment(gen, dep)
    gen.router.health_checked(dep, err)
    words = None if err is None else _words(err)
    results.record(dep.id, CheckResult(err is None, time.time(), words))
    if words is not None:
        log.warning("health check of %s (%s) failed: %s", dep.model_name, dep.id, words)


async def check_round(runtime: Runtime, results: CheckResults) -> None:
    gen = runtime.current
    gen.enter()
    try:
        limit = trio.CapacityLimiter(_PARALLEL)
        async with trio.open_nursery() as nursery:
            for dep in gen.config.deployments:
                nursery.start_soon(_check_one, gen, dep, results, limit)
    finally:
        gen.leave()
    results.retain({dep.id for dep in gen.config.deployments})
    results.finish_round(time.time())


async def run_checks(runtime: Runtime) -> None:
    """Check in rounds while ``background_health_checks`` is on; a reload starts a round."""
    results = runtime.checks
    while True:
        reloaded = runtime.reloaded
        server = runtime.config.server
        if server.background_health_checks:
            await check_round(runtime, results)
            with trio.move_on_after(server.health_check_interval):
                await reloaded.wait()
        else:
            await reloaded.wait()
