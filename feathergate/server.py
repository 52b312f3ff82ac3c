"""Serving: Hypercorn's Trio worker inside our own ``trio.run``, one process per worker.

Serving in-process (instead of through Hypercorn's CLI) keeps one worker to
one process (STACK.md: three processes and ~90 MB otherwise), lets us make
the listening socket (``TCP_USER_TIMEOUT``, so that a client that stops
reading is dropped by the kernel; a ``backlog`` that holds a burst of
connections), and gives shutdown its two stages:

1. the first SIGTERM or SIGINT stops accepting and lets in-flight requests
   and streams finish for ``shutdown_grace_period`` seconds;
2. then, or at a second signal, the relays still running are ended with an
   SSE error event (a 503 where nothing was sent yet), and the process exits 0.

SIGHUP reloads the config (:mod:`feathergate.reload`); with ``--workers N``
the supervisor forwards it to every worker, and each reloads on its own.
Until a worker's receiver is installed SIGHUP is ignored, so an early one
cannot kill it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

import trio
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from feathergate import connection
from feathergate.app import create_app
from feathergate.config import Config
from feathergate.connection import ServerConfig
from feathergate.gateway import Gateway
from feathergate.health.checks import run_checks
from feathergate.observability.logs import setup_logging
from feathergate.reload import Loader, file_loader, watch_reloads

__all__ = [
    "Bind",
    "listen_backlog",
    "make_sockets",
    "parse_bind",
    "per_worker",
    "run",
    "serve",
    "setup_logging",
]

log = logging.getLogger("feathergate")


connection.install()  # Hypercorn's connections, fixed: see feathergate.connection


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bind(value: str) -> Bind:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return Bind(host.strip("[]") or "0.0.0.0", int(port))


SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def listen_backlog(requested: int, somaxconn: Path = SOMAXCONN) -> int:
    """``requested``, or the kernel's cap when that is lower (logged: the kernel would not say)."""
    try:
        cap = int(somaxconn.read_text())
    except (OSError, ValueError):
        return requested  # not Linux, or no /proc: the kernel caps it silently, if at all
    if requested > cap:
        log.warning(
            "listen backlog %d is capped at %d by the kernel (net.core.somaxconn); "
            "raise that sysctl to queue more connections",
            requested,
            cap,
        )
        return cap
    return requested


def make_sockets(bind: Bind, config: Config) -> Sockets:
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    timeout = config.server.tcp_user_timeout
    if timeout and hasattr(socket, "TCP_USER_TIMEOUT"):
        # Accepted sockets inherit it: unacknowledged data older than this
        # drops the connection, which frees a relay stuck on a client that
        # stopped reading (Hypercorn's writes are shielded and never time out).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))
    sock.bind((bind.host, bind.port))
    # A burst of clients waits here for the worker to accept; SYNs beyond it are
    # dropped and retried after a second by the client's kernel.
    sock.listen(listen_backlog(config.server.backlog))
    sock.setblocking(False)
    sock.set_inheritable(True)
    return Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])


def hypercorn_config(config: Config) -> ServerConfig:
    hconfig = ServerConfig()
    hconfig.accesslog = None  # feathergate.access replaces it
    hconfig.errorlog = logging.getLogger("hypercorn.error")  # through our handler, as JSON too
    hconfig.keep_alive_timeout = config.server.keep_alive_timeout
    hconfig.header_timeout = config.server.header_timeout
    hconfig.max_requests = None
    hconfig.h11_max_incomplete_size = 64 * 1024
    hconfig.include_server_header = False
    # Our own grace period runs first and ends every relay; Hypercorn's only
    # has to outlast it by the time a final SSE event takes to flush.
    hconfig.graceful_timeout = config.server.shutdown_grace_period + 5.0
    return hconfig


