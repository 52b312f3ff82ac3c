"""SIGHUP: read the config again and serve it from the next request on.

The file is read and validated off the event loop, by the same code as
``feathergate check`` and startup, so a config refused here is refused with
the same key-path message, and the running one stays. What a reload changes
and what it keeps is :mod:`feathergate.generation`'s design note.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from functools import partial

import trio

from feathergate.config import Config, load_config
from feathergate.errors import ConfigError
from feathergate.generation import Runtime, restart_only_changes

__all__ = ["Loader", "file_loader", "reload_once", "watch_reloads"]

log = logging.getLogger("feathergate")

Loader = Callable[[], Config]
"""Reads and validates the config; raises :class:`ConfigError`."""


def file_loader(config: Config) -> Loader | None:
    """Read ``config``'s file again, if it came from one."""
    if config.source == "<memory>":
        return None
    return partial(load_config, config.source)


async def reload_once(runtime: Runtime, loader: Loader) -> bool:
    """One reload; ``False`` (and the old config kept) when the new one is invalid."""
    try:
        try:
            config = await trio.to_thread.run_sync(loader)
        except ConfigError as exc:
            log.error("reload refused, still serving the previous config: invalid config: %s", exc)
            return False
        for warning in config.warnings:
            log.warning("%s", warning)
        stale = restart_only_changes(runtime.config.server, config.server)
        if config.shared_state != runtime.config.shared_state:
            stale.append("shared state (Redis)")
        if config.keys != runtime.key_settings:  # never the database_url itself: a password
            stale.append("virtual keys (database_url and the key settings)")
        gen = runtime.swap(config)
        n = len(config.deployments)
        log.info(
            "reloaded %s: %d deployment%s (generation %d)",
            config.source,
            n,
            "s" * (n != 1),
            gen.number,
        )
        if stale:
            log.warning("changed settings take effect at the next restart: %s", ", ".join(stale))
        return True
    finally:
        runtime.reload_finished()


async def watch_reloads(
    runtime: Runtime,
    loader: Loader | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Reload on every SIGHUP until cancelled; signals that arrive during a reload coalesce."""
    with trio.open_signal_receiver(signal.SIGHUP) as received:
        task_status.started()
        async for _ in received:
            if loader is None:
                log.warning("SIGHUP ignored: the config was not read from a file")
                continue
            await reload_once(runtime, loader)
