"""Real processes: two ``feathergate`` instances, and ``--workers 2``, on one Redis.

Each gateway binds port 0 and the test reads the port back from Hypercorn's
"Running on" line. Requests use fresh connections, so the kernel spreads
them over a gateway's workers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.redis import RedisServer, running_redis

RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def write_config(path: Path, rpm: int, redis: RedisServer | None) -> Path:
    text = (
        "model_list:\n"
        "  - model_name: m\n"
        f"    litellm_params: {{model: openai/x, mock_response: hi, rpm: {rpm}}}\n"
        "    model_info: {id: limited}\n"
        # A generous Redis timeout: on a loaded CI machine a slow answer would
        # otherwise switch to local counting, which is not what is tested here.
        "feathergate_settings: {shutdown_grace_period: 1, redis_timeout: 2}\n"
    )
    if redis is not None:
        text += f"router_settings: {{redis_host: 127.0.0.1, redis_port: {redis.port}}}\n"
    path.write_text(text)
    return path


class Gateway:
    """One ``feathergate serve --workers N`` process, bound to a free port."""

    def __init__(self, process: trio.Process, workers: int) -> None:
        self.process = process
        self.workers = workers
        self.log = bytearray()
        self.port = 0

    @classmethod
    async def spawn(cls, config: Path, workers: int = 1) -> Gateway:
        command = [sys.executable, "-m", "feathergate", "serve", "--config", str(config)]
        command += ["--bind", "127.0.0.1:0", "--workers", str(workers)]
        # Only the config says where Redis is, whatever this machine's REDIS_* say.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        return cls(process, workers)

    async def ready(self) -> None:
        """Return once every worker logged that it runs."""
        stream = self.process.stderr
        assert stream is not None
        with trio.fail_after(60):
            while len(RUNNING.findall(bytes(self.log))) < self.workers:
                data = await stream.receive_some(4096)
                if not data:
                    raise EOFError(f"gateway exited: {bytes(self.log).decode(errors='replace')}")
                self.log += data
        match = RUNNING.search(bytes(self.log))
        assert match is not None
        self.port = int(match.group(1))

    async def stop(self) -> None:
        process = self.process
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(15):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.stderr is not None
        while data := await process.stderr.receive_some(4096):
            self.log += data
        await process.stderr.aclose()


@asynccontextmanager
async def gateways(*specs: tuple[Path, int]) -> AsyncIterator[list[Gateway]]:
    """Start every gateway at once (startup is most of these tests' time), stop them all."""
    async with AsyncExitStack() as stack:
        started = []
        for config, workers in specs:
            g = await Gateway.spawn(config, workers)
            stack.push_async_callback(g.stop)
            started.append(g)
        async with trio.open_nursery() as nursery:
            for g in started:
                nursery.start_soon(g.ready)
        yield started


async def spread(ports: list[int], count: int) -> list[httpx.Response]:
    """``count`` requests over ``ports``, each on a fresh connection, 6 at a time."""
    responses: list[httpx.Response] = []
    sent = iter(range(count))

    async def client() -> None:
        for i in sent:
            async with httpx.AsyncClient(timeout=10) as http:
                url = f"http://127.0.0.1:{ports[i % len(ports)]}/v1/chat/completions"
                responses.append(await http.post(url, json=BODY))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(client)
    return responses


def assert_limited(responses: list[httpx.Response], limit: int) -> None:
    admitted = sum(r.status_code == 200 for r in responses)
    assert limit * 0.9 <= admitted <= limit
    for r in responses:
        if r.status_code != 200:
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1


async def test_instances_and_workers_share_one_rpm_limit(
    redis: RedisServer, tmp_path: Path
) -> None:
    # Three processes: an instance with --workers 2 and one with a single worker.
    config = write_config(tmp_path / "c.yaml", 30, redis)
    async with gateways((config, 2), (config, 1)) as [a, b]:
        responses = await spread([a.port, b.port], 90)
        members = redis.cli("HLEN", "feathergate:{board}")
    assert_limited(responses, 30)
    assert members == 3  # every process posted on the board
    assert b"shared state: redis://127.0.0.1:" in b.log
    assert b"enforces 1/" not in a.log


async def test_workers_without_redis_split_each_limit_and_say_so_once(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", 30, None)
    async with gateways((config, 2)) as [g]:
        responses = await spread([g.port], 40)
    admitted = sum(r.status_code == 200 for r in responses)
    assert 15 <= admitted <= 30  # 15 per worker; how many each got depends on the kernel
    assert g.log.count(b"each of the 2 workers enforces 1/2 of every rpm/tpm limit") == 1