async def serve(
    config: Config,
    sockets: Sockets,
    *,
    app: Gateway | None = None,
    shutdown_trigger: Any = None,
    loader: Loader | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until a signal (or ``shutdown_trigger`` returns), then drain and return.

    SIGHUP reloads with ``loader``, by default the file ``config`` was read from.
    """
    if app is None:
        app = create_app(config)
    runtime = app.runtime
    hconfig = hypercorn_config(config)
    stop = trio.Event()

    async def stages() -> None:
        signals = (signal.SIGTERM, signal.SIGINT)
        with trio.open_signal_receiver(*signals) as received:
            async with trio.open_nursery() as nursery:

                async def first_signal() -> None:
                    async for signum in received:
                        log.info("received %s: draining", signal.Signals(signum).name)
                        stop.set()
                        break

                async def trigger() -> None:
                    if shutdown_trigger is not None:
                        await shutdown_trigger()
                        stop.set()

                nursery.start_soon(first_signal)
                nursery.start_soon(trigger)
                await stop.wait()
                nursery.cancel_scope.cancel()
            runtime.draining = True
            grace = config.server.shutdown_grace_period
            with trio.move_on_after(grace):
                async for signum in received:
                    log.info("received %s again: ending streams now", signal.Signals(signum).name)
                    break
            if len(runtime.drain):
                log.info("ending %d relays still in flight", len(runtime.drain))
            runtime.drain.cancel_all()

    wrapped = wrap_app(cast(Any, app), hconfig.wsgi_max_body_size, "asgi")
    async with trio.open_nursery() as nursery:
        if runtime.shared is not None:
            await nursery.start(runtime.shared.run)  # cancelled with the stages, at the end

        async def hypercorn(task_status: trio.TaskStatus[list[str]]) -> None:
            await worker_serve(
                wrapped,
                hconfig,
                sockets=sockets,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
            nursery.cancel_scope.cancel()  # every connection is done: stop the stages

        nursery.start_soon(stages)
        await nursery.start(watch_reloads, runtime, _worker_loader(loader, config))
        nursery.start_soon(run_checks, runtime)
        binds = await nursery.start(hypercorn)
        task_status.started(binds)
    log.info("stopped")


def _worker_loader(loader: Loader | None, config: Config) -> Loader | None:
    """The reload loader, applying the same per-worker split as at startup."""
    base = loader or file_loader(config)
    if base is None or config.workers <= 1:
        return base
    read = base
    return lambda: per_worker(read(), config.workers, quiet=True)


def _worker(config: Config, sockets: Sockets, log_level: str) -> None:
    # Its own process group: a terminal's Ctrl-C reaches only the supervisor,
    # which forwards it once (a second signal would skip the grace period).
    os.setpgrp()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve listens for it
    setup_logging(log_level, config.observability.json_logs)
    try:
        trio.run(partial(serve, config, sockets))
    finally:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def per_worker(config: Config, workers: int, *, quiet: bool = False) -> Config:
    """``config`` as each of ``workers`` processes applies it.

    Without shared state every process counts alone, so each gets ``1/N`` of
    every rpm/tpm limit (at least 1); with it, the processes count together
    and only the fallback split needs ``N`` until Redis has been seen. A
    reload applies it again (``quiet``: the startup warning is not repeated).
    """
    if workers <= 1:
        return config
    config = replace(config, workers=workers)
    if config.shared_state.enabled:
        return replace(config, shared_state=replace(config.shared_state, processes=workers))

    def share(value: int | None) -> int | None:
        return None if value is None else max(1, value // workers)

    deployments = tuple(
        replace(d, rpm=share(d.rpm), tpm=share(d.tpm)) if d.rpm or d.tpm else d
        for d in config.deployments
    )
    if deployments != config.deployments and not quiet:
        log.warning(
            "no shared state (Redis) configured: each of the %d workers enforces 1/%d of every "
            "rpm/tpm limit; configure router_settings.redis_host to share exact limits",
            workers,
            workers,
        )
    return replace(config, deployments=deployments)


# Above this a soft limit is left alone: enough for any one process, and what
# Go's runtime and systemd's default hard limit (524288) stay within.
MAX_OPEN_FILES = 1 << 20
FEW_OPEN_FILES = 4096  # below this, a warning: about 2,000 streams at most


def raise_open_files() -> int:
    """Lift the soft limit on open files to the hard one; returns the limit now in force.

    Each stream holds two sockets (the client's and the upstream's), and the
    soft limit most systems start a process with (1024) would cap a gateway
    at about 500 streams, the rest failing with EMFILE at the accept or the
    connect. Raising the soft limit up to the hard one needs no privilege (Go
    does it for every program; nginx has ``worker_rlimit_nofile``). Workers
    inherit it.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a platform cap below the hard limit (macOS)
            pass
    if soft != resource.RLIM_INFINITY and soft < FEW_OPEN_FILES:
        log.warning(
            "the open-file limit is %d (hard limit %d): about %d concurrent streams at most; "
            "raise it (ulimit -n, systemd's LimitNOFILE)",
            soft,
            hard,
            soft // 2,
        )
    return int(soft)


def run(config: Config, bind: Bind, workers: int = 1, log_level: str = "info") -> None:
    """Serve ``config`` on ``bind`` with ``workers`` processes until signalled."""
    raise_open_files()
    sockets = make_sockets(bind, config)
    port = sockets.insecure_sockets[0].getsockname()[1]  # for port 0, the one the kernel chose
    at = Bind(bind.host, port)
    log.info("FeatherGate listening on http://%s (%d worker%s)", at, workers, "s" * (workers > 1))
    config = per_worker(config, workers)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until serve listens for it
    if workers <= 1:
        trio.run(partial(serve, config, sockets))
        return
    # Every worker writes its metrics to files here and /metrics sums them
    # (prometheus_client's multiprocess mode, chosen at import in each worker).
    metrics_dir = tempfile.mkdtemp(prefix="feathergate-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    ctx = multiprocessing.get_context("spawn")
    processes = [
        ctx.Process(target=_worker, args=(config, sockets, log_level), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)  # every worker reloads
    try:
        for process in processes:
            process.join()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise SystemExit(1)
