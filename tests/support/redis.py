"""A real ``redis-server`` on a free port of 127.0.0.1, owned by one test.

Started with ``--save '' --appendonly no`` (nothing touches the disk), waited
for by its "Ready to accept connections" line, and stopped by its PID; the
fault tests kill, pause and restart it the same way. Without the binary the
tests are skipped, except in CI (``CI=true``), where that is a failure:
``.ci/run`` installs Debian's ``redis-server`` package first.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

__all__ = ["RedisServer", "redis_server_binary", "running_redis"]

_READY = b"Ready to accept connections"
_START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the shared-state tests")
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, binary: str, *args: str) -> None:
        self.binary = binary
        self.args = args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start on ``self.port`` (a free one the first time); returns once it accepts."""
        for _ in range(5):  # a free port can be taken between the check and the bind
            port = self.port or _free_port()
            process = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    *self.args,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            if self._ready(process):
                self.port, self.process = port, process
                return
            self._end(process)
        raise RuntimeError("redis-server did not start")

    @staticmethod
    def _ready(process: subprocess.Popen[bytes]) -> bool:
        assert process.stdout is not None
        seen = b""
        deadline = time.monotonic() + _START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while _READY not in seen:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return False
                data = os.read(process.stdout.fileno(), 65536)
                if not data:
                    return False
                seen += data
        return True

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        if self.process is not None:
            self._end(self.process)
        self.process = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Kill and start again on the same port: every key is gone, as after a crash."""
        self.kill()
        self.start()

    def cli(self, *command: str, password: str | None = None, db: int = 0) -> Any:
        """One command over a raw socket (after AUTH and SELECT when given); its decoded reply."""
        commands: list[tuple[str, ...]] = []
        if password is not None:
            commands.append(("AUTH", password))
        if db:
            commands.append(("SELECT", str(db)))
        commands.append(command)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            for parts in commands:
                encoded = "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts)
                sock.sendall(f"*{len(parts)}\r\n{encoded}".encode())
            reader = sock.makefile("rb")
            replies = [_reply(reader) for _ in commands]
        return replies[-1]


def _reply(reader: Any) -> Any:
    """One RESP2 reply: enough of the protocol for test assertions."""
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if rest == "-1" else reader.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return [_reply(reader) for _ in range(int(rest))]
    raise ValueError(f"unexpected reply {line!r}")


@contextmanager
def running_redis(*args: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_binary(), *args)
    server.start()
    try:
        yield server
    finally:
        server.kill()  # SIGKILL ends a paused process too
