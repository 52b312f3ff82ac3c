"""Config parsing: LiteLLM's YAML, secrets, wire-safe values, key-path errors, check == serve."""

from __future__ import annotations

import contextlib
import copy
import math
import random
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import pytest
import trio
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings

from feathergate.app import create_app
from feathergate.cli import main
from feathergate.config import (
    Config,
    Deployment,
    RouterSettings,
    StrategyArgs,
    load_config,
    parse_config,
)
from feathergate.config.routing import ERROR_CLASSES, STRATEGY_NAMES
from feathergate.errors import ConfigError, GatewayError
from feathergate.providers import get_provider
from feathergate.providers.base import CallContext
from feathergate.router import Router
from feathergate.router.classify import ErrorClass
from feathergate.router.groups import usable
from feathergate.router.strategies import STRATEGIES
from feathergate.server import Bind, hypercorn_config, make_sockets
from tests.support.configs import BASE, BASE_ENVIRON, MUTATIONS, SECRET, configs, mutate


def entry(**params: Any) -> dict[str, Any]:
    return {"model_name": "m", "litellm_params": {"model": "openai/gpt-x", **params}}


def test_both_secret_syntaxes_resolve() -> None:
    config = parse_config(
        {
            "model_list": [
                entry(api_key="os.environ/KEY_A"),
                entry(api_key="${KEY_B}", api_base="http://${HOST}:8000/v1"),
            ]
        },
        {"KEY_A": "a-secret", "KEY_B": "b-secret", "HOST": "vllm"},
    )
    first, second = config.deployments
    assert first.api_key.value == "a-secret"
    assert second.api_key.value == "b-secret"
    assert second.api_base == "http://vllm:8000/v1"
    assert "secret" not in repr(first)
    assert "secret" not in repr(second)


def test_missing_variable_warns_and_marks_the_deployment() -> None:
    config = parse_config({"model_list": [entry(api_key="os.environ/NOPE")]}, {})
    (dep,) = config.deployments
    assert dep.missing_var == "NOPE"
    assert any("NOPE" in w for w in config.warnings)


@pytest.mark.parametrize(
    "params",
    [
        {"api_base": "http://${NOPE}:8000/v1"},
        {"api_version": "os.environ/NOPE"},
        {"extra_headers": {"x-a": "Bearer ${NOPE}"}},
    ],
    ids=["api_base", "api_version", "header"],
)
def test_an_unset_variable_in_any_wire_value_marks_the_deployment(params: dict[str, Any]) -> None:
    config = parse_config({"model_list": [entry(**params)]}, {"OPENAI_API_KEY": "k"})
    assert config.deployments[0].missing_var == "NOPE"
    assert config.warnings == (
        "model_list[0].litellm_params: environment variable NOPE is not set; "
        "requests to 'm' will fail",
    )


def test_provider_key_variable_is_the_default_key() -> None:
    config = parse_config({"model_list": [entry()]}, {"OPENAI_API_KEY": "sk-env"})
    assert config.deployments[0].api_key.value == "sk-env"
    bare = parse_config({"model_list": [entry()]}, {})
    assert bare.deployments[0].missing_var == "OPENAI_API_KEY"
    local = parse_config({"model_list": [entry(api_base="http://localhost:11434/v1")]}, {})
    assert local.deployments[0].missing_var is None


def test_environment_variables_section_feeds_secrets() -> None:
    config = parse_config(
        {"model_list": [entry(api_key="os.environ/K")], "environment_variables": {"K": "v"}}, {}
    )
    assert config.deployments[0].api_key.value == "v"


