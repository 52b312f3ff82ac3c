"""The routing core, rule by rule: a fake clock, a seeded rng, no I/O."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import trio
import trio.testing

from feathergate.config import Config, parse_config
from feathergate.errors import (
    ConfigError,
    GatewayError,
    MissingCredential,
    ModelNotFound,
    RateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from feathergate.router import GiveUp, InMemoryState, Retry, Router
from feathergate.router.classify import ErrorClass, classify, parse_retry_after
from feathergate.router.policy import BACKOFF_CAP, backoff

WALL = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def dep(ident: str, name: str = "m", model: str = "openai/gpt-4o", **params: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": model, **params},
        "model_info": {"id": ident},
    }


def config(*models: dict[str, Any], **router: Any) -> Config:
    return parse_config(
        {"model_list": list(models), "router_settings": router},
        {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"},
    )


def make(*models: dict[str, Any], seed: int = 7, **router: Any) -> tuple[Router, Clock]:
    clock = Clock()
    router_ = Router(
        config(*models, **router), clock=clock, rng=random.Random(seed), wall_clock=lambda: WALL
    )
    return router_, clock


def pick(router: Router, model: str = "m", *, stream: bool = False, tokens: int = 0) -> str:
    return router.plan(model, stream=stream, prompt_tokens=tokens).next().id


def run(router: Router, model: str = "m", tokens: int = 0, *, ok: bool = True) -> str:
    """One whole attempt: pick, start, then succeed or fail with a 500."""
    plan = router.plan(model, stream=False, prompt_tokens=tokens)
    d = plan.next()
    plan.started(d)
    if ok:
        plan.succeeded(d, latency=0.1)
    else:
        plan.failed(d, status(500))
    return d.id


def status(http: int, message: str = "boom", **kw: Any) -> UpstreamStatusError:
    return UpstreamStatusError(http, message, type="api_error", **kw)


def fail_n(router: Router, dep_id: str, n: int, err: GatewayError | None = None) -> None:
    d = next(d for d in router.config.deployments if d.id == dep_id)
    for _ in range(n):
        plan = router.plan(d.model_name, stream=False, prompt_tokens=0)
        plan.started(d)
        plan.failed(d, err or status(500))


# -- strategies ----------------------------------------------------------------


def test_simple_shuffle_follows_weights() -> None:
    router, _ = make(dep("a", weight=1), dep("b", weight=3))
    counts = Counter(pick(router) for _ in range(10_000))
    assert counts["b"] / 10_000 == pytest.approx(0.75, abs=0.02)


def test_simple_shuffle_falls_back_to_rpm_then_equal() -> None:
    router, _ = make(dep("a", rpm=100_000), dep("b", rpm=300_000))
    counts = Counter(pick(router) for _ in range(10_000))
    assert counts["b"] / 10_000 == pytest.approx(0.75, abs=0.02)
    router, _ = make(dep("a"), dep("b"))
    counts = Counter(pick(router) for _ in range(10_000))
    assert counts["a"] / 10_000 == pytest.approx(0.5, abs=0.02)


def test_simple_shuffle_without_weight_gets_none_when_siblings_have_one() -> None:
    router, _ = make(dep("a", weight=2), dep("b"))
    assert {pick(router) for _ in range(200)} == {"a"}


def test_least_busy_picks_fewest_in_flight_and_breaks_ties_randomly() -> None:
    router, _ = make(dep("a"), dep("b"), dep("c"), routing_strategy="least-busy")
    plan = router.plan("m", stream=False, prompt_tokens=0)
    by_id = {d.id: d for d in router.config.deployments}
    plan.started(by_id["a"])
    plan.started(by_id["a"])
    plan.started(by_id["b"])
    assert {pick(router) for _ in range(50)} == {"c"}
    plan.started(by_id["c"])
    plan.started(by_id["c"])
    assert {pick(router) for _ in range(50)} == {"b"}
    plan.succeeded(by_id["a"], latency=1)
    assert {pick(router) for _ in range(100)} == {"a", "b"}


def _measure(router: Router, dep_id: str, latency: float, ttft: float | None = None) -> None:
    d = next(d for d in router.config.deployments if d.id == dep_id)
    plan = router.plan("m", stream=False, prompt_tokens=0)
    plan.started(d)
    plan.succeeded(d, latency=latency, ttft=ttft)


def test_latency_based_tries_unmeasured_first_then_lowest_average() -> None:
    router, _ = make(dep("a"), dep("b"), routing_strategy="latency-based-routing")
    _measure(router, "a", 2.0)
    assert {pick(router) for _ in range(20)} == {"b"}
    _measure(router, "b", 1.0)
    _measure(router, "b", 4.0)  # average 2.5 > 2.0
    assert {pick(router) for _ in range(20)} == {"a"}


def test_latency_based_uses_time_to_first_token_for_streams() -> None:
    router, _ = make(dep("a"), dep("b"), routing_strategy="latency-based-routing")
    _measure(router, "a", latency=1.0, ttft=0.9)
    _measure(router, "b", latency=5.0, ttft=0.1)
    assert pick(router, stream=False) == "a"
    assert pick(router, stream=True) == "b"


def test_latency_samples_expire_after_ttl() -> None:
    router, clock = make(
        dep("a"),
        dep("b"),
        routing_strategy="latency-based-routing",
        routing_strategy_args={"ttl": 60},
    )
    _measure(router, "a", 1.0)
    _measure(router, "b", 2.0)
    assert pick(router) == "a"
    clock.advance(30)
    _measure(router, "a", 1.0)
    clock.advance(40)  # b's only sample is now older than the ttl: unmeasured again
    assert {pick(router) for _ in range(20)} == {"b"}


def test_latency_buffer_spreads_over_near_best() -> None:
    models = (dep("a"), dep("b"), dep("c"))
    router, _ = make(
        *models,
        routing_strategy="latency-based-routing",
        routing_strategy_args={"lowest_latency_buffer": 0.5},
    )
    for dep_id, latency in (("a", 1.0), ("b", 1.4), ("c", 1.6)):
        _measure(router, dep_id, latency)
    assert {pick(router) for _ in range(100)} == {"a", "b"}


def test_latency_keeps_only_the_newest_samples() -> None:
    router, _ = make(
        dep("a"),
        dep("b"),
        routing_strategy="latency-based-routing",
        routing_strategy_args={"max_latency_list_size": 2},
    )
    _measure(router, "a", 10.0)
    _measure(router, "a", 1.0)
    _measure(router, "a", 1.0)  # the 10 s sample is pushed out
    _measure(router, "b", 1.5)
    assert pick(router) == "a"


@pytest.mark.parametrize("strategy", ["usage-based-routing", "usage-based-routing-v2"])
def test_usage_based_prefers_lowest_share_of_its_limit(strategy: str) -> None:
    router, _ = make(dep("small", tpm=1_000), dep("big", tpm=10_000), routing_strategy=strategy)
    for d in router.config.deployments:
        plan = router.plan("m", stream=False, prompt_tokens=0)
        plan.started(d)
        plan.succeeded(d, latency=0.1, tokens=500 if d.id == "small" else 2_000)
    # small: 500/1000 = 50 %; big: 2000/10000 = 20 %
    assert {pick(router) for _ in range(20)} == {"big"}


def test_usage_based_uses_rpm_then_raw_count() -> None:
    router, _ = make(dep("a", rpm=10), dep("b", rpm=100), routing_strategy="usage-based-routing-v2")
    for d in router.config.deployments:
        for _ in range(3):
            plan = router.plan("m", stream=False, prompt_tokens=0)
            plan.started(d)
            plan.succeeded(d, latency=0.1)
    assert pick(router) == "b"  # 3/100 beats 3/10
    router, _ = make(dep("a"), dep("b"), routing_strategy="usage-based-routing-v2")
    run(router)
    first = router.snapshot()
    busy = next(k for k, v in first.items() if v["requests"] == 1)
    assert {pick(router) for _ in range(20)} == ({"a", "b"} - {busy})


# -- order ---------------------------------------------------------------------


def test_order_prefers_lowest_and_falls_through_when_unavailable() -> None:
    router, _ = make(
        dep("none"), dep("second", order=2), dep("first", order=1, rpm=1), allowed_fails=0
    )
    assert {pick(router) for _ in range(50)} == {"first"}
    run(router)  # "first" is now at its rpm
    assert {pick(router) for _ in range(50)} == {"second"}
    fail_n(router, "second", 1)  # cooled down (allowed_fails=0)
    assert {pick(router) for _ in range(50)} == {"none"}


def test_order_falls_through_to_untried_on_failover() -> None:
    router, _ = make(dep("a", order=1), dep("b", order=2), num_retries=3)
    plan = router.plan("m", stream=False, prompt_tokens=0)
    first = plan.next()
    assert first.id == "a"
    plan.started(first)
    decision = plan.failed(first, status(503))
    assert isinstance(decision, Retry)
    assert decision.dep.id == "b"
    assert decision.delay == 0.0


# -- rpm / tpm -----------------------------------------------------------------


def test_rpm_saturation_raises_rate_limited_with_retry_after() -> None:
    router, clock = make(dep("a", rpm=2), dep("b", rpm=1))
    run(router)
    clock.advance(10)
    run(router)
    clock.advance(5)
    run(router)
    clock.advance(1)
    with pytest.raises(RateLimited) as info:
        pick(router)
    # The oldest request (t=0) leaves its window first, 60 s after it was sent.
    assert info.value.retry_after == pytest.approx(60 - 16)
    assert info.value.headers() == [(b"retry-after", b"44")]


def test_sliding_window_frees_slots_as_requests_age() -> None:
    router, clock = make(dep("a", rpm=2))
    run(router)
    clock.advance(30)
    run(router)
    with pytest.raises(RateLimited):
        pick(router)
    clock.advance(30)  # the first request is exactly 60 s old: out of the window
    assert pick(router) == "a"
    run(router)
    with pytest.raises(RateLimited) as info:
        pick(router)
    assert info.value.retry_after == pytest.approx(30)


def test_tpm_counts_the_estimate_then_the_real_usage() -> None:
    router, clock = make(dep("a", tpm=1_000))
    plan = router.plan("m", stream=False, prompt_tokens=800)
    d = plan.next()
    plan.started(d)
    with pytest.raises(RateLimited):
        pick(router, tokens=300)  # 800 estimated + 300 > 1000
    clock.advance(2)
    plan.succeeded(d, latency=2.0, tokens=150)
    assert pick(router, tokens=300) == "a"
    assert router.snapshot()["a"]["tokens"] == 150
    clock.advance(59)  # the real usage counts from when it became known
    assert router.snapshot()["a"]["tokens"] == 150
    clock.advance(1)
    assert router.snapshot()["a"]["tokens"] == 0


def test_a_request_larger_than_tpm_still_goes_on_an_empty_window() -> None:
    router, _ = make(dep("a", tpm=100))
    assert pick(router, tokens=5_000) == "a"
    run(router, tokens=5_000)
    with pytest.raises(RateLimited):
        pick(router, tokens=1)


def test_saturated_group_falls_back_like_a_rate_limit() -> None:
    router, _ = make(dep("a", rpm=1), dep("z", name="other"), fallbacks=[{"m": ["other"]}])
    run(router)
    plan = router.plan("m", stream=False, prompt_tokens=0)
    assert plan.next().id == "z"
    assert plan.fallbacks == 1


# -- cooldowns -----------------------------------------------------------------


def test_cooldown_after_more_than_allowed_fails_and_expiry() -> None:
    router, clock = make(dep("a"), dep("b"), allowed_fails=2, cooldown_time=5)
    fail_n(router, "a", 2)
    assert router.snapshot()["a"]["cooling_until"] is None
    fail_n(router, "a", 1)
    assert router.snapshot()["a"]["cooling_until"] == pytest.approx(clock.now + 5)
    assert {pick(router) for _ in range(50)} == {"b"}
    clock.advance(5)
    assert {pick(router) for _ in range(50)} == {"a", "b"}


def test_cooldown_time_zero_disables_cooldowns() -> None:
    router, _ = make(dep("a"), dep("b"), allowed_fails=0, cooldown_time=0)
    fail_n(router, "a", 3, status(429, retry_after="30"))
    assert router.snapshot()["a"]["cooling_until"] is None


def test_failures_outside_the_minute_do_not_count() -> None:
    router, clock = make(dep("a"), dep("b"), allowed_fails=1)
    fail_n(router, "a", 1)
    clock.advance(61)
    fail_n(router, "a", 1)
    assert router.snapshot()["a"]["cooling_until"] is None


def test_success_resets_the_failure_count() -> None:
    router, _ = make(dep("a"), dep("b"), allowed_fails=1)
    fail_n(router, "a", 1)
    a = router.config.deployments[0]
    plan = router.plan("m", stream=False, prompt_tokens=0)
    plan.started(a)
    plan.succeeded(a, latency=0.1)
    assert router.snapshot()["a"]["failures"] == 0
    fail_n(router, "a", 1)
    assert router.snapshot()["a"]["cooling_until"] is None


def test_last_healthy_deployment_is_never_cooled() -> None:
    router, _ = make(dep("solo", name="s"), allowed_fails=0)
    fail_n(router, "solo", 10)
    assert router.snapshot()["solo"]["cooling_until"] is None
    router, _ = make(dep("a"), dep("b"), allowed_fails=0)
    fail_n(router, "a", 1)
    fail_n(router, "b", 5)
    snap = router.snapshot()
    assert snap["a"]["cooling_until"] is not None
    assert snap["b"]["cooling_until"] is None
    assert pick(router) == "b"


def test_bad_requests_do_not_cool_unless_the_policy_names_them() -> None:
    bad = status(400, "missing field")
    router, _ = make(dep("a"), dep("b"), allowed_fails=0)
    fail_n(router, "a", 3, bad)
    assert router.snapshot()["a"]["cooling_until"] is None
    router, _ = make(
        dep("a"), dep("b"), allowed_fails=0, allowed_fails_policy={"BadRequestErrorAllowedFails": 1}
    )
    fail_n(router, "a", 1, bad)
    assert router.snapshot()["a"]["cooling_until"] is None
    fail_n(router, "a", 1, bad)
    assert router.snapshot()["a"]["cooling_until"] is not None


def test_allowed_fails_policy_overrides_per_class() -> None:
    router, _ = make(
        dep("a"),
        dep("b"),
        allowed_fails=5,
        allowed_fails_policy={"TimeoutErrorAllowedFails": 0},
    )
    fail_n(router, "a", 1, status(500))
    assert router.snapshot()["a"]["cooling_until"] is None
    fail_n(router, "b", 1, UpstreamTimeout("connect", 10))
    assert router.snapshot()["b"]["cooling_until"] is not None


def test_429_retry_after_cools_at_least_that_long() -> None:
    router, clock = make(dep("a"), dep("b"), cooldown_time=5)
    fail_n(router, "a", 1, status(429, retry_after="30"))
    assert router.snapshot()["a"]["cooldown_remaining"] == pytest.approx(30)
    clock.advance(29)
    assert {pick(router) for _ in range(20)} == {"b"}
    clock.advance(1)
    assert "a" in {pick(router) for _ in range(50)}


def test_cancelled_releases_in_flight_without_counting_a_failure() -> None:
    router, _ = make(dep("a"), allowed_fails=0)
    plan = router.plan("m", stream=True, prompt_tokens=10)
    d = plan.next()
    plan.started(d)
    assert router.snapshot()["a"]["in_flight"] == 1
    plan.cancelled(d)
    plan.cancelled(d)
    plan.succeeded(d, latency=1.0)
    snap = router.snapshot()["a"]
    assert snap["in_flight"] == 0
    assert snap["failures"] == 0
    assert snap["tokens"] == 10  # the estimate stays: the upstream may have counted it


# -- retries -------------------------------------------------------------------


def _drive(router: Router, errors: list[GatewayError], model: str = "m") -> list[Any]:
    """Fail each attempt with the next error; return every decision."""
    plan = router.plan(model, stream=False, prompt_tokens=0)
    d = plan.next()
    decisions: list[Any] = []
    for err in errors:
        plan.started(d)
        decision = plan.failed(d, err)
        decisions.append(decision)
        if isinstance(decision, GiveUp):
            break
        d = decision.dep
    decisions.append(plan)
    return decisions


def test_num_retries_bounds_retries() -> None:
    router, _ = make(dep("a"), dep("b"), dep("c"), num_retries=2)
    *decisions, plan = _drive(router, [status(500)] * 5)
    assert [type(d) for d in decisions] == [Retry, Retry, GiveUp]
    assert plan.retries == 2
    assert decisions[-1].err.http_status == 500


def test_deployment_max_retries_overrides_num_retries() -> None:
    router, _ = make(dep("a", max_retries=1), num_retries=4)
    *decisions, _ = _drive(router, [status(500)] * 5)
    assert [type(d) for d in decisions] == [Retry, GiveUp]


def test_retry_policy_per_class() -> None:
    router, _ = make(
        dep("a"), num_retries=3, retry_policy={"TimeoutErrorRetries": 0, "RateLimitErrorRetries": 1}
    )
    *decisions, _ = _drive(router, [UpstreamTimeout("first_token", 5)])
    assert isinstance(decisions[0], GiveUp)
    *decisions, _ = _drive(router, [status(429), status(429)])
    assert [type(d) for d in decisions] == [Retry, GiveUp]
    *decisions, _ = _drive(router, [UpstreamUnreachable("refused")] * 4)
    assert [type(d) for d in decisions] == [Retry, Retry, Retry, GiveUp]


@pytest.mark.parametrize(
    "err",
    [
        status(401, "bad key"),
        status(400, "bad field"),
        UpstreamTimeout("idle", 30),
        MissingCredential("no key"),
    ],
)
def test_non_retryable_errors_give_up_at_once(err: GatewayError) -> None:
    router, _ = make(dep("a"), dep("b"), num_retries=3, fallbacks=[{"m": ["other"]}])
    *decisions, plan = _drive(router, [err])
    assert isinstance(decisions[0], GiveUp)
    assert decisions[0].err is err
    assert plan.retries == 0


def test_explicit_retry_policy_opts_a_class_in() -> None:
    router, _ = make(dep("a"), dep("b"), retry_policy={"BadRequestErrorRetries": 1})
    *decisions, _ = _drive(router, [status(400, "bad field")] * 3)
    assert [type(d) for d in decisions] == [Retry, GiveUp]


def test_failover_prefers_untried_then_backs_off_on_the_tried() -> None:
    router, _ = make(dep("a"), dep("b"), dep("c"), num_retries=5)
    *decisions, _ = _drive(router, [status(502)] * 4)
    first_two = [d.dep.id for d in decisions[:2]]
    assert len(set(first_two)) == 2
    assert all(d.delay == 0.0 for d in decisions[:2])
    assert decisions[2].delay > 0  # everything tried: a re-try waits


def test_backoff_grows_with_jitter_within_bounds() -> None:
    rng = random.Random(1)
    for retry in range(8):
        base = min(BACKOFF_CAP, 0.5 * 2**retry)
        for _ in range(200):
            assert 0.75 * base <= backoff(retry, rng) <= base


def test_same_deployment_retries_back_off_exponentially() -> None:
    router, _ = make(dep("a"), num_retries=6)
    *decisions, _ = _drive(router, [status(500)] * 6)
    delays = [d.delay for d in decisions]
    assert all(d.dep.id == "a" for d in decisions)
    for i, delay in enumerate(delays):
        base = min(BACKOFF_CAP, 0.5 * 2**i)
        assert 0.75 * base <= delay <= base


def test_retry_after_is_honoured_when_retrying_the_same_deployment() -> None:
    router, _ = make(dep("a"), num_retries=2)
    *decisions, _ = _drive(router, [status(429, retry_after="7")])
    assert decisions[0].dep.id == "a"
    assert decisions[0].delay == pytest.approx(7)
    date = format_datetime(datetime.fromtimestamp(WALL + 6, UTC), usegmt=True)
    *decisions, _ = _drive(router, [status(503, retry_after=date)])
    assert decisions[0].delay == pytest.approx(6)


def test_retry_after_beyond_the_cap_fails_over_or_gives_up() -> None:
    router, _ = make(dep("a", name="solo"), num_retries=3)
    *decisions, _ = _drive(router, [status(429, retry_after="120")], model="solo")
    assert isinstance(decisions[0], GiveUp)
    router, _ = make(dep("a", order=1), dep("b", order=2), num_retries=3)
    *decisions, _ = _drive(router, [status(429, retry_after="120")] * 2)
    assert decisions[0].dep.id == "b"
    assert decisions[0].delay == 0.0
    # a cools down for 120 s; b, the last healthy one, stays in but is not waited for.
    assert isinstance(decisions[1], GiveUp)


# -- fallbacks -----------------------------------------------------------------


FALLBACK_MODELS = (
    dep("m1", name="m"),
    dep("f1", name="f1"),
    dep("f2", name="f2"),
    dep("big", name="big"),
    dep("lax", name="lax"),
    dep("any", name="anything"),
)


def test_fallbacks_after_retries_are_exhausted() -> None:
    router, _ = make(*FALLBACK_MODELS, num_retries=1, fallbacks=[{"m": ["f1", "f2"]}])
    *decisions, plan = _drive(router, [status(500)] * 6)
    kinds = [(type(d).__name__, getattr(d, "is_fallback", None)) for d in decisions]
    assert kinds == [
        ("Retry", False),  # m retried once
        ("Retry", True),  # -> f1
        ("Retry", False),  # f1's own retry
        ("Retry", True),  # -> f2
        ("Retry", False),
        ("GiveUp", None),
    ]
    assert [d.dep.id for d in decisions[:-1]] == ["m1", "f1", "f1", "f2", "f2"]
    assert plan.fallbacks == 2
    assert plan.retries == 3
    assert plan.group == "f2"


def test_max_fallbacks_caps_the_groups_tried() -> None:
    router, _ = make(*FALLBACK_MODELS, max_fallbacks=1, fallbacks=[{"m": ["f1", "f2"]}])
    *decisions, plan = _drive(router, [status(500)] * 3)
    assert [type(d) for d in decisions] == [Retry, GiveUp]
    assert plan.fallbacks == 1


def test_context_window_errors_use_their_own_list() -> None:
    err = status(400, "This model's maximum context length is 8192 tokens")
    router, _ = make(
        *FALLBACK_MODELS,
        fallbacks=[{"m": ["f1"]}],
        context_window_fallbacks=[{"m": ["big"]}],
    )
    *decisions, _ = _drive(router, [err])
    assert decisions[0].dep.id == "big"
    assert decisions[0].is_fallback
    router, _ = make(*FALLBACK_MODELS, fallbacks=[{"m": ["f1"]}], default_fallbacks=["f2"])
    *decisions, _ = _drive(router, [err])
    assert isinstance(decisions[0], GiveUp)


def test_content_policy_errors_use_their_own_list() -> None:
    err = UpstreamStatusError(400, "flagged", type="invalid_request_error", code="content_filter")
    router, _ = make(*FALLBACK_MODELS, content_policy_fallbacks=[{"m": ["lax"]}])
    *decisions, _ = _drive(router, [err])
    assert decisions[0].dep.id == "lax"


def test_default_fallbacks_for_models_without_a_rule() -> None:
    router, _ = make(*FALLBACK_MODELS, fallbacks=[{"f1": ["f2"]}], default_fallbacks=["anything"])
    *decisions, _ = _drive(router, [UpstreamUnreachable("refused")])
    assert decisions[0].dep.id == "any"
    router, _ = make(*FALLBACK_MODELS, fallbacks=[{"*": ["f2"]}], default_fallbacks=["anything"])
    *decisions, _ = _drive(router, [UpstreamUnreachable("refused")])
    assert decisions[0].dep.id == "f2"


def test_fallback_skips_unknown_and_unavailable_groups() -> None:
    router, _ = make(
        *FALLBACK_MODELS[:-1],
        dep("x", name="busy", rpm=1),
        fallbacks=[{"m": ["nope", "busy", "f1"]}],
    )
    run(router, "busy")
    *decisions, plan = _drive(router, [status(500)])
    assert decisions[0].dep.id == "f1"
    assert plan.fallbacks == 1


# -- wildcards -----------------------------------------------------------------


def test_wildcards_route_and_map_the_upstream_model() -> None:
    router, _ = make(
        dep("exact", name="anthropic/claude-x", model="anthropic/claude-3-5-sonnet"),
        dep("anth", name="anthropic/*", model="anthropic/*"),
        dep("gpt", name="openai/gpt-*", model="openai/gpt-*"),
        dep("openai", name="openai/*", model="openai/*"),
        dep("all", name="*", model="openai/*"),
    )
    assert router.model_names == ["anthropic/claude-x"]

    def routed(model: str) -> tuple[str, str, str]:
        d = router.plan(model, stream=False, prompt_tokens=0).next()
        return d.id, d.provider, d.model

    assert routed("anthropic/claude-x") == ("exact", "anthropic", "claude-3-5-sonnet")
    assert routed("anthropic/claude-y") == ("anth", "anthropic", "claude-y")
    assert routed("openai/gpt-4o") == ("gpt", "openai", "gpt-4o")  # longest pattern wins
    assert routed("openai/o3") == ("openai", "openai", "o3")
    assert routed("gpt-4o") == ("all", "openai", "gpt-4o")


def test_without_a_catch_all_unknown_models_are_not_found() -> None:
    router, _ = make(dep("anth", name="anthropic/*", model="anthropic/*"))
    with pytest.raises(ModelNotFound):
        router.plan("gpt-4o", stream=False, prompt_tokens=0)
    with pytest.raises(ModelNotFound):
        router.plan("anthropic/", stream=False, prompt_tokens=0)


def test_wildcard_deployments_share_state_across_models() -> None:
    router, _ = make(dep("all", name="*", model="openai/*", rpm=1))
    run(router, "gpt-4o")
    with pytest.raises(RateLimited):
        pick(router, "gpt-4o-mini")


# -- odds and ends -------------------------------------------------------------


def test_unusable_deployment_is_skipped_while_a_sibling_can_serve() -> None:
    router, _ = make(dep("a"), dep("b", model="bedrock/claude"))
    assert {pick(router) for _ in range(50)} == {"a"}
    router, _ = make(dep("b", model="bedrock/claude"))
    assert pick(router) == "b"  # alone it stays, so the client sees why


@pytest.mark.parametrize(
    ("err", "cls"),
    [
        (status(400, "Please reduce the length: maximum context length is 4k"), "CONTEXT_WINDOW"),
        (status(400, "prompt is too long: 300000 tokens"), "CONTEXT_WINDOW"),
        (status(400, "x", code="context_length_exceeded"), "CONTEXT_WINDOW"),
        (status(400, "violates our content policy"), "CONTENT_POLICY"),
        (status(400, "x", code="content_policy_violation"), "CONTENT_POLICY"),
        (status(400, "bad"), "BAD_REQUEST"),
        (status(401, "bad"), "AUTHENTICATION"),
        (status(404, "bad"), "NOT_FOUND"),
        (status(408, "slow"), "TIMEOUT"),
        (status(429, "slow"), "RATE_LIMIT"),
        (status(529, "overloaded"), "INTERNAL_SERVER"),
        (UpstreamTimeout("connect", 1), "TIMEOUT"),
        (UpstreamUnreachable("refused"), "INTERNAL_SERVER"),
        (MissingCredential("no key"), "OTHER"),
    ],
)
def test_classification(err: GatewayError, cls: str) -> None:
    assert classify(err) is ErrorClass[cls]


def test_parse_retry_after() -> None:
    assert parse_retry_after("5", WALL) == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", WALL) == 0.0  # in the past
    date = format_datetime(datetime.fromtimestamp(WALL + 90, UTC), usegmt=True)
    assert parse_retry_after(date, WALL) == pytest.approx(90)
    assert parse_retry_after("soon", WALL) is None
    assert parse_retry_after(None, WALL) is None


def test_bad_strategy_args_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"routing_strategy_args\.ttl"):
        make(dep("a"), routing_strategy_args={"ttl": "an hour"})


def test_state_can_be_shared_between_routers() -> None:
    state = InMemoryState()
    clock = Clock()
    cfg = config(dep("a", rpm=1))
    first = Router(cfg, state=state, clock=clock)
    second = Router(cfg, state=state, clock=clock)
    run(first)
    with pytest.raises(RateLimited):
        pick(second)


async def test_default_clock_is_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    router = Router(config(dep("a"), dep("b"), allowed_fails=0, cooldown_time=5))
    fail_n(router, "a", 1)
    assert router.snapshot()["a"]["cooling_until"] is not None
    await trio.sleep(5)
    assert router.snapshot()["a"]["cooling_until"] is None
