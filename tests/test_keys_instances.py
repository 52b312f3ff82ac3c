"""Two real ``feathergate`` processes on one PostgreSQL and one Redis (issue #11).

They enforce one budget and one rpm limit together, exactly as one process
would, and a key deleted through one is refused by the other within a second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.postgres import PostgresServer, postgres_server
from tests.support.redis import RedisServer, running_redis
from tests.test_shared_state_cli import gateways

__all__ = ["postgres_server"]

MASTER = "sk-master-key-for-instances"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def write_config(path: Path, redis: RedisServer, database_url: str) -> Path:
    path.write_text(
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {model: openai/x, mock_response: hello there}\n"
        "    model_info: {input_cost_per_token: 0, output_cost_per_token: 0.125}\n"
        f"general_settings: {{master_key: {MASTER}, database_url: '{database_url}'}}\n"
        f"router_settings: {{redis_host: 127.0.0.1, redis_port: {redis.port}}}\n"
        # A generous Redis timeout: on a loaded machine a slow answer would
        # otherwise switch to local counting, which is not what is tested here.
        "feathergate_settings: {shutdown_grace_period: 1, redis_timeout: 2}\n"
    )
    return path


class Instances:
    def __init__(self, http: httpx.AsyncClient, ports: list[int]) -> None:
        self.http = http
        self.bases = [f"http://127.0.0.1:{port}" for port in ports]

    async def new_key(self, **fields: Any) -> str:
        response = await self.http.post(f"{self.bases[0]}/key/generate", json=fields, headers=ADMIN)
        assert response.status_code == 200, response.text
        return str(response.json()["key"])

    async def chat(self, i: int, key: str, **body: Any) -> httpx.Response:
        return await self.http.post(
            f"{self.bases[i % 2]}/v1/chat/completions",
            json={"model": "m", "messages": USER, **body},
            headers={"Authorization": f"Bearer {key}"},
        )

    async def many(self, key: str, count: int, **body: Any) -> list[httpx.Response]:
        """``count`` requests over both instances, six at a time."""
        responses: list[httpx.Response] = []
        sent = iter(range(count))

        async def client() -> None:
            for i in sent:
                responses.append(await self.chat(i, key, **body))

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(client)
        return responses


async def test_two_instances_enforce_one_budget_one_rpm_and_one_delete(
    tmp_path: Path, redis: RedisServer, postgres_server: PostgresServer
) -> None:
    config = write_config(tmp_path / "config.yaml", redis, postgres_server.new_database())
    async with gateways((config, 1), (config, 1)) as started, httpx.AsyncClient(timeout=30) as http:
        gw = Instances(http, [g.port for g in started])
        probe = await gw.new_key()
        first = await gw.chat(0, probe)
        assert first.status_code == 200, first.text
        completion = first.json()["usage"]["completion_tokens"]
        cost = float(first.headers["x-litellm-response-cost"])
        assert cost == completion * 0.125  # a binary fraction: the sums below are exact

        # A worst case equal to the real cost: exactly six calls fit, whoever serves them.
        budget = await gw.new_key(max_budget=6 * cost)
        spent = await gw.many(budget, 20, max_tokens=completion)
        statuses = sorted(r.status_code for r in spent)
        assert statuses == [200] * 6 + [422] * 14, [r.text for r in spent if r.status_code != 200]
        assert {r.json()["error"]["type"] for r in spent if r.status_code == 422} == {
            "budget_exceeded"
        }

        limited = await gw.new_key(rpm_limit=5)
        counted = await gw.many(limited, 12)
        assert sorted(r.status_code for r in counted) == [200] * 5 + [429] * 7

        doomed = await gw.new_key()
        assert (await gw.chat(1, doomed)).status_code == 200  # cached by the second instance
        deleted = await http.post(
            f"{gw.bases[0]}/key/delete", json={"keys": [doomed]}, headers=ADMIN
        )
        assert deleted.status_code == 200, deleted.text
        started_at = time.monotonic()
        status = 200
        with trio.fail_after(5):
            while status == 200:
                status = (await gw.chat(1, doomed)).status_code
                if status == 200:
                    await trio.sleep(0.02)
        assert status == 401
        assert time.monotonic() - started_at < 1.0 + 0.5  # the 1 s promise, with room for CI