def test_unknown_keys_load_with_one_warning_each() -> None:
    config = parse_config(
        {
            "model_list": [{**entry(input_cost_per_token=1), "extra": 1}],
            "litellm_settings": {"success_callback": ["langfuse"], "drop_params": True},
            "general_settings": {"alerting": ["slack"]},
            "guardrails": [],
        },
        {"OPENAI_API_KEY": "k"},
    )
    assert sorted(config.warnings) == sorted(
        [
            "model_list[0].litellm_params.input_cost_per_token: not used by FeatherGate; ignored",
            "model_list[0].extra: not used by FeatherGate; ignored",
            "litellm_settings.success_callback[0]: FeatherGate has no 'langfuse' callback; ignored",
            "general_settings.alerting: not used by FeatherGate; ignored",
            "guardrails: not used by FeatherGate; ignored",
        ]
    )
    assert config.drop_params
    assert config.deployments[0].drop_params


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model_list": [{"litellm_params": {"model": "openai/x"}}]},
            "model_list[0].model_name: required",
        ),
        (
            {"model_list": [{"model_name": "x", "litellm_params": {}}]},
            "model_list[0].litellm_params.model: required",
        ),
        (
            {"model_list": [entry(rpm="lots")]},
            "model_list[0].litellm_params.rpm: expected a number",
        ),
        ({"model_list": [entry(timeout=-1)]}, "model_list[0].litellm_params.timeout: must not be"),
        ({"model_list": {"a": 1}}, "model_list: expected a list"),
        (
            {"model_list": [entry(model="hosted_vllm/llama")]},
            "model_list[0].litellm_params.api_base: required for provider 'hosted_vllm'",
        ),
        (
            {"router_settings": {"routing_strategy": "random"}},
            "router_settings.routing_strategy: unknown strategy 'random'",
        ),
        (
            {"general_settings": {"master_key": "os.environ/NOT_SET"}},
            "general_settings.master_key: environment variable NOT_SET is not set",
        ),
        (
            {"router_settings": {"fallbacks": {"a": "b"}}},
            "router_settings.fallbacks: expected a list",
        ),
        (
            {"feathergate_settings": {"backlog": 0}},
            "feathergate_settings.backlog: must be at least 1",
        ),
        (
            {"feathergate_settings": {"backlog": 10.5}},
            "feathergate_settings.backlog: expected a whole number",
        ),
        (
            {"feathergate_settings": {"header_timeout": "soon"}},
            "feathergate_settings.header_timeout: expected a number",
        ),
    ],
)
def test_invalid_configs_name_the_key_path(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, {"OPENAI_API_KEY": "k"})
    assert str(info.value).startswith(message)


def test_known_but_unsupported_provider_loads_unavailable() -> None:
    config = parse_config({"model_list": [entry(model="bedrock/claude")]}, {})
    assert config.deployments[0].unavailable
    assert any("bedrock" in w for w in config.warnings)


def test_deadlines_from_litellm_keys_and_defaults() -> None:
    config = parse_config(
        {
            "model_list": [
                entry(timeout=30, stream_timeout=5, connect_timeout=2, first_token_timeout=10),
                entry(),
                {
                    "model_name": "c",
                    "litellm_params": {"model": "anthropic/claude", "api_key": "k"},
                },
            ],
            "router_settings": {"timeout": 120},
            "feathergate_settings": {
                "provider_defaults": {"anthropic": {"first_token_timeout": 45}}
            },
        },
        {"OPENAI_API_KEY": "k"},
    )
    explicit, inherited, provider = (d.deadlines for d in config.deployments)
    assert (explicit.connect, explicit.first_token, explicit.idle, explicit.total) == (2, 10, 5, 30)
    assert inherited.total == 120
    assert inherited.first_token is None
    assert provider.first_token == 45
    assert provider.total == 120


def test_router_settings_and_fallbacks_parse() -> None:
    config = parse_config(
        {
            "router_settings": {
                "routing_strategy": "least-busy",
                "num_retries": 3,
                "fallbacks": [{"a": ["b", "c"]}],
                "cooldown_time": 10,
            },
            "litellm_settings": {"default_fallbacks": ["z"]},
        },
        {},
    )
    assert config.router.routing_strategy == "least-busy"
    assert config.router.num_retries == 3
    assert config.router.fallbacks[0].fallbacks == ("b", "c")
    assert config.router.default_fallbacks == ("z",)
    assert config.router.cooldown_time == 10


def test_load_config_reports_yaml_and_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_config_loads_without_keys() -> None:
    config = load_config(Path(__file__).parent.parent / "feathergate.yaml", environ={})
    names = [d.model_name for d in config.deployments]
    assert names[0] == "demo"
    assert config.deployments[0].mock_response
    assert {d.provider for d in config.deployments} >= {"openai", "anthropic", "gemini"}


# -- what may go on the wire, numbers, router_settings: every error names its path ------------


def one(**params: Any) -> dict[str, Any]:
    return {"model_list": [entry(**params)]}


P = "model_list[0].litellm_params"

