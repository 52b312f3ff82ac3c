"""LiteLLM's ``routing_strategy`` values, each a function over ready candidates.

A strategy only chooses among deployments that are already allowed (not
cooling down, under their limits, in the best ``order`` tier); every rule
about *whether* a deployment may be used lives in :mod:`.core`. Ties are
broken with the injected ``random.Random`` so tests can seed it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean

from feathergate.config import Deployment, StrategyArgs

__all__ = ["STRATEGIES", "Candidate", "Strategy"]


@dataclass(frozen=True, slots=True)
class Candidate:
    dep: Deployment
    in_flight: int
    requests: int  # in the current sliding minute
    tokens: int
    latencies: Sequence[float]  # recent samples: time to first token for streams


Strategy = Callable[[Sequence[Candidate], random.Random, StrategyArgs], Deployment]


def _lowest(
    candidates: Sequence[Candidate], rng: random.Random, key: Callable[[Candidate], float]
) -> Deployment:
    best = min(key(c) for c in candidates)
    return rng.choice([c for c in candidates if key(c) == best]).dep


_WEIGHT_SOURCES: tuple[Callable[[Deployment], float | None], ...] = (
    lambda d: d.weight,
    lambda d: d.rpm,
    lambda d: d.tpm,
)


def simple_shuffle(
    candidates: Sequence[Candidate], rng: random.Random, args: StrategyArgs
) -> Deployment:
    # As LiteLLM: the first of weight, rpm, tpm that any candidate sets decides
    # for the whole group, and a candidate without it gets weight 0.
    for source in _WEIGHT_SOURCES:
        values = [source(c.dep) for c in candidates]
        if any(v is not None for v in values):
            weights = [float(v or 0) for v in values]
            if sum(weights) > 0:
                return rng.choices(candidates, weights=weights)[0].dep
            break
    return rng.choice(candidates).dep


def least_busy(
    candidates: Sequence[Candidate], rng: random.Random, args: StrategyArgs
) -> Deployment:
    return _lowest(candidates, rng, lambda c: c.in_flight)


def lowest_latency(
    candidates: Sequence[Candidate], rng: random.Random, args: StrategyArgs
) -> Deployment:
    # An unmeasured deployment may be the fastest; without trying it first it
    # would never get a sample.
    unmeasured = [c for c in candidates if not c.latencies]
    if unmeasured:
        return rng.choice(unmeasured).dep
    means = [(fmean(c.latencies), c) for c in candidates]
    best = min(mean for mean, _ in means)
    limit = best * (1.0 + args.lowest_latency_buffer)
    return rng.choice([c for mean, c in means if mean <= limit]).dep


def _usage_share(c: Candidate) -> float:
    if c.dep.tpm:
        return c.tokens / c.dep.tpm
    if c.dep.rpm:
        return c.requests / c.dep.rpm
    return float(c.requests)


def lowest_usage(
    candidates: Sequence[Candidate], rng: random.Random, args: StrategyArgs
) -> Deployment:
    return _lowest(candidates, rng, _usage_share)


STRATEGIES: Mapping[str, Strategy] = {
    "simple-shuffle": simple_shuffle,
    "least-busy": least_busy,
    "latency-based-routing": lowest_latency,
    "usage-based-routing": lowest_usage,
    "usage-based-routing-v2": lowest_usage,
}
