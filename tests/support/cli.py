"""The ``feathergate`` command in a subprocess, on a port the kernel chose.

The command binds ``127.0.0.1:0`` and the port is read back from Hypercorn's
``Running on http://127.0.0.1:PORT`` log line: no port is picked ahead and
handed over, so no other process can take it in between.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

__all__ = ["GatewayProcess", "gateway_process", "read_until"]

RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> None:
    while marker not in seen:
        data = await stream.receive_some(4096)
        if not data:
            raise EOFError(f"process output ended before {marker!r}: {bytes(seen)!r}")
        seen += data


@dataclass
class GatewayProcess:
    process: trio.Process
    port: int
    log: bytearray = field(default_factory=bytearray)  # stderr, as far as it was read

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_until(self, marker: bytes) -> None:
        assert self.process.stderr is not None
        await read_until(self.process.stderr, marker, self.log)

    async def read_log(self) -> None:
        """Read the log to its end (the process's exit), so that no write of it blocks."""
        assert self.process.stderr is not None
        while data := await self.process.stderr.receive_some(4096):
            self.log += data


@asynccontextmanager
async def gateway_process(
    *args: str, startup: float = 30.0, env: dict[str, str] | None = None
) -> AsyncIterator[GatewayProcess]:
    """Run ``python -m feathergate ARGS --bind 127.0.0.1:0`` until it listens; kill it at exit.

    Provider keys of the environment are not passed on: tests see the config's
    own view of which keys are missing. ``env`` adds variables.
    """
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}, **(env or {})}
    command = [sys.executable, "-m", "feathergate", *args, "--bind", "127.0.0.1:0"]
    process = await trio.lowlevel.open_process(command, env=env, stderr=subprocess.PIPE)
    assert process.stderr is not None
    log = bytearray()
    try:
        with trio.fail_after(startup):
            await read_until(process.stderr, b" (CTRL + C to quit)", log)
        match = RUNNING.search(log)
        assert match is not None, bytes(log)
        yield GatewayProcess(process, int(match.group(1)), log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