ERRORS: list[tuple[str, dict[str, Any], dict[str, str], str, str]] = [
    # (id, raw, environ, path, message)
    ("rpm-1e400", one(rpm="1e400"), {}, f"{P}.rpm", "expected a finite number, got '1e400'"),
    ("rpm-huge", one(rpm=10**400), {}, f"{P}.rpm", "must be at most 1,000,000,000,000,000"),
    ("rpm-very-negative", one(rpm=-(10**400)), {}, f"{P}.rpm", "must not be negative"),
    ("tpm-fraction", one(tpm=1.5), {}, f"{P}.tpm", "expected a whole number, got 1.5"),
    ("timeout-nan", one(timeout=math.nan), {}, f"{P}.timeout", "expected a finite number"),
    ("stream-inf", one(stream_timeout=math.inf), {}, f"{P}.stream_timeout", "finite number"),
    ("weight-str-nan", one(weight="nan"), {}, f"{P}.weight", "expected a finite number"),
    ("rpm-unset-var", one(rpm="os.environ/RPM"), {}, f"{P}.rpm", "RPM is not set"),
    ("rpm-from-env", one(rpm="${RPM}"), {"RPM": "1e400"}, f"{P}.rpm", "finite number"),
    ("no-scheme", one(api_base="api.example.com/v1"), {}, f"{P}.api_base", "http:// or https://"),
    ("ftp", one(api_base="ftp://h/v1"), {}, f"{P}.api_base", "got scheme 'ftp'"),
    ("no-host", one(api_base="http:///v1"), {}, f"{P}.api_base", "has no host"),
    ("userinfo", one(api_base=f"https://u:{SECRET}@h"), {}, f"{P}.api_base", "user:password@"),
    ("port-range", one(api_base="http://h:65536/v1"), {}, f"{P}.api_base", "from 1 to 65535"),
    ("port-zero", one(api_base="http://h:0/v1"), {}, f"{P}.api_base", "from 1 to 65535"),
    ("port-word", one(api_base="http://h:http/v1"), {}, f"{P}.api_base", "from 1 to 65535"),
    ("bad-ipv6", one(api_base="http://[zz]:80/v1"), {}, f"{P}.api_base", "not a valid URL"),
    ("ipv6-no-close", one(api_base="http://[::1/v1"), {}, f"{P}.api_base", "not a valid URL"),
    ("query", one(api_base="https://h/v1?k=1"), {}, f"{P}.api_base", "query or fragment"),
    ("space", one(api_base="http://h/a b"), {}, f"{P}.api_base", "printable ASCII"),
    ("idn", one(api_base="https://bücher.example"), {}, f"{P}.api_base", "xn-- form"),
    ("host-chars", one(api_base="http://a!b/"), {}, f"{P}.api_base", "the host may hold"),
    ("path-chars", one(api_base="http://h/a|b"), {}, f"{P}.api_base", "RFC 3986"),
    ("base-crlf", one(api_base="${B}"), {"B": "http://h\r\nx"}, f"{P}.api_base", "ASCII"),
    ("version-crlf", one(api_version="v1\r\nx: y"), {}, f"{P}.api_version", "goes into the URL"),
    ("key-newline-inside", one(api_key=f"{SECRET}\nx"), {}, f"{P}.api_key", "visible ASCII"),
    ("key-space", one(api_key=f"sk {SECRET}"), {}, f"{P}.api_key", "without spaces"),
    ("key-nul", one(api_key=f"{SECRET}\0"), {}, f"{P}.api_key", "control characters"),
    ("key-non-ascii", one(api_key=f"{SECRET}é"), {}, f"{P}.api_key", "visible ASCII"),
    (
        "key-env-crlf",
        one(api_key="os.environ/K"),
        {"K": f"{SECRET}\r\nx-injected: 1"},
        f"{P}.api_key",
        "line breaks",
    ),
    (
        "provider-env-key",
        one(),
        {"OPENAI_API_KEY": f"sk {SECRET}"},
        f"{P}.api_key ($OPENAI_API_KEY)",
        "visible ASCII",
    ),
    (
        "header-crlf",
        one(extra_headers={"x-a": f"{SECRET}\r\nx-b: injected"}),
        {},
        f"{P}.extra_headers.x-a",
        "without line breaks",
    ),
    (
        "header-env-nul",
        one(extra_headers={"x-a": "${H}"}),
        {"H": f"a\0{SECRET}"},
        f"{P}.extra_headers.x-a",
        "NUL",
    ),
    (
        "header-obs-text",
        one(extra_headers={"x-a": "caf\xe9"}),
        {},
        f"{P}.extra_headers.x-a",
        "visible ASCII",
    ),
    ("header-colon", one(extra_headers={"x:a": "v"}), {}, f"{P}.extra_headers", "'x:a' is not"),
    ("header-space", one(extra_headers={"x a": "v"}), {}, f"{P}.extra_headers", "not a header"),
    ("header-lf", one(extra_headers={"x\na": "v"}), {}, f"{P}.extra_headers", "not a header"),
    ("header-int", one(extra_headers={5: "v"}), {}, f"{P}.extra_headers", "5 is not a header"),
    *[
        (
            f"header-{name}",
            one(extra_headers={name: "1"}),
            {},
            f"{P}.extra_headers.{name}",
            "is set by FeatherGate itself",
        )
        for name in ("Content-Length", "transfer-encoding", "Host", "connection", "upgrade", "te")
    ],
    (
        "header-twice",
        one(extra_headers={"X-A": "1", "x-a": "2"}),
        {},
        f"{P}.extra_headers.x-a",
        "given twice",
    ),
    (
        "model-info-id",
        {"model_list": [{**entry(), "model_info": {"id": [1]}}]},
        {},
        "model_list[0].model_info.id",
        "expected a string",
    ),
    (
        "strategy-args-text",
        {"router_settings": {"routing_strategy_args": {"ttl": "an hour"}}},
        {},
        "router_settings.routing_strategy_args.ttl",
        "expected a number, got 'an hour'",
    ),
    (
        "strategy-args-nan",
        {"router_settings": {"routing_strategy_args": {"lowest_latency_buffer": math.nan}}},
        {},
        "router_settings.routing_strategy_args.lowest_latency_buffer",
        "finite number",
    ),
    (
        "strategy-args-samples",
        {"router_settings": {"routing_strategy_args": {"max_latency_list_size": 10**6}}},
        {},
        "router_settings.routing_strategy_args.max_latency_list_size",
        "at most 10,000",
    ),
    (
        "strategy-args-list",
        {"router_settings": {"routing_strategy_args": [1]}},
        {},
        "router_settings.routing_strategy_args",
        "expected a mapping",
    ),
    (
        "strategy-list",
        {"router_settings": {"routing_strategy": ["x"]}},
        {},
        "router_settings.routing_strategy",
        "unknown strategy ['x']",
    ),
    (
        "retry-policy-inf",
        {"router_settings": {"retry_policy": {"TimeoutErrorRetries": math.inf}}},
        {},
        "router_settings.retry_policy.TimeoutErrorRetries",
        "finite number",
    ),
    (
        "allowed-fails-policy-text",
        {"router_settings": {"allowed_fails_policy": {"RateLimitErrorAllowedFails": "x"}}},
        {},
        "router_settings.allowed_fails_policy.RateLimitErrorAllowedFails",
        "expected a number",
    ),
    (
        "cooldown-nan",
        {"router_settings": {"cooldown_time": math.nan}},
        {},
        "router_settings.cooldown_time",
        "finite number",
    ),
    (
        "retries-from-litellm",
        {"litellm_settings": {"num_retries": "1e400"}},
        {},
        "litellm_settings.num_retries",
        "finite number",
    ),
    (
        "request-timeout-inf",
        {"litellm_settings": {"request_timeout": math.inf}},
        {},
        "litellm_settings.request_timeout",
        "finite number",
    ),
    (
        "max-fallbacks-fraction",
        {"router_settings": {"max_fallbacks": 0.5}},
        {},
        "router_settings.max_fallbacks",
        "whole number",
    ),
    (
        "fallback-target-number",
        {"router_settings": {"fallbacks": [{"a": [1]}]}},
        {},
        "router_settings.fallbacks[0].a",
        "expected a list of model names",
    ),
    (
        "default-fallbacks-map",
        {"litellm_settings": {"default_fallbacks": {"a": 1}}},
        {},
        "litellm_settings.default_fallbacks",
        "expected a list of model names",
    ),
    (
        "max-request-inf",
        {"general_settings": {"max_request_size_mb": math.inf}},
        {},
        "general_settings.max_request_size_mb",
        "finite number",
    ),
    (
        "tcp-user-timeout-c-int",
        {"feathergate_settings": {"tcp_user_timeout": 10**7}},
        {},
        "feathergate_settings.tcp_user_timeout",
        "at most 2,147,483",
    ),
    (
        "grace-nan",
        {"feathergate_settings": {"shutdown_grace_period": math.nan}},
        {},
        "feathergate_settings.shutdown_grace_period",
        "finite number",
    ),
    (
        "provider-default-inf",
        {"feathergate_settings": {"provider_defaults": {"openai": {"timeout": math.inf}}}},
        {},
        "feathergate_settings.provider_defaults.openai.timeout",
        "finite number",
    ),
    (
        "master-key-newline-inside",
        {"general_settings": {"master_key": f"{SECRET}\nx"}},
        {},
        "general_settings.master_key",
        "visible ASCII",
    ),
    (
        "master-key-empty",
        {"general_settings": {"master_key": "${MK}"}},
        {"MK": "\n"},
        "general_settings.master_key",
        "is empty",
    ),
    (
        "environment-list",
        {"environment_variables": {"K": [1]}},
        {},
        "environment_variables.K",
        "expected a string",
    ),
]


