"""Config parsing: LiteLLM's YAML, secrets, unknown keys, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from feathergate.config import load_config, parse_config
from feathergate.errors import ConfigError


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
            "litellm_settings.success_callback: not used by FeatherGate; ignored",
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
            {
                "model_list": [
                    entry(),
                    entry(),
                    {"model_name": "x", "litellm_params": {"model": "foo/y"}},
                ]
            },
            "model_list[2].litellm_params.model: unknown provider 'foo'",
        ),
        (
            {"model_list": [{"litellm_params": {"model": "openai/x"}}]},
            "model_list[0].model_name: required",
        ),
        ({"model_list": [{"model_name": "x"}]}, "model_list[0].litellm_params.model: required"),
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
