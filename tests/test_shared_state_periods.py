"""Budget period counters: the rule in memory, and the same rule in one Lua script on Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from feathergate.config import parse_config
from feathergate.state.memory import MemoryState
from feathergate.state.redis import RedisState
from tests.support.redis import RedisServer, running_redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_reserves_within_the_cap_and_settles_the_real_cost() -> None:
    clock = Clock()
    state = MemoryState(clock)
    first = await state.reserve("key", "k", 7, 0.75, 1.0, seed=0.25, ttl=60)
    assert (first.admitted, first.spent, first.reserved, first.amount) == (True, 0.25, 0.75, 0.75)
    full = await state.reserve("key", "k", 7, 0.5, 1.0, seed=0.0, ttl=60)
    assert not full.admitted
    assert full.amount == 0.0
    state.release(first, 0.5)  # the call cost less than its worst case
    shrunk = await state.reserve("key", "k", 7, 0.5, 1.0, seed=0.0, ttl=60)
    assert (shrunk.admitted, shrunk.spent, shrunk.amount) == (True, 0.75, 0.25)
    other = await state.reserve("key", "k", 8, 0.5, 1.0, seed=0.0, ttl=60)
    assert other.spent == 0.0  # the next period is a new counter
    uncapped = await state.reserve("team", "t", 0, 5.0, None, seed=0.0, ttl=60)
    assert uncapped.admitted
    assert uncapped.amount == 5.0
    clock.now += 61
    again = await state.reserve("key", "k", 7, 0.125, 1.0, seed=0.5, ttl=60)
    assert again.spent == 0.5  # unused past its ttl: dropped, seeded again


async def test_two_members_of_one_hub_share_one_counter() -> None:
    a = MemoryState(Clock())
    b = MemoryState(hub=a.hub)
    assert (await a.reserve("key", "k", 1, 0.75, 1.0, seed=0, ttl=60)).admitted
    rest = await b.reserve("key", "k", 1, 0.5, 1.0, seed=0, ttl=60)
    assert rest.admitted
    assert rest.amount == 0.25


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def _state(redis: RedisServer) -> RedisState:
    config = parse_config(
        {
            "model_list": [],
            "router_settings": {"redis_host": "127.0.0.1", "redis_port": redis.port},
            "feathergate_settings": {"redis_timeout": 2},
        },
        {},
    )
    return RedisState(config.shared_state)


async def _released(state: RedisState, key: str, spent: float) -> None:
    with trio.fail_after(5):
        while True:
            probe = await state.reserve("key", key, 1, 0.0, None, seed=0.0, ttl=60)
            if probe.spent == spent:
                return
            await trio.sleep(0.01)


async def test_redis_holds_one_budget_for_two_processes_exactly(redis: RedisServer) -> None:
    a, b = _state(redis), _state(redis)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        first = await a.reserve("key", "k", 1, 0.75, 1.0, seed=0.125, ttl=60)
        assert (first.admitted, first.spent, first.amount) == (True, 0.125, 0.75)
        shrunk = await b.reserve("key", "k", 1, 0.75, 1.0, seed=0.0, ttl=60)
        assert shrunk.admitted
        assert shrunk.amount == 0.125
        assert not (await a.reserve("key", "k", 1, 0.1, 1.0, seed=0.0, ttl=60)).admitted
        a.release(first, 0.25)
        b.release(shrunk, 0.0)
        await _released(a, "k", 0.375)
        # Many small reservations from both at once: never more than the cap.
        held: list[float] = []

        async def spend(state: RedisState) -> None:
            for _ in range(40):
                hold = await state.reserve("key", "many", 2, 0.0625, 1.0, seed=0.0, ttl=60)
                if hold.admitted:
                    held.append(hold.amount)

        async with trio.open_nursery() as inner:
            for state in (a, b, a, b):
                inner.start_soon(spend, state)
        assert sum(held) == 1.0
        nursery.cancel_scope.cancel()
