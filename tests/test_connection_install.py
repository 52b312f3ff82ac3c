"""``connection.install`` takes effect on the Hypercorn we run, and refuses one that moved on.

What the installed class fixes is tested where it shows: the socket a
departing client leaves (tests/test_cancellation.py, the fd count), the
keep-alive timer, and the close under a cancelled application
(tests/test_keepalive_body.py).
"""

from __future__ import annotations

import types
from typing import Any

import hypercorn.trio.run
import pytest
from hypercorn.trio.tcp_server import TCPServer

import feathergate.server  # noqa: F401 - installs at import
from feathergate.connection import Connection, install


def test_the_server_runs_on_the_fixed_connection_and_installing_again_is_harmless() -> None:
    assert hypercorn.trio.run.TCPServer is Connection
    install()
    assert hypercorn.trio.run.TCPServer is Connection


async def _serves_without_the_global(*args: Any) -> None:
    return None


def _moved(**names: Any) -> types.ModuleType:
    module = types.ModuleType("hypercorn.trio.run")
    for name, value in names.items():
        setattr(module, name, value)
    return module


@pytest.mark.parametrize(
    "module",
    [
        _moved(worker_serve=hypercorn.trio.run.worker_serve),  # TCPServer renamed
        _moved(TCPServer=object, worker_serve=hypercorn.trio.run.worker_serve),  # replaced
        _moved(TCPServer=TCPServer, worker_serve=_serves_without_the_global),  # not looked up
        _moved(TCPServer=TCPServer),  # no worker_serve
    ],
)
def test_a_hypercorn_whose_internals_moved_stops_the_gateway(module: types.ModuleType) -> None:
    with pytest.raises(RuntimeError, match=r"pyproject\.toml pins"):
        install(module)
    assert getattr(module, "TCPServer", None) is not Connection
