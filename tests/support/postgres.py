"""A throwaway PostgreSQL server for the key-store tests: one per test session.

Debian's binaries (``/usr/lib/postgresql/<v>/bin``), a temporary data directory,
``fsync=off``, a free port on 127.0.0.1; as root the server runs as the
``postgres`` user. Each test gets its own database. Where PostgreSQL cannot be
started the tests skip, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

__all__ = ["PostgresServer", "postgres_server"]


@dataclass
class PostgresServer:
    bin: str
    data: str
    port: int
    user: str

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def _ctl(self, *args: str) -> None:
        command = [f"{self.bin}/pg_ctl", "-D", self.data, "-w", "-t", "30", *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c unix_socket_directories={self.data} -c full_page_writes=off"
        )
        self._ctl("-o", options, "-l", f"{self.data}/log", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _unavailable("no PostgreSQL binaries in /usr/lib/postgresql (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed")
    bin_dir = os.path.dirname(found[-1])
    root = os.geteuid() == 0
    data = tempfile.mkdtemp(prefix="fg-pg-")
    user = "postgres" if root else os.environ.get("USER", "postgres")
    if root:
        shutil.chown(data, "postgres", "postgres")
    init = [f"{bin_dir}/initdb", "-D", data, "-U", user, "-A", "trust", "--no-sync"]
    if root:
        init = ["runuser", "-u", "postgres", "--", *init]
    try:
        subprocess.run(init, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(data, ignore_errors=True)
        _unavailable(f"initdb failed: {exc}")
    server = PostgresServer(bin_dir, data, _free_port(), user)
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(data, ignore_errors=True)
