"""Generated configs for the check-equals-serve property: a valid base, then mutations.

The base is drawn from values ``check`` must accept, edge cases included (a
key with a trailing newline, an IPv6 base, the largest allowed numbers,
``${VAR}`` references). Each example then applies up to two mutations, each
one invalid value at one key path, so every kind of bad value gets tried
against a config that is otherwise loadable and reaches what ``serve`` builds.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import strategies as st

__all__ = ["BASE", "BASE_ENVIRON", "MUTATIONS", "SECRET", "configs", "mutate"]

SECRET = "sk-SeCrEt-1234"  # must never appear in a message or a warning

SECONDS = ("timeout", "stream_timeout", "connect_timeout", "first_token_timeout")
COUNTS = ("max_retries", "rpm", "tpm", "order")
STRATEGY_NAMES = (
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
)
KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_API_KEY")

# -- values check must accept ---------------------------------------------------------------------

GOOD_COUNTS = [0, 1, 3600, "30", " 7 ", "1e3", "1_000", 10**6, 10**15, "os.environ/NUM", "${NUM}"]
GOOD_SECONDS = [*GOOD_COUNTS[:-3], 2.5, "0.25", 10**9, 2_147_483]
GOOD_KEYS = [SECRET, f"{SECRET}\n", f" {SECRET} ", "os.environ/SECRET", "${SECRET}", 5, None]
GOOD_URLS = [
    *[None, "http://h", "https://h:8443/v1/", "http://[::1]:8000/v1", "http://h:", "HTTPS://H"],
    *["http://h/%41", "http://${HOST}:8000/v1", " http://h ", "http://h\n", "http://127.0.0.1:9"],
]
GOOD_HEADER_VALUES = [SECRET, f"Bearer {SECRET}", "a\tb", "", f"{SECRET}\n", "${SECRET}", 5]
GOOD_HEADER_NAMES = ["x-a", "authorization", "Content-Type", "anthropic-version", "x_c"]
GOOD_FALLBACKS = [None, [], [{"m": ["n"]}], [{"m": "n"}], [{"*": ["m"]}], [{"m": None}]]
GOOD_ENV = {
    "NUM": ["5", " 5\n"],
    "SECRET": [SECRET, f"{SECRET}\n"],
    "HOST": ["h", "h\n", "[::1]", "127.0.0.1"],
    **{var: [SECRET, f"{SECRET}\n", f" {SECRET} "] for var in KEY_VARS},
}

# -- values check must reject (or, for a few, accept with a warning) ------------------------------

BAD_NUMBERS = [-1, "-0.5", "1e400", math.nan, math.inf, -math.inf, 10**20, 1e300, "abc", "", True]
BAD_NUMBERS += [[], {}, "os.environ/UNSET", 2**31, 10**400]
BAD_KEYS = [f"sk {SECRET}", f"{SECRET}\r\nx-injected: 1", f"{SECRET}\0", f"{SECRET}\xe9", []]
BAD_KEYS += [{"a": 1}, "os.environ/UNSET", "", " ", "\n"]
BAD_URLS = [
    *["h/v1", "api.example.com", "ftp://h", "//h/v1", "http://u:p@h", "http://h:0", "file:///x"],
    *["http://h:65536", "http://[::1", "http://[zz]/", "http://h/v1?x=1", "http://h/#f"],
    *["http://h/a b", "http://:80", "http:///x", "http://b\xfccher.de", "http://h/%zz", "h:80"],
    *["http://h\\@x", "http://h/\r\nx: y", "http://h:8080:90", "http://h/\x00", 5, []],
]
BAD_HEADER_VALUES = [f"{SECRET}\r\nx-injected: 1", f"{SECRET}\0", "caf\xe9", "a\x7fb", "a\rb", []]
BAD_HEADER_NAMES = ["x:a", "x a", "", "x\r\n", "\xe9", 5, "content-length", "Host", "te"]
BAD_HEADER_NAMES += ["Transfer-Encoding", "connection", "upgrade", "keep-alive"]
BAD_FALLBACKS = [{"a": "b"}, [{"m": [1]}], ["x"], [{5: ["m"]}], [{"m": [""]}], "m"]

# Grouped by kind, and a kind drawn before a value, so that kinds with many
# values (every number key times every bad number) do not crowd out the rest.
MUTATIONS: list[list[tuple[str, Any, Any]]] = [
    [("param", key, v) for key in (*SECONDS, *COUNTS, "weight") for v in BAD_NUMBERS],
    [("param", "api_key", v) for v in BAD_KEYS],
    [("param", "api_base", v) for v in BAD_URLS],
    [("param", "api_version", v) for v in ["v1\r\nx", "a b", "a/b", "a?b", "\xe9", [], 1.5]],
    [("param", "model", v) for v in ["foo/y", "", 5, None, "hosted_vllm/x", "bedrock/x"]],
    [("param", "mock_response", v) for v in [5, []]],
    [("param", "drop_params", v) for v in ["yes", 1]],
    [("param", "extra_headers", v) for v in ["x", [1], {"X-A": "1", "x-a": "2"}]],
    [("header_value", None, v) for v in BAD_HEADER_VALUES],
    [("header_name", None, v) for v in BAD_HEADER_NAMES],
    [("entry", "model_name", v) for v in ["", None, 5]],
    [("entry", "model_info", v) for v in [{"id": [1]}, {"id": True}, "x", {"id": "same"}]],
    [("entry", "litellm_params", v) for v in [None, "x", []]],
    [
        ("router", key, v)
        for key in ("num_retries", "allowed_fails", "cooldown_time", "timeout")
        for v in BAD_NUMBERS
    ],
    [("router", key, v) for key in ("stream_timeout", "max_fallbacks") for v in BAD_NUMBERS],
    [("router", "routing_strategy", v) for v in ["random", 5, ["x"], {}]],
    [("router", "routing_strategy_args", v) for v in ["x", [], 5]],
    [
        ("strategy_args", key, v)
        for key in ("ttl", "max_latency_list_size", "lowest_latency_buffer")
        for v in [*BAD_NUMBERS, 10**6]
    ],
    [("router", key, {"TimeoutErrorRetries": v}) for key in ("retry_policy",) for v in BAD_NUMBERS],
    [("router", "allowed_fails_policy", v) for v in [{"RateLimitErrorAllowedFails": "x"}, "x"]],
    [
        ("router", key, v)
        for key in ("fallbacks", "context_window_fallbacks")
        for v in BAD_FALLBACKS
    ],
    [("router", "default_fallbacks", v) for v in [[1], {"a": 1}, [""]]],
    [("litellm", key, v) for key in ("request_timeout", "num_retries") for v in BAD_NUMBERS],
    [("litellm", "drop_params", v) for v in ["no", 2]],
    [("litellm", "fallbacks", v) for v in BAD_FALLBACKS],
    [("general", "master_key", v) for v in BAD_KEYS],
    [("general", "max_request_size_mb", v) for v in [*BAD_NUMBERS, 10**7]],
    [
        ("ours", key, v)
        for key in ("shutdown_grace_period", "keep_alive_timeout", "body_timeout")
        for v in BAD_NUMBERS
    ],
    [
        ("ours", key, v)
        for key in ("tcp_user_timeout", "client_stall_timeout")
        for v in [*BAD_NUMBERS, 10**7]
    ],
    [("ours", "provider_defaults", v) for v in [{"anthropic": {"timeout": math.nan}}, {"foo": {}}]],
    [("ours", "provider_defaults", v) for v in [{"openai": "x"}, {"gemini": {"timeout": "1e400"}}]],
    [
        ("top", key, v)
        for key in ("router_settings", "general_settings", "model_list")
        for v in ["x", 5]
    ],
    [("top", "environment_variables", v) for v in [{"K": None}, {"K": [1]}, "x"]],
    [("environ", "NUM", v) for v in ["nan", "x", "1e400", "-1", "inf"]],
    [("environ", "SECRET", v) for v in [f"{SECRET}\r\nx: y", f"sk {SECRET}", f"{SECRET}\xe9"]],
    [("environ", "HOST", v) for v in [" ", "a@b", "h:80", "h/x", "\xe9", "h\r\nx"]],
    [("environ", var, v) for var in KEY_VARS for v in [f"sk {SECRET}", f"{SECRET}\0", "\n"]],
]


# A fixed config that uses every provider and section, for the sweep over
# every mutation; each one is applied to every entry at once.
BASE: dict[str, Any] = {
    "model_list": [
        {
            "model_name": "m",
            "litellm_params": {
                "model": "openai/gpt-x",
                "api_base": "http://${HOST}:8000/v1",
                "api_key": "os.environ/SECRET",
                "extra_headers": {"x-a": "${SECRET}", "X-Title": "app v2"},
                "rpm": 100,
                "tpm": "1e6",
                "weight": 2,
                "timeout": 30,
            },
        },
        {
            "model_name": "m",
            "litellm_params": {
                "model": "anthropic/claude-x",
                "api_key": f"{SECRET}\n",
                "api_base": "https://[::1]:8443",
                "order": 1,
                "stream_timeout": "5",
            },
        },
        {
            "model_name": "g",
            "litellm_params": {"model": "gemini/g", "api_version": "v1beta", "max_retries": 1},
            "model_info": {"id": "gem"},
        },
        {
            "model_name": "az",
            "litellm_params": {
                "model": "azure/dep",
                "api_base": "https://r.openai.azure.com",
                "api_version": "2024-10-21",
                "api_key": "${SECRET}",
            },
        },
    ],
    "router_settings": {
        "routing_strategy": "latency-based-routing",
        "routing_strategy_args": {
            "ttl": 60,
            "max_latency_list_size": 5,
            "lowest_latency_buffer": 1,
        },
        "num_retries": 2,
        "retry_policy": {"TimeoutErrorRetries": 1},
        "allowed_fails_policy": {"RateLimitErrorAllowedFails": 2},
        "fallbacks": [{"m": ["g"]}],
        "default_fallbacks": ["g"],
        "max_fallbacks": 2,
    },
    "litellm_settings": {"drop_params": True, "request_timeout": 600},
    "general_settings": {"master_key": "os.environ/SECRET", "max_request_size_mb": 32},
    "feathergate_settings": {
        "tcp_user_timeout": 30,
        "shutdown_grace_period": 1,
        "provider_defaults": {"anthropic": {"first_token_timeout": 45}},
    },
}
BASE_ENVIRON = {"SECRET": f"{SECRET}\n", "NUM": "5", "HOST": "h", "GEMINI_API_KEY": SECRET}


def _good(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def _optional(required: dict[str, Any], **values: st.SearchStrategy[Any]) -> Any:
    return st.fixed_dictionaries(required, optional=values)


_PARAMS = _optional(
    {
        "model": _good(
            ["openai/gpt-x", "anthropic/claude-x", "gemini/g", "claude-3", "gpt-4o", "groq/l"]
        )
    },
    api_key=_good(GOOD_KEYS),
    api_base=_good(GOOD_URLS),
    api_version=_good(["2024-10-21", "v1beta", "${NUM}", 5]),
    extra_headers=st.dictionaries(_good(GOOD_HEADER_NAMES), _good(GOOD_HEADER_VALUES), max_size=3),
    mock_response=_good([None, None, None, "hi"]),
    drop_params=_good([True, "true", False]),
    weight=_good(GOOD_SECONDS),
    **{key: _good(GOOD_SECONDS) for key in SECONDS},
    **{key: _good(GOOD_COUNTS) for key in COUNTS},
)
_ENTRY = _optional(
    {"model_name": _good(["m", "n", "*", "openai/*"]), "litellm_params": _PARAMS},
    model_info=_good([None, {}, {"max_output_tokens": 5}]),
)
_ROUTER = _optional(
    {},
    routing_strategy=_good(STRATEGY_NAMES),
    routing_strategy_args=_optional(
        {},
        ttl=_good(GOOD_SECONDS),
        max_latency_list_size=_good([0, 1, "30", " 7 ", 10_000, "os.environ/NUM"]),
        lowest_latency_buffer=_good(GOOD_SECONDS),
        x=_good(GOOD_SECONDS),
    ),
    retry_policy=st.dictionaries(
        _good(["TimeoutErrorRetries", "RateLimitErrorRetries", "Foo"]), _good(GOOD_COUNTS)
    ),
    allowed_fails_policy=st.dictionaries(
        _good(["RateLimitErrorAllowedFails", "BadRequestErrorAllowedFails"]), _good(GOOD_COUNTS)
    ),
    fallbacks=_good(GOOD_FALLBACKS),
    context_window_fallbacks=_good(GOOD_FALLBACKS),
    content_policy_fallbacks=_good(GOOD_FALLBACKS),
    default_fallbacks=_good([None, [], ["m"], "m"]),
    **{key: _good(GOOD_COUNTS) for key in ("num_retries", "allowed_fails", "max_fallbacks")},
    **{key: _good(GOOD_SECONDS) for key in ("cooldown_time", "timeout", "stream_timeout")},
)
_BASE = _optional(
    {"model_list": st.lists(_ENTRY, min_size=1, max_size=3)},
    router_settings=_ROUTER,
    litellm_settings=_optional(
        {},
        drop_params=_good([True, "false"]),
        request_timeout=_good(GOOD_SECONDS),
        num_retries=_good(GOOD_COUNTS),
        fallbacks=_good(GOOD_FALLBACKS),
    ),
    general_settings=_optional(
        {}, master_key=_good(GOOD_KEYS), max_request_size_mb=_good([*GOOD_COUNTS[:-3], 2.5])
    ),
    feathergate_settings=_optional(
        {},
        provider_defaults=_good([None, {"openai": {"timeout": 5}}, {"anthropic": {"timeout": 0}}]),
        tcp_user_timeout=_good([*GOOD_SECONDS[:-2], 2_147_483]),
        **{
            key: _good(GOOD_SECONDS)
            for key in (
                "shutdown_grace_period",
                "keep_alive_timeout",
                "body_timeout",
                "client_stall_timeout",
            )
        },
    ),
    environment_variables=_good([None, {"K": "v"}, {"K": 5}]),
)
_ENVIRON = st.fixed_dictionaries({var: _good(values) for var, values in GOOD_ENV.items()})
_SECTIONS = {
    "router": "router_settings",
    "litellm": "litellm_settings",
    "general": "general_settings",
    "ours": "feathergate_settings",
}


def mutate(
    raw: dict[str, Any],
    environ: dict[str, str],
    mutation: tuple[str, Any, Any],
    index: int | None = None,
) -> None:
    """Apply one mutation in place; ``index`` picks the model_list entry (``None``: every one)."""
    where, key, value = mutation
    value = copy.deepcopy(value)  # the table's values are shared between examples
    if where == "environ":
        environ[key] = value
    elif where == "top":
        raw[key] = value
    elif where in _SECTIONS:
        _put(raw.setdefault(_SECTIONS[where], {}), key, value)
    elif where == "strategy_args":
        router = raw.setdefault("router_settings", {})
        if isinstance(router, dict):
            _put(router.setdefault("routing_strategy_args", {}), key, value)
    else:
        _mutate_entries(raw.get("model_list"), where, key, value, index)


def _put(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, dict):  # an earlier mutation may have replaced it
        container[key] = value


def _mutate_entries(entries: Any, where: str, key: Any, value: Any, index: int | None) -> None:
    if not isinstance(entries, list) or not entries:
        return
    for entry in entries if index is None else [entries[index % len(entries)]]:
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if where == "entry":
            _put(entry, key, value)
        elif where == "param":
            _put(params, key, value)
        elif isinstance(params, dict):
            headers = params.setdefault("extra_headers", {})
            if where == "header_value":
                _put(headers, "x-mutated", value)
            else:
                _put(headers, value, "v")
    if value == {"id": "same"}:  # a duplicate id needs two entries that share it
        entries.append(copy.deepcopy(entries[0]))


@st.composite
def configs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """A raw config and its environment: valid, then up to two mutations."""
    raw = draw(_BASE)
    environ = draw(_ENVIRON)
    kinds = draw(st.lists(st.sampled_from(MUTATIONS), max_size=2))
    for mutation in (draw(st.sampled_from(kind)) for kind in kinds):
        mutate(raw, environ, mutation, draw(st.integers(0, 2)))
    return raw, environ
