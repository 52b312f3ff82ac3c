"""Routing end to end: several fake upstreams at once behind one gateway.

One refuses connections, one answers 429 with Retry-After, one is slow to
its first token, the others are healthy. The pure decisions are tested in
test_router.py; here the relay has to carry them out over real sockets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from feathergate.config import Config, parse_config
from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support.sdk import SDK
from tests.support.servers import serve_asgi

MESSAGES = [{"role": "user", "content": "hi"}]
KEY = "sk-upstream-secret"


async def closed_port() -> int:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deployment(name: str, base: str, dep_id: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {
            "model": "openai/up",
            "api_base": f"{base}/v1",
            "api_key": KEY,
            **params,
        },
        "model_info": {"id": dep_id},
    }


def build(models: list[dict[str, Any]], **router: Any) -> Config:
    return parse_config(
        {
            "model_list": models,
            "router_settings": router,
            "feathergate_settings": {"shutdown_grace_period": 1},
        },
        {},
    )


@asynccontextmanager
async def fakes(count: int) -> AsyncIterator[list[tuple[FakeOpenAI, str]]]:
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(count):
            fake = FakeOpenAI(api_key=KEY)
            out.append((fake, await stack.enter_async_context(serve_asgi(fake))))
        yield out


async def chat(
    http: httpx.AsyncClient, base: str, model: str = "m", **extra: Any
) -> httpx.Response:
    body = {"model": model, "messages": MESSAGES, **extra}
    return await http.post(f"{base}/v1/chat/completions", json=body)


async def test_simple_shuffle_follows_weights() -> None:
    async with fakes(2) as [(a, url_a), (b, url_b)]:
        cfg = build([deployment("m", url_a, "a", weight=3), deployment("m", url_b, "b", weight=1)])
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            served = Counter()
            for _ in range(400):
                response = await chat(http, base)
                assert response.status_code == 200
                served[response.headers["x-feathergate-model-id"]] += 1
    assert served["a"] + served["b"] == 400
    assert 0.65 < served["a"] / 400 < 0.85  # 0.75 expected; generous for 400 draws
    assert (len(a.requests), len(b.requests)) == (served["a"], served["b"])


async def test_refused_connections_fail_over_then_cool_down() -> None:
    port = await closed_port()
    async with fakes(1) as [(healthy, url)]:
        cfg = build(
            [deployment("m", f"http://127.0.0.1:{port}", "down"), deployment("m", url, "up")],
            num_retries=2,
            allowed_fails=1,
            cooldown_time=60,
        )
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            tried_down = 0
            for _ in range(30):
                response = await chat(http, base)
                assert response.status_code == 200
                assert response.headers["x-feathergate-model-id"] == "up"
                tried_down += int(response.headers["x-feathergate-attempted-retries"])
            # Two failures (allowed_fails=1) cool "down" for a minute: it gets no more traffic.
            assert tried_down == 2
            metrics = (await http.get(f"{base}/metrics")).text
    assert (
        'feathergate_deployment_failures_total{deployment="down",model="m",status="502"} 2.0'
        in metrics
    )
    assert len(healthy.requests) == 30


async def test_429_with_retry_after_fails_over_and_is_forwarded_when_alone() -> None:
    async with fakes(2) as [(limited, url_l), (_, url_ok)]:
        limited.default = Reply(status=429, headers={"retry-after": "30"})
        cfg = build(
            [
                deployment("m", url_l, "limited"),
                deployment("m", url_ok, "ok"),
                deployment("solo", url_l, "solo"),
            ],
            num_retries=1,
        )
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            for _ in range(10):
                response = await chat(http, base)
                assert response.status_code == 200
                assert response.headers["x-feathergate-model-id"] == "ok"
            # The 429 cooled "limited" for its Retry-After: one attempt only.
            assert sum(1 for r in limited.requests if r.body["model"] == "up") <= 1
            alone = await chat(http, base, "solo")
            assert alone.status_code == 429
            assert alone.headers["retry-after"] == "30"  # too long to wait here: forwarded


async def test_a_stream_that_misses_its_first_token_fails_over_unnoticed() -> None:
    async with fakes(2) as [(slow, url_s), (fast, url_f)]:
        slow.default = Reply(delay=30)
        cfg = build(
            [
                deployment("m", url_s, "slow", first_token_timeout=0.2, order=1),
                deployment("m", url_f, "fast", order=2),
            ],
            num_retries=1,
        )
        async with run_gateway(cfg) as base:
            sdk = SDK(base)
            chunks = await sdk.stream(model="m", messages=MESSAGES)
            sdk.close()
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello there, friend"
    )
    assert len(slow.requests) == 1
    assert len(fast.requests) == 1


async def test_fallbacks_serve_another_group() -> None:
    port = await closed_port()
    async with fakes(1) as [(backup, url)]:
        cfg = build(
            [
                deployment("primary", f"http://127.0.0.1:{port}", "p"),
                deployment("backup", url, "b"),
            ],
            fallbacks=[{"primary": ["backup"]}],
        )
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            response = await chat(http, base, "primary")
    assert response.status_code == 200
    assert response.headers["x-feathergate-model-id"] == "b"
    assert response.headers["x-feathergate-attempted-fallbacks"] == "1"
    assert response.json()["model"] == "primary"  # the client's alias, whoever served it
    assert backup.requests[0].body["model"] == "up"


async def test_cooldown_ends_and_traffic_returns() -> None:
    async with fakes(2) as [(flaky, url_f), (_, url_s)]:
        flaky.script(Reply(status=500), Reply(status=500))
        cfg = build(
            [deployment("m", url_f, "flaky", order=1), deployment("m", url_s, "steady", order=2)],
            num_retries=1,
            allowed_fails=1,
            cooldown_time=0.3,
        )
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            for _ in range(2):
                assert (await chat(http, base)).headers["x-feathergate-model-id"] == "steady"
            assert (await chat(http, base)).headers["x-feathergate-model-id"] == "steady"
            await trio.sleep(0.4)  # the cooldown runs on the real clock here
            assert (await chat(http, base)).headers["x-feathergate-model-id"] == "flaky"


async def test_rpm_saturation_is_a_429_with_retry_after() -> None:
    async with fakes(1) as [(_, url)]:
        cfg = build([deployment("m", url, "only", rpm=2)])
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            assert (await chat(http, base)).status_code == 200
            assert (await chat(http, base)).status_code == 200
            third = await chat(http, base)
    assert third.status_code == 429
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.json()["error"]["type"] == "rate_limit_error"


async def test_wildcards_route_by_the_requested_model() -> None:
    async with fakes(1) as [(fake, url)]:
        cfg = build(
            [
                {
                    "model_name": "openai/*",
                    "litellm_params": {
                        "model": "openai/*",
                        "api_base": f"{url}/v1",
                        "api_key": KEY,
                    },
                },
                deployment("fixed", url, "fixed"),
            ]
        )
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            response = await chat(http, base, "openai/gpt-special")
            models = (await http.get(f"{base}/v1/models")).json()
    assert response.status_code == 200
    assert response.json()["model"] == "openai/gpt-special"
    assert fake.requests[-1].body["model"] == "gpt-special"
    assert [m["id"] for m in models["data"]] == ["fixed"]


@pytest.mark.parametrize("stream", [False, True])
async def test_non_retryable_errors_are_not_retried(stream: bool) -> None:
    async with fakes(2) as [(bad, url_b), (good, url_g)]:
        bad.default = Reply(
            status=400,
            error={"error": {"message": "bad", "type": "x", "param": None, "code": None}},
        )
        cfg = build(
            [deployment("m", url_b, "bad", order=1), deployment("m", url_g, "good", order=2)],
            num_retries=3,
        )
        async with run_gateway(cfg) as base, httpx.AsyncClient() as http:
            response = await chat(http, base, stream=stream)
    assert response.status_code == 400
    assert response.headers["x-feathergate-attempted-retries"] == "0"
    assert not good.requests
