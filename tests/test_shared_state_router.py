"""The sharing rules without Redis: counters, breaker, key names, and routers on one hub.

Two :class:`Router` objects on one :class:`MemoryHub` are two gateway
processes on one Redis; :meth:`MemoryHub.post` is one tick of the board. A
fake clock drives everything, so each rule is exact here; the Redis backend
runs the same rules in tests/test_shared_state_redis.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from feathergate.config import Config, parse_config
from feathergate.errors import RateLimited, UpstreamStatusError
from feathergate.router import GiveUp, Retry, Router
from feathergate.state import Limit, MemoryHub, MemoryState
from feathergate.state.breaker import Breaker
from feathergate.state.keys import Keys, hash_tag
from feathergate.state.window import Windows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(*models: dict[str, Any], **router: Any) -> Config:
    return parse_config({"model_list": list(models), "router_settings": router}, {})


def dep(ident: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": "m",
        "litellm_params": {"model": "openai/x", "api_key": "k", **params},
        "model_info": {"id": ident},
    }


def fleet(cfg: Config, clock: Clock, n: int = 2) -> tuple[MemoryHub, list[Router]]:
    hub = MemoryHub(clock)
    routers = [
        Router(cfg, clock=clock, rng=random.Random(i), store=MemoryState(hub=hub)) for i in range(n)
    ]
    return hub, routers


def by_id(router: Router, ident: str) -> Any:
    return next(d for d in router.config.deployments if d.id == ident)


# -- counters ----------------------------------------------------------------------


def test_window_admits_exactly_the_limit_and_says_when_a_slot_frees() -> None:
    clock = Clock()
    windows = Windows(clock)
    limit = Limit(requests=3, tokens=None)
    assert [windows.acquire("k", limit, 0).admitted for _ in range(3)] == [True] * 3
    clock.now += 0.5  # the three are in bucket 1000 (1 s buckets for a 60 s window)
    refused = windows.acquire("k", limit, 0)
    assert not refused.admitted
    assert refused.requests == 3
    assert refused.wait == pytest.approx(60.5)  # bucket 1000 counts until 1061
    clock.now += 60.4
    assert not windows.acquire("k", limit, 0).admitted
    clock.now += 0.1
    assert windows.acquire("k", limit, 0).admitted


def test_tokens_reserve_an_estimate_then_settle_the_real_amount() -> None:
    clock = Clock()
    windows = Windows(clock)
    limit = Limit(requests=None, tokens=100)
    grant = windows.acquire("k", limit, 80)
    assert (grant.admitted, grant.tokens) == (True, 80)
    assert not windows.acquire("k", limit, 30).admitted  # 80 + 30 > 100
    clock.now += 5
    windows.settle(grant, 20)  # the estimate leaves its bucket; 20 count now
    later = windows.acquire("k", limit, 30)
    assert (later.admitted, later.tokens) == (True, 50)
    # A request larger than the whole limit passes on an empty window only.
    fresh = Windows(clock)
    assert fresh.acquire("k", limit, 500).admitted
    assert not fresh.acquire("k", limit, 500).admitted


def test_a_split_limit_is_a_share_of_at_least_one() -> None:
    assert Limit(30, 1000).split(4) == Limit(7, 250)
    assert Limit(1, None).split(4) == Limit(1, None)
    assert Limit(30, None).split(1) == Limit(30, None)


def test_breaker_opens_after_three_failures_and_the_first_success_closes_it() -> None:
    breaker = Breaker()
    assert not breaker.closed
    assert not breaker.failure()  # never connected: nothing to open
    assert breaker.success()
    assert not breaker.failure()
    assert not breaker.failure()
    assert breaker.failure()
    assert not breaker.closed
    assert not breaker.failure()  # one transition, one log line
    assert breaker.success()
    assert breaker.closed


def test_every_key_of_one_limit_has_one_hash_tag_and_ids_cannot_break_it() -> None:
    keys = Keys("fg")
    limit = keys.limit("deployment", "gpt-4o-eu")
    assert limit == "fg:{limit:deployment:gpt-4o-eu}"
    assert hash_tag(limit) == "limit:deployment:gpt-4o-eu"
    assert hash_tag(keys.board()) == "board"
    hostile = keys.limit("deployment", "a}b{c")
    assert hash_tag(hostile) == "limit:deployment:a%7Db%7Bc"
    assert hash_tag(keys.limit("deployment", "a}")) != hash_tag(keys.limit("deployment", "a"))
    assert hash_tag("plain") == "plain"
    assert hash_tag("x{}y") == "x{}y"  # an empty tag is no tag
    assert keys.channel() == "fg:events"


# -- routers on one hub --------------------------------------------------------------


async def test_rpm_is_one_limit_for_all_processes() -> None:
    clock = Clock()
    _, (a, b) = fleet(config(dep("x", rpm=3)), clock)
    admitted = refused = 0
    waits: list[float | None] = []
    for i in range(8):
        plan = (a, b)[i % 2].plan("m", stream=False, prompt_tokens=0)
        try:
            d = plan.next()
        except RateLimited as err:  # this process already heard "full": no need to ask
            waits.append(err.retry_after)
            continue
        decision = await plan.admit(d)
        if decision is None:
            plan.started(d)
            plan.succeeded(d, latency=0.1)
            admitted += 1
        else:
            assert isinstance(decision, GiveUp)
            assert isinstance(decision.err, RateLimited)
            assert decision.err.retry_after == pytest.approx(61.0)
            refused += 1
    assert (admitted, refused) == (3, 2)  # each process asked once more, then knew
    assert waits == [pytest.approx(61.0)] * 3


async def test_a_refused_deployment_hands_over_to_a_sibling_without_spending_a_retry() -> None:
    clock = Clock()
    _, (a, b) = fleet(config(dep("x", rpm=1), dep("y", weight=0.001)), clock)
    x = by_id(a, "x")
    first = b.plan("m", stream=False, prompt_tokens=0)
    assert await first.admit(x) is None
    plan = a.plan("m", stream=False, prompt_tokens=0)
    decision = await plan.admit(x)
    assert isinstance(decision, Retry)
    assert (decision.dep.id, decision.delay, plan.retries) == ("y", 0.0, 0)
    assert await plan.admit(decision.dep) is None  # y has no limit: nothing is asked
    # a now skips x until the window frees it, without asking again.
    assert {a.plan("m", stream=False, prompt_tokens=0).next().id for _ in range(20)} == {"y"}


async def test_tokens_settle_through_the_store() -> None:
    clock = Clock()
    _, (a, b) = fleet(config(dep("x", tpm=100)), clock)
    x = by_id(a, "x")
    plan = a.plan("m", stream=False, prompt_tokens=90)
    assert await plan.admit(x) is None
    plan.started(x)
    plan.succeeded(x, latency=0.1, tokens=10)
    other = b.plan("m", stream=False, prompt_tokens=80)
    assert await other.admit(x) is None  # 10 + 80 fit; 90 + 80 would not have


async def test_a_cooldown_reaches_the_others_at_once() -> None:
    clock = Clock()
    _, (a, b) = fleet(config(dep("x"), dep("y"), allowed_fails=0, cooldown_time=30), clock)
    plan = a.plan("m", stream=False, prompt_tokens=0)
    x = by_id(a, "x")
    plan.started(x)
    plan.failed(x, UpstreamStatusError(500, "boom", type="api_error"))
    status = b.snapshot()["x"]
    assert status["cooldown_remaining"] == pytest.approx(30.0)
    assert {b.plan("m", stream=False, prompt_tokens=0).next().id for _ in range(20)} == {"y"}


async def test_a_cooldown_heard_from_a_peer_is_not_echoed_back_longer() -> None:
    # Rows are a little old when read; were they to repeat what peers said,
    # each hop would add that age and the cooldown would never end.
    clock = Clock()
    hub, (a, b) = fleet(config(dep("x"), dep("y"), allowed_fails=0, cooldown_time=5), clock)
    plan = a.plan("m", stream=False, prompt_tokens=0)
    x = by_id(a, "x")
    plan.started(x)
    plan.failed(x, UpstreamStatusError(500, "boom", type="api_error"))
    for _ in range(40):  # 10 s of board ticks, each row read 0.2 s after it was written
        rows = [member.rows() for member in hub.members]
        clock.now += 0.2
        for i, member in enumerate(hub.members):
            member.merge([row for j, row in enumerate(rows) if j != i])
        clock.now += 0.05
    assert a.snapshot()["x"]["cooling_until"] is None
    assert b.snapshot()["x"]["cooling_until"] is None


async def test_failures_count_across_processes_through_the_board() -> None:
    clock = Clock()
    hub, (a, b) = fleet(config(dep("x"), dep("y"), allowed_fails=1, cooldown_time=30), clock)
    for router in (a, b):
        plan = router.plan("m", stream=False, prompt_tokens=0)
        x = by_id(router, "x")
        plan.started(x)
        plan.failed(x, UpstreamStatusError(503, "busy", type="api_error"))
        hub.post()
    # One failure each: alone, neither would be over allowed_fails=1.
    assert a.snapshot()["x"]["cooldown_remaining"] == pytest.approx(30.0)
    assert b.snapshot()["x"]["failures"] == 2


async def test_least_busy_sees_the_peers_in_flight_requests() -> None:
    clock = Clock()
    hub, (a, b) = fleet(config(dep("x"), dep("y"), routing_strategy="least-busy"), clock)
    x = by_id(a, "x")
    for _ in range(2):
        a.plan("m", stream=False, prompt_tokens=0).started(x)
    assert {b.plan("m", stream=False, prompt_tokens=0).next().id for _ in range(40)} == {"x", "y"}
    hub.post()
    assert {b.plan("m", stream=False, prompt_tokens=0).next().id for _ in range(40)} == {"y"}
    assert b.snapshot()["x"]["in_flight"] == 2


async def test_latency_samples_are_shared_for_latency_based_routing() -> None:
    clock = Clock()
    cfg = config(dep("x"), dep("y"), routing_strategy="latency-based-routing")
    hub, (a, b) = fleet(cfg, clock)
    for ident, latency in (("x", 2.0), ("y", 0.2)):
        plan = a.plan("m", stream=False, prompt_tokens=0)
        d = by_id(a, ident)
        plan.started(d)
        plan.succeeded(d, latency=latency)
    hub.post()
    assert {b.plan("m", stream=False, prompt_tokens=0).next().id for _ in range(20)} == {"y"}


async def test_rows_of_another_version_are_ignored_not_fatal() -> None:
    clock = Clock()
    hub, (a,) = fleet(config(dep("x")), clock, n=1)
    store = MemoryState(hub=hub)
    store.share("router", lambda: {"busy": {"x": "many"}, "cool": {"x": "soon"}, "x": 1}, print)
    hub.post()
    assert a.snapshot()["x"]["in_flight"] == 0
    assert a.snapshot()["x"]["cooldown_remaining"] == 0.0
    store.publish("cooldown", {"id": 5})
    store.publish("cooldown", "garbage")
    assert a.snapshot()["x"]["cooldown_remaining"] == 0.0
