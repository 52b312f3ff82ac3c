"""``router_settings`` (and the routing keys LiteLLM also reads from ``litellm_settings``).

Every value is checked here, at load, so ``feathergate check`` and ``serve``
agree: the router receives a :class:`RouterSettings` it can use as is. The
names below mirror the router's own tables (``router.strategies.STRATEGIES``,
``router.classify.ErrorClass``); the config cannot import them without a
cycle, and tests keep the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feathergate.config.model import FallbackRule, RouterSettings, StrategyArgs
from feathergate.config.readers import MAX_SECONDS, Reader
from feathergate.errors import ConfigError

__all__ = ["ERROR_CLASSES", "ROUTER_KEYS", "STRATEGY_NAMES", "read_router"]

ROUTER_KEYS = {
    "routing_strategy",
    "routing_strategy_args",
    "num_retries",
    "retry_policy",
    "timeout",
    "stream_timeout",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "max_fallbacks",
}
STRATEGY_NAMES = frozenset(
    {
        "simple-shuffle",
        "least-busy",
        "latency-based-routing",
        "usage-based-routing",
        "usage-based-routing-v2",
    }
)
# LiteLLM's exception names: the keys of retry_policy (``<name>Retries``) and
# allowed_fails_policy (``<name>AllowedFails``).
ERROR_CLASSES = (
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "AuthenticationError",
    "NotFoundError",
    "TimeoutError",
    "RateLimitError",
    "InternalServerError",
    "APIError",
)
# Samples are kept per deployment, so the list size is memory.
MAX_LATENCY_SAMPLES = 10_000

_DEFAULTS = RouterSettings()


def read_router(
    reader: Reader, raw: Mapping[Any, Any], litellm: Mapping[Any, Any]
) -> RouterSettings:
    def pick(key: str) -> tuple[Any, str]:
        # LiteLLM reads these from either section; router_settings wins.
        if raw.get(key) is not None:
            return raw[key], f"router_settings.{key}"
        return litellm.get(key), f"litellm_settings.{key}"

    def count(key: str, default: int) -> int:
        value, path = pick(key)
        number = reader.count(value, path)
        return default if number is None else number

    cooldown = reader.finite(raw.get("cooldown_time"), "router_settings.cooldown_time")
    return RouterSettings(
        routing_strategy=_strategy(raw.get("routing_strategy")),
        routing_strategy_args=_strategy_args(reader, raw.get("routing_strategy_args")),
        num_retries=count("num_retries", _DEFAULTS.num_retries),
        retry_policy=_policy(reader, raw.get("retry_policy"), "retry_policy", "Retries"),
        allowed_fails=count("allowed_fails", _DEFAULTS.allowed_fails),
        allowed_fails_policy=_policy(
            reader, raw.get("allowed_fails_policy"), "allowed_fails_policy", "AllowedFails"
        ),
        cooldown_time=_DEFAULTS.cooldown_time if cooldown is None else cooldown,
        fallbacks=_fallbacks(reader, *pick("fallbacks")),
        context_window_fallbacks=_fallbacks(reader, *pick("context_window_fallbacks")),
        content_policy_fallbacks=_fallbacks(reader, *pick("content_policy_fallbacks")),
        default_fallbacks=_names(*pick("default_fallbacks")),
        max_fallbacks=count("max_fallbacks", _DEFAULTS.max_fallbacks),
    )


def _strategy(value: Any) -> str:
    if value is None:
        return _DEFAULTS.routing_strategy
    if not isinstance(value, str) or value not in STRATEGY_NAMES:
        raise ConfigError(
            "router_settings.routing_strategy",
            f"unknown strategy {value!r} (one of {', '.join(sorted(STRATEGY_NAMES))})",
        )
    return value


def _strategy_args(reader: Reader, raw: Any) -> StrategyArgs:
    path = "router_settings.routing_strategy_args"
    args = reader.mapping(raw, path)
    reader.unknown(path, args, {"ttl", "max_latency_list_size", "lowest_latency_buffer"})
    defaults = StrategyArgs()
    ttl = reader.finite(args.get("ttl"), f"{path}.ttl")
    keep = reader.count(
        args.get("max_latency_list_size"),
        f"{path}.max_latency_list_size",
        maximum=MAX_LATENCY_SAMPLES,
    )
    buffer = reader.finite(
        args.get("lowest_latency_buffer"), f"{path}.lowest_latency_buffer", maximum=MAX_SECONDS
    )
    return StrategyArgs(
        ttl=defaults.ttl if ttl is None else ttl,
        max_latency_list_size=defaults.max_latency_list_size if keep is None else keep,
        lowest_latency_buffer=defaults.lowest_latency_buffer if buffer is None else buffer,
    )


def _policy(reader: Reader, raw: Any, key: str, suffix: str) -> dict[str, int]:
    path = f"router_settings.{key}"
    values = reader.mapping(raw, path)
    known = {f"{name}{suffix}" for name in ERROR_CLASSES}
    reader.unknown(path, values, known)
    policy: dict[str, int] = {}
    for name, value in values.items():
        if name not in known:
            continue
        number = reader.count(value, f"{path}.{name}")
        if number is not None:
            policy[str(name)] = number
    return policy


def _fallbacks(reader: Reader, raw: Any, path: str) -> tuple[FallbackRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(path, "expected a list of {model: [fallback, ...]} maps")
    rules: list[FallbackRule] = []
    for i, item in enumerate(raw):
        for model, targets in reader.mapping(item, f"{path}[{i}]").items():
            where = f"{path}[{i}].{model}"
            if not isinstance(model, str) or not model:
                raise ConfigError(where, "expected a model name as the key")
            rules.append(FallbackRule(model, _names(targets, where)))
    return tuple(rules)


def _names(raw: Any, path: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(name, str) and name for name in raw):
        raise ConfigError(path, "expected a list of model names")
    return tuple(raw)
