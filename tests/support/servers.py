"""Serve an ASGI app under real Hypercorn on 127.0.0.1 for the length of a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

__all__ = ["serve_asgi"]


@asynccontextmanager
async def serve_asgi(app: Any, **settings: Any) -> AsyncIterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) of ``app`` served by Hypercorn."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    for key, value in settings.items():
        setattr(config, key, value)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            yield binds[0]
        finally:
            stop.set()
