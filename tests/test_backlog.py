"""The listen backlog: ``feathergate_settings.backlog`` / ``--backlog``, capped by the kernel.

Issue #15, part 2: a burst of connections waits in the kernel's accept queue
while the worker is busy; a queue too short drops SYNs, and each dropped
client waits a second for its retry. For a listening socket, ``ss`` shows the
backlog in its Send-Q column; and a queue is as long as the connections
that complete their handshake while nobody accepts them.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from feathergate.config import Config, parse_config
from feathergate.server import SOMAXCONN, Bind, listen_backlog, make_sockets
from tests.support.cli import gateway_process

ROOT = Path(__file__).parent.parent


def config(**settings: int) -> Config:
    demo = {"model_name": "demo", "litellm_params": {"model": "openai/x", "mock_response": "hi"}}
    return parse_config({"model_list": [demo], "feathergate_settings": settings}, {})


def somaxconn() -> int:
    try:
        return int(SOMAXCONN.read_text())
    except OSError:  # pragma: no cover - Linux has it
        pytest.skip("no /proc/sys/net/core/somaxconn on this system")


def ss_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as ``ss`` reports it."""
    if shutil.which("ss") is None:  # pragma: no cover - iproute2 is on every Linux image here
        pytest.skip("the ss command (iproute2) is not installed")
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert len(rows) == 1, out
    state, _recv_q, send_q, *_ = rows[0]
    assert state == "LISTEN"
    return int(send_q)


def test_the_kernel_cap_wins_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = tmp_path / "somaxconn"
    cap.write_text("128\n")
    with caplog.at_level(logging.WARNING, logger="feathergate"):
        assert listen_backlog(2048, cap) == 128
        assert listen_backlog(100, cap) == 100
        assert listen_backlog(300, tmp_path / "missing") == 300
    assert [r.getMessage() for r in caplog.records] == [
        "listen backlog 2048 is capped at 128 by the kernel (net.core.somaxconn); "
        "raise that sysctl to queue more connections"
    ]


@pytest.mark.parametrize("settings", [{}, {"backlog": 300}])
def test_the_listening_socket_has_the_configured_backlog(settings: dict[str, int]) -> None:
    sockets = make_sockets(Bind("127.0.0.1", 0), config(**settings))
    sock = sockets.insecure_sockets[0]
    try:
        expected = min(settings.get("backlog", 2048), somaxconn())
        assert ss_backlog(sock.getsockname()[1]) == expected
    finally:
        sock.close()


async def test_the_default_backlog_holds_a_burst_of_1100_connections_nobody_accepts() -> None:
    """Every handshake completes with the worker not accepting: no SYN was dropped."""
    if somaxconn() < 1100:  # pragma: no cover - Linux >= 5.4 defaults to 4096
        pytest.skip("net.core.somaxconn is below the burst")
    sockets = make_sockets(Bind("127.0.0.1", 0), config())
    listener = sockets.insecure_sockets[0]
    port = listener.getsockname()[1]
    clients: list[trio.socket.SocketType] = []
    try:
        with trio.fail_after(30):  # a dropped SYN would stall its connect for 1 s, then 3 s...
            for _ in range(1100):
                client = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                clients.append(client)
                await client.connect(("127.0.0.1", port))
    finally:
        for client in clients:
            client.close()
        listener.close()


async def test_backlog_on_the_command_line_is_capped_by_the_kernel_with_a_warning() -> None:
    cap = somaxconn()
    args = ("--config", str(ROOT / "feathergate.yaml"), "--backlog", str(cap + 1))
    async with gateway_process(*args) as gateway:
        assert ss_backlog(gateway.port) == cap
        assert f"listen backlog {cap + 1} is capped at {cap}".encode() in gateway.log
