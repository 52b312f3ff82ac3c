"""Shared state against a real ``redis-server``: exact limits, cooldowns, and Redis trouble.

Each test owns its server (tests/support/redis.py), so the fault tests kill,
pause and restart it freely. Two gateways in one test process are two
processes to each other (each has its own client, connection pool and board
row); tests/test_shared_state_cli.py runs real separate processes.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from feathergate.app import create_app
from feathergate.config import Config, parse_config
from feathergate.gateway import Gateway
from feathergate.state import Limit
from feathergate.state.redis import RedisState
from feathergate.state.settings import SharedStateSettings
from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support.redis import RedisServer, running_redis
from tests.support.servers import serve_asgi

MESSAGES = [{"role": "user", "content": "hi"}]
KEY = "sk-upstream-secret"
TIMEOUT = 0.25  # the default Redis timeout: the longest any request may wait on Redis
# What a request may take on top of that here: gateway, fake upstream and
# client share one process and one core, and CI machines are slow.
SLACK = 0.75


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def deployment(ident: str, base: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": "m",
        "litellm_params": {
            "model": "openai/up",
            "api_base": f"{base}/v1",
            "api_key": KEY,
            **params,
        },
        "model_info": {"id": ident},
    }


def build(
    redis: RedisServer, models: list[dict[str, Any]], timeout: float = TIMEOUT, **sections: Any
) -> Config:
    router = {"redis_host": "127.0.0.1", "redis_port": redis.port, **sections.pop("router", {})}
    return parse_config(
        {
            "model_list": models,
            "router_settings": router,
            "feathergate_settings": {"shutdown_grace_period": 1, "redis_timeout": timeout},
            **sections,
        },
        {},
    )


@asynccontextmanager
async def gateways(config: Config, count: int) -> AsyncIterator[list[tuple[str, Gateway]]]:
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            app = create_app(config)
            out.append((await stack.enter_async_context(run_gateway(config, app)), app))
        yield out


@asynccontextmanager
async def upstream(**reply: Any) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key=KEY)
    fake.default = Reply(**reply)
    async with serve_asgi(fake) as url:
        yield fake, url


async def until(condition: Callable[[], bool], seconds: float) -> float:
    """Wait (polling; the gateways' background tasks are the clock) until ``condition``."""
    started = trio.current_time()
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the state is plain data, no event to wait on
            await trio.sleep(0.005)
    return trio.current_time() - started


def state(app: Gateway) -> RedisState:
    shared = app.runtime.shared
    assert isinstance(shared, RedisState)
    return shared


class Load:
    """``count`` requests from ``concurrency`` clients over ``bases``, round robin."""

    def __init__(self, bases: list[str], count: int, concurrency: int) -> None:
        self.bases = bases
        self.count = count
        self.concurrency = concurrency
        self.results: list[tuple[int, float, httpx.Response]] = []
        self.milestones: dict[int, trio.Event] = {}

    def reached(self, done: int) -> trio.Event:
        return self.milestones.setdefault(done, trio.Event())

    async def run(self) -> None:
        sent = iter(range(self.count))
        async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
            for _ in range(self.concurrency):
                nursery.start_soon(self._client, http, sent)

    async def _client(self, http: httpx.AsyncClient, sent: Iterator[int]) -> None:
        for i in sent:
            started = trio.current_time()
            base = self.bases[i % len(self.bases)]
            response = await http.post(
                f"{base}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
            )
            self.results.append((response.status_code, trio.current_time() - started, response))
            event = self.milestones.get(len(self.results))
            if event is not None:
                event.set()

    @property
    def statuses(self) -> set[int]:
        return {status for status, _, _ in self.results}

    @property
    def slowest(self) -> float:
        return max(seconds for _, seconds, _ in self.results)


# -- exact limits --------------------------------------------------------------------


async def test_rpm_is_exact_across_two_gateways_and_refusals_say_when(redis: RedisServer) -> None:
    async with upstream() as (fake, url):
        # A slow answer on a loaded machine must not switch to local counting here.
        config = build(redis, [deployment("x", url, rpm=30)], timeout=2.0)
        async with gateways(config, 2) as [(a, _), (b, _)]:
            load = Load([a, b], 90, concurrency=6)
            await load.run()
    admitted = [r for status, _, r in load.results if status == 200]
    refused = [r for status, _, r in load.results if status == 429]
    assert len(admitted) == 30 == len(fake.requests)
    assert len(refused) == 60
    for response in refused:
        assert 1 <= int(response.headers["retry-after"]) <= 61
        assert response.json()["error"]["type"] == "rate_limit_error"


async def test_a_full_deployment_hands_requests_to_its_sibling(redis: RedisServer) -> None:
    async with upstream() as (_, url):
        models = [deployment("x", url, rpm=5, order=1), deployment("y", url, order=2)]
        config = build(redis, models, timeout=2.0)
        async with gateways(config, 2) as [(a, _), (b, _)]:
            load = Load([a, b], 20, concurrency=4)
            await load.run()
    served = [r.headers["x-feathergate-model-id"] for _, _, r in load.results]
    assert load.statuses == {200}
    assert served.count("x") == 5
    assert all(r.headers["x-feathergate-attempted-retries"] == "0" for _, _, r in load.results)


async def test_tpm_estimates_settle_to_the_reported_usage(redis: RedisServer) -> None:
    # The estimate is a quarter of the body's bytes (~40 here); the upstream
    # reports 13 tokens, so after settling, later requests see the small number.
    limit = Limit(requests=None, tokens=1000)
    settings = SharedStateSettings(enabled=True, port=redis.port, source="test", timeout=2.0)
    a, b = RedisState(settings), RedisState(settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        grant = await a.acquire("deployment", "x", limit, 400)
        assert (grant.admitted, grant.tokens, grant.shared) == (True, 400, True)
        a.settle(grant, 13)
        for _ in range(100):  # settlements go out with the next board post
            if (await b.acquire("deployment", "x", limit, 0)).tokens == 13:
                break
            await trio.sleep(0.05)
        else:
            pytest.fail("the settlement never reached Redis")
        big = await b.acquire("deployment", "x", limit, 990)
        assert not big.admitted
        assert 59 < big.wait <= 61
        nursery.cancel_scope.cancel()


# -- cooldowns ------------------------------------------------------------------------


async def test_a_cooldown_reaches_the_other_gateway_within_a_second(redis: RedisServer) -> None:
    async with upstream(status=500) as (failing, bad), upstream() as (_, good):
        config = build(
            redis,
            [deployment("x", bad, order=1), deployment("y", good, order=2)],
            router={"allowed_fails": 0, "cooldown_time": 30, "num_retries": 1},
        )
        async with gateways(config, 2) as [(a, _), (_, app_b)], httpx.AsyncClient() as http:
            response = await http.post(
                f"{a}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
            )
            assert response.status_code == 200
            assert response.headers["x-feathergate-model-id"] == "y"
            router_b = app_b.runtime.router
            seconds = await until(lambda: router_b.snapshot()["x"]["cooling_until"] is not None, 1)
            assert seconds < 1.0
            assert router_b.snapshot()["x"]["cooldown_remaining"] > 25
    assert len(failing.requests) == 1  # only a's one try; b never sent x anything


async def test_least_busy_sees_the_other_gateways_requests_in_flight(redis: RedisServer) -> None:
    release = trio.Event()
    async with upstream(before_headers=release) as (fake, url):
        config = build(
            redis,
            [deployment("x", url), deployment("y", url)],
            router={"routing_strategy": "least-busy"},
        )
        async with gateways(config, 2) as [(a, _), (_, app_b)], httpx.AsyncClient() as http:

            async def chat() -> None:
                body = {"model": "m", "messages": MESSAGES}
                assert (await http.post(f"{a}/v1/chat/completions", json=body)).status_code == 200

            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(chat)
                await until(lambda: len(fake.requests) == 2, 5)
                router_b = app_b.runtime.router

                def in_flight() -> int:
                    status = router_b.snapshot()
                    return status["x"]["in_flight"] + status["y"]["in_flight"]

                # Posted every 0.1 s for least-busy: about 0.2 s old at worst.
                assert await until(lambda: in_flight() == 2, 2) < 0.5
                release.set()
            await until(lambda: in_flight() == 0, 2)


async def test_pub_sub_resumes_after_a_redis_restart(redis: RedisServer) -> None:
    settings = SharedStateSettings(enabled=True, port=redis.port, source="test", timeout=2.0)
    a, b = RedisState(settings), RedisState(settings)
    heard: list[Any] = []
    b.subscribe("note", heard.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)

        async def delivered(message: str, seconds: float) -> None:
            # Messages sent while b is not subscribed are lost: send until one arrives.
            with trio.fail_after(seconds):
                while message not in heard:
                    a.publish("note", message)
                    await trio.sleep(0.05)

        await delivered("before", 5)
        redis.restart()
        await delivered("after", 10)  # silence is noticed within 1.5 s, then resubscribed
        nursery.cancel_scope.cancel()


# -- Redis trouble --------------------------------------------------------------------


async def test_redis_killed_under_load(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "feathergate.state")
    async with upstream() as (_, url):
        config = build(redis, [deployment("x", url, rpm=100_000)])
        async with gateways(config, 2) as [(a, app_a), (b, _)]:
            load = Load([a, b], 300, concurrency=8)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await load.reached(100).wait()
                redis.kill()
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{a}/metrics")).text
            assert not state(app_a).up
    assert load.statuses == {200}
    assert load.slowest < TIMEOUT + SLACK, load.slowest
    assert "feathergate_shared_state_up 0.0" in metrics
    assert 'feathergate_shared_state_fallbacks_total{kind="local"}' in metrics
    # One line per transition, not per request. On a loaded machine a call can
    # also time out before the kill and recover; each such outage adds a pair.
    messages = [r.getMessage() for r in caplog.records]
    lost = sum("Redis unreachable" in m for m in messages)
    back = sum("Redis answers again" in m for m in messages)
    assert lost == back + 2 <= 6, messages


async def test_redis_paused_under_load_then_resumed(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "feathergate.state")
    async with upstream() as (_, url):
        config = build(redis, [deployment("x", url, rpm=100_000)])
        async with gateways(config, 1) as [(a, app)]:
            load = Load([a], 300, concurrency=8)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await load.reached(50).wait()
                redis.pause()
                await load.reached(200).wait()
                redis.resume()
            await until(lambda: state(app).up, 5)
    assert load.statuses == {200}
    assert load.slowest < TIMEOUT + SLACK, load.slowest
    messages = [r.getMessage() for r in caplog.records]
    lost = sum("Redis unreachable" in m for m in messages)
    back = sum("Redis answers again" in m for m in messages)
    assert 1 <= lost == back <= 3, messages  # per transition, not per request


async def test_redis_restarted_under_load_keeps_serving_and_shares_again(
    redis: RedisServer,
) -> None:
    async with upstream() as (_, url):
        config = build(redis, [deployment("x", url, rpm=100_000), deployment("y", url, rpm=3)])
        async with gateways(config, 2) as [(a, app_a), (b, app_b)]:
            load = Load([a, b], 200, concurrency=8)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await load.reached(60).wait()
                redis.restart()
            await until(lambda: state(app_a).up and state(app_b).up, 5)
            # Counters were lost with the restart; they are one limit again.
            body = {"model": "m", "messages": MESSAGES}
            async with httpx.AsyncClient() as http:
                served = []
                for i in range(10):
                    r = await http.post(f"{(a, b)[i % 2]}/v1/chat/completions", json=body)
                    served.append(r.headers.get("x-feathergate-model-id"))
    assert load.statuses == {200}
    assert load.slowest < TIMEOUT + SLACK, load.slowest
    assert served.count("y") <= 3


async def test_without_redis_each_process_counts_its_share_of_the_limit(
    redis: RedisServer,
) -> None:
    async with upstream() as (_, url):
        config = build(redis, [deployment("x", url, rpm=10)])
        async with gateways(config, 2) as [(a, app_a), (b, app_b)]:
            await until(lambda: state(app_a).peers == state(app_b).peers == 2, 5)
            redis.kill()
            load = Load([a, b], 40, concurrency=1)
            await load.run()
    by_base = {
        base: [s for s, _, r in load.results if str(r.url).startswith(base)] for base in (a, b)
    }
    assert by_base[a].count(200) == 5  # rpm 10 / 2 live processes
    assert by_base[b].count(200) == 5
    assert load.statuses == {200, 429}


async def test_fail_closed_answers_503_with_retry_after_for_limited_deployments_only(
    redis: RedisServer,
) -> None:
    async with upstream() as (_, url):
        models = [
            deployment("x", url, rpm=100),
            {**deployment("y", url), "model_name": "free"},
        ]
        config = build(redis, models, general_settings={"fail_closed_rate_limit_enforcement": True})
        async with gateways(config, 1) as [(a, app)], httpx.AsyncClient() as http:
            ok = await http.post(
                f"{a}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
            )
            assert ok.status_code == 200
            redis.kill()
            await until(lambda: not state(app).up, 5)
            closed = await http.post(
                f"{a}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
            )
            free = await http.post(
                f"{a}/v1/chat/completions", json={"model": "free", "messages": MESSAGES}
            )
    assert closed.status_code == 503
    assert closed.headers["retry-after"] == "1"
    assert closed.json()["error"]["code"] == "rate_limit_state_unavailable"
    assert free.status_code == 200


async def test_a_gateway_starts_and_serves_while_redis_is_down(redis: RedisServer) -> None:
    redis.kill()
    async with upstream() as (_, url):
        config = build(redis, [deployment("x", url, rpm=2)])
        async with gateways(config, 1) as [(a, app)], httpx.AsyncClient() as http:
            started = trio.current_time()
            codes = [
                (
                    await http.post(
                        f"{a}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
                    )
                ).status_code
                for _ in range(3)
            ]
            assert trio.current_time() - started < 3 * (TIMEOUT + SLACK)
            assert not state(app).up
    assert codes == [200, 200, 429]


# -- deployments: cluster, TLS with a password and a database ----------------------------


async def test_redis_cluster_shares_limits_board_and_broadcast(tmp_path: Path) -> None:
    # A one-node cluster still refuses a script whose keys span slots (CROSSSLOT),
    # so this checks the hash tags for real, not just their names.
    with running_redis(
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir", str(tmp_path)
    ) as node:
        assert node.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383") == "OK"
        await until(lambda: "cluster_state:ok" in node.cli("CLUSTER", "INFO"), 10)
        config = parse_config(
            {
                "model_list": [],
                "litellm_settings": {
                    "cache": True,
                    "cache_params": {
                        "type": "redis",
                        "redis_startup_nodes": [{"host": "127.0.0.1", "port": node.port}],
                    },
                },
            },
            {},
        )
        settings = replace(config.shared_state, timeout=2.0)  # no fallback on a slow answer
        assert settings.cluster
        a, b = RedisState(settings), RedisState(settings)
        heard: list[Any] = []
        b.subscribe("note", heard.append)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            limit = Limit(requests=3, tokens=None)
            grants = [await (a, b)[i % 2].acquire("deployment", "x", limit, 5) for i in range(5)]
            assert [g.admitted for g in grants] == [True, True, True, False, False]
            assert all(g.shared for g in grants)
            await until(lambda: a.peers == b.peers == 2, 5)
            with trio.fail_after(5):
                while not heard:
                    a.publish("note", "hello")
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()


def _certificate(directory: Path) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_tls_with_a_password_and_a_database_number(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    tls_port = _free_port()
    password = "pw-" + "x" * 12
    with running_redis(
        "--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
        "--tls-ca-cert-file", cert, "--tls-auth-clients", "no", "--requirepass", password,
    ) as server:  # fmt: skip
        async with upstream() as (fake, url):
            config = parse_config(
                {
                    "model_list": [deployment("x", url, rpm=4)],
                    "router_settings": {
                        "redis_url": f"rediss://:{password}@127.0.0.1:{tls_port}/2",
                        "cache_kwargs": {"ssl_ca_certs": cert},
                    },
                    "feathergate_settings": {"shutdown_grace_period": 1, "redis_timeout": 2},
                },
                {},
            )
            async with gateways(config, 2) as [(a, app_a), (b, _)]:
                load = Load([a, b], 10, concurrency=2)
                await load.run()
                assert state(app_a).up
            keys = server.cli("KEYS", "*", password=password, db=2)
    assert [status for status, _, _ in load.results].count(200) == 4 == len(fake.requests)
    assert "feathergate:{limit:deployment:x}" in keys


async def test_a_wrong_password_is_reported_once_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "feathergate.state")
    wrong = "not-the-password-123"
    with running_redis("--requirepass", "the-password") as server:
        async with upstream() as (_, url):
            config = build(server, [deployment("x", url, rpm=1)], router={"redis_password": wrong})
            async with gateways(config, 1) as [(a, app)], httpx.AsyncClient() as http:
                body = {"model": "m", "messages": MESSAGES}
                codes = [
                    (await http.post(f"{a}/v1/chat/completions", json=body)).status_code
                    for _ in range(2)
                ]
                assert not state(app).up
    assert codes == [200, 429]  # counted locally meanwhile
    messages = [r.getMessage() for r in caplog.records]
    startup = [m for m in messages if "unreachable at startup" in m]
    assert len(startup) == 1
    assert "WRONGPASS" in startup[0] or "Authentication" in startup[0]
    assert not any(wrong in m for m in messages)