@pytest.mark.parametrize(
    ("raw", "environ", "path", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_every_rejected_value_names_its_path_and_never_the_secret(
    raw: dict[str, Any], environ: dict[str, str], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, {"OPENAI_API_KEY": "k", **environ})
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "environ", "path"),
    [
        pytest.param(one(api_key=f"{SECRET}\n"), {}, f"{P}.api_key", id="literal"),
        pytest.param(one(api_key="os.environ/K"), {"K": f"{SECRET}\n"}, f"{P}.api_key", id="os"),
        pytest.param(one(api_key="${K}"), {"K": f"  {SECRET}\r\n"}, f"{P}.api_key", id="brace"),
        pytest.param(
            one(), {"OPENAI_API_KEY": f"{SECRET}\n"}, f"{P}.api_key ($OPENAI_API_KEY)", id="default"
        ),
        pytest.param(
            one(extra_headers={"x-token": "${K}"}),
            {"K": f"{SECRET}\n"},
            f"{P}.extra_headers.x-token",
            id="header",
        ),
        pytest.param(
            {"general_settings": {"master_key": "os.environ/K"}},
            {"K": f"{SECRET}\n"},
            "general_settings.master_key",
            id="master",
        ),
    ],
)
def test_a_secret_file_newline_is_stripped_with_one_warning_that_hides_it(
    raw: dict[str, Any], environ: dict[str, str], path: str
) -> None:
    config = parse_config(raw, {"OPENAI_API_KEY": "k", **environ})
    assert config.warnings == (f"{path}: surrounding whitespace removed (the value is not shown)",)
    assert SECRET not in config.warnings[0]
    values = [d.api_key.value for d in config.deployments]
    values += [v for d in config.deployments for _, v in d.extra_headers]
    if config.server.master_key is not None:
        values.append(config.server.master_key.value)
    assert SECRET in values


