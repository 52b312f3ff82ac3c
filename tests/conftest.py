from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from feathergate.config import Config, parse_config
from feathergate.gateway import Gateway
from feathergate.server import Bind, make_sockets, serve
from tests.fakes.openai import FakeOpenAI
from tests.support.servers import serve_asgi


@asynccontextmanager
async def run_gateway(config: Config, app: Gateway | None = None) -> AsyncIterator[str]:
    """Serve ``config`` the way ``feathergate serve`` does, on a free port of 127.0.0.1."""
    sockets = make_sockets(Bind("127.0.0.1", 0), config)
    port = sockets.insecure_sockets[0].getsockname()[1]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, config, sockets, app=app, shutdown_trigger=stop.wait))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop.set()


def gateway_config(models: list[dict[str, Any]], **sections: Any) -> Config:
    raw: dict[str, Any] = {"model_list": models, **sections}
    raw.setdefault("feathergate_settings", {"shutdown_grace_period": 1})
    return parse_config(raw, {})


@pytest.fixture
async def openai_upstream() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with serve_asgi(fake) as url:
        yield fake, url