def test_what_the_wire_rules_accept() -> None:
    config = parse_config(
        {
            "model_list": [
                entry(
                    api_base="http://[::1]:8000/v1/",
                    api_key="sk-proj_AZaz09-._~+/=",
                    extra_headers={"X-Title": "My app\tv2", "anthropic-beta": "a,b", "x-e": ""},
                ),
                entry(api_base="HTTPS://h.example:443/openai/deployments/%E6%97%A5"),
                entry(model="azure/dep", api_base="https://r.openai.azure.com", api_version="${V}"),
                entry(api_base="http://my_service:8080", rpm="1_000", tpm="1e6", weight="0.5"),
            ]
        },
        {"OPENAI_API_KEY": "k", "AZURE_API_KEY": "k", "V": "2024-10-21"},
    )
    assert config.warnings == ()
    first, second, azure, local = config.deployments
    assert first.api_base == "http://[::1]:8000/v1"
    assert first.extra_headers == (
        ("X-Title", "My app\tv2"),
        ("anthropic-beta", "a,b"),
        ("x-e", ""),
    )
    assert second.api_base == "HTTPS://h.example:443/openai/deployments/%E6%97%A5"
    assert azure.api_version == "2024-10-21"
    assert (local.rpm, local.tpm, local.weight) == (1000, 1_000_000, 0.5)


def test_null_router_values_mean_the_defaults() -> None:
    keys = ("num_retries", "allowed_fails", "cooldown_time", "max_fallbacks")
    config = parse_config({"router_settings": dict.fromkeys(keys)}, {})
    assert config.router == RouterSettings()


def test_strategy_args_reach_the_router_as_frozen_numbers() -> None:
    config = parse_config(
        {
            "router_settings": {
                "routing_strategy": "latency-based-routing",
                "routing_strategy_args": {
                    "ttl": "60",
                    "max_latency_list_size": 3.0,
                    "lowest_latency_buffer": 0.5,
                    "lowest_latency_buffer_ms": 5,
                },
            }
        },
        {},
    )
    assert config.router.routing_strategy_args == StrategyArgs(
        ttl=60.0, max_latency_list_size=3, lowest_latency_buffer=0.5
    )
    assert config.warnings == (
        "router_settings.routing_strategy_args.lowest_latency_buffer_ms: "
        "not used by FeatherGate; ignored",
    )


def test_unknown_policy_keys_are_warned_about() -> None:
    config = parse_config(
        {"router_settings": {"retry_policy": {"TimeoutErrorRetries": 2, "TimeoutRetries": 1}}}, {}
    )
    assert config.router.retry_policy == {"TimeoutErrorRetries": 2}
    assert config.warnings == (
        "router_settings.retry_policy.TimeoutRetries: not used by FeatherGate; ignored",
    )


def test_the_config_knows_the_routers_names() -> None:
    # The config cannot import the router (the router imports the config), so
    # the two tables are kept equal here.
    assert set(STRATEGIES) == STRATEGY_NAMES
    assert {c.value for c in ErrorClass} == set(ERROR_CLASSES)


def test_load_config_turns_unreadable_yaml_into_config_errors(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"model_list: []\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ConfigError, match="too deep"):
        load_config(deep)
    long = tmp_path / "long.yaml"
    long.write_text("model_list: []\nrouter_settings: {num_retries: " + "9" * 5000 + "}\n")
    with pytest.raises(ConfigError):
        load_config(long)


# -- through `feathergate check`: exit 2 and the message, never a traceback ----------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "  - model_name: m\n    litellm_params: {model: openai/x, rpm: '1e400'}\n",
            f"{P}.rpm: expected a finite number, got '1e400'",
        ),
        (
            "  - model_name: m\n    litellm_params: {model: openai/x, timeout: .nan}\n",
            f"{P}.timeout: expected a finite number, got nan",
        ),
        (
            "  - model_name: m\n    litellm_params: {model: openai/x, api_base: api.example.com}\n",
            f"{P}.api_base: expected a URL starting with http:// or https://",
        ),
        (
            "  - model_name: m\n    litellm_params:\n      model: openai/x\n"
            '      extra_headers: {x-a: "v\\r\\nx-b: injected"}\n',
            f"{P}.extra_headers.x-a: a header value may hold only visible ASCII",
        ),
        (
            "[]\ngeneral_settings: {max_request_size_mb: .inf}\n",
            "general_settings.max_request_size_mb: expected a finite number, got inf",
        ),
        (
            "[]\nrouter_settings: {routing_strategy_args: {ttl: an hour}}\n",
            "router_settings.routing_strategy_args.ttl: expected a number, got 'an hour'",
        ),
    ],
    ids=["rpm-1e400", "timeout-nan", "no-scheme", "header-crlf", "size-inf", "strategy-args"],
)
def test_check_exits_2_with_the_path_and_no_traceback(
    tmp_path: Path, body: str, message: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"model_list:\n{body}" if body.startswith(" ") else f"model_list: {body}")
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"feathergate: invalid config: {message}" in result.output
    assert "Traceback" not in result.output


def test_check_warns_about_a_stripped_key_without_showing_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, api_key: '${K}'}\n"
    )
    result = CliRunner().invoke(main, ["check", "--config", str(config)], env={"K": f"{SECRET}\n"})
    assert result.exit_code == 0, result.output
    assert (
        f"feathergate: warning: {P}.api_key: surrounding whitespace removed "
        "(the value is not shown)" in result.output
    )
    assert SECRET not in result.output


# -- check equals serve: whatever `check` accepts, everything `serve` builds accepts too ----------


def _request_through_the_provider(dep: Deployment) -> None:
    """Build the upstream request for ``dep`` and have h11 check it as it would go out."""
    ctx = CallContext(
        alias=dep.model_name,
        deployment=dep,
        stream=False,
        include_usage=False,
        completion_id="chatcmpl-x",
        created=0,
    )
    body = {"model": dep.model_name, "messages": [{"role": "user", "content": "hi"}]}
    request = get_provider(dep.adapter).build_request(body, ctx)
    url = urlsplit(request.url)
    assert url.scheme in ("http", "https")
    assert url.hostname
    assert url.port is None or 0 < url.port < 65536
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = [
        ("host", url.netloc),
        *request.headers,
        ("content-length", str(len(request.content))),
    ]
    h11.Request(method="POST", target=target, headers=headers)  # raises on anything invalid


async def _serve_builds(config: Config) -> None:
    """What ``feathergate serve`` builds from a config before it listens, then one request."""
    app = create_app(config)
    hypercorn_config(config)
    sockets = make_sockets(Bind("127.0.0.1", 0), config)
    for sock in sockets.insecure_sockets:
        sock.close()
    await app.runtime.open()
    try:
        router = Router(config, clock=lambda: 1000.0, rng=random.Random(0))
        for name in router.model_names:
            with contextlib.suppress(GatewayError):  # an answer to the client, not a crash
                plan = router.plan(name, stream=False, prompt_tokens=10)
                dep = plan.next()
                plan.started(dep)
                plan.succeeded(dep, latency=0.5, ttft=0.1)
                router.plan(name, stream=True, prompt_tokens=10).next()
        for dep in config.deployments:
            if dep.mock_response is None and usable(dep):
                _request_through_the_provider(dep)
    finally:
        await app.runtime.close()


def _check_equals_serve(raw: dict[str, Any], environ: dict[str, str]) -> str:
    """``check``'s parse rejects ``raw`` or ``serve`` builds it; returns what check said."""
    try:
        config = parse_config(raw, environ)
    except ConfigError as exc:
        error = exc
    else:
        assert not any(SECRET in warning for warning in config.warnings)
        trio.run(_serve_builds, config)
        return ""
    assert SECRET not in str(error)
    return re.sub(r"\[\d+\]", "[]", error.path)


def test_the_base_config_reaches_every_provider() -> None:
    config = parse_config(copy.deepcopy(BASE), BASE_ENVIRON)
    assert {d.adapter for d in config.deployments if usable(d)} == {
        "openai",
        "anthropic",
        "gemini",
        "azure",
    }
    assert _check_equals_serve(copy.deepcopy(BASE), dict(BASE_ENVIRON)) == ""


@pytest.mark.parametrize(
    "mutation",
    [mutation for kind in MUTATIONS for mutation in kind],
    ids=lambda m: f"{m[0]}.{m[1]}" if isinstance(m, tuple) else None,
)
def test_each_bad_value_is_rejected_or_served(mutation: tuple[str, Any, Any]) -> None:
    raw, environ = copy.deepcopy(BASE), dict(BASE_ENVIRON)
    mutate(raw, environ, mutation)
    _check_equals_serve(raw, environ)


@example(
    case=(
        {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}]},
        {"OPENAI_API_KEY": f"{SECRET}\n"},
    )
)
@given(case=configs())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_what_check_accepts_serve_can_run(case: tuple[dict[str, Any], dict[str, str]]) -> None:
    rejected_at = _check_equals_serve(*case)
    event(f"rejected at {rejected_at}" if rejected_at else "accepted")


def test_connection_settings_and_their_defaults() -> None:
    defaults = parse_config({"model_list": [entry()]}, {"OPENAI_API_KEY": "k"}).server
    assert (defaults.header_timeout, defaults.body_idle_timeout, defaults.backlog) == (
        30.0,
        60.0,
        2048,
    )
    ours = {"header_timeout": 5, "body_idle_timeout": 0, "backlog": 4096}
    server = parse_config(
        {"model_list": [entry()], "feathergate_settings": ours}, {"OPENAI_API_KEY": "k"}
    ).server
    assert (server.header_timeout, server.body_idle_timeout, server.backlog) == (5, None, 4096)
