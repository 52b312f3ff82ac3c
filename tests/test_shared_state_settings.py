"""Where the shared state lives: LiteLLM's Redis keys and variables, in their documented order."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from feathergate.cli import main
from feathergate.config import parse_config
from feathergate.errors import ConfigError
from feathergate.server import per_worker
from feathergate.state.settings import RedisNode, SharedStateSettings, parse_shared_state

SECRET = "s3cret-redis-password"


def parse(
    env: dict[str, str] | None = None, **sections: dict[str, Any]
) -> tuple[SharedStateSettings, list[str]]:
    return parse_shared_state(
        sections.get("router_settings", {}),
        sections.get("litellm_settings", {}),
        sections.get("general_settings", {}),
        sections.get("feathergate_settings", {}),
        env or {},
    )


def test_off_without_any_source() -> None:
    settings, warnings = parse()
    assert not settings.enabled
    assert settings.describe() == "off"
    assert warnings == []


def test_router_settings_host_port_password() -> None:
    settings, _ = parse(
        router_settings={
            "redis_host": "os.environ/RH",
            "redis_port": "6380",
            "redis_password": "os.environ/RP",
        },
        env={"RH": "redis.internal", "RP": SECRET},
    )
    assert settings.enabled
    assert (settings.host, settings.port, settings.password) == ("redis.internal", 6380, SECRET)
    assert settings.source == "router_settings.redis_host"
    assert SECRET not in repr(settings)
    assert SECRET not in settings.describe()
    assert settings.describe().startswith("redis://:***@redis.internal:6380/0")


def test_a_url_carries_tls_user_password_and_database_and_drops_the_rest() -> None:
    settings, _ = parse(
        router_settings={
            "redis_url": f"rediss://app:{SECRET}@cache.example:6390/3",
            "redis_host": "ignored",
            "redis_password": "ignored",
        }
    )
    assert settings.source == "router_settings.redis_url"
    assert (settings.host, settings.port, settings.db) == ("cache.example", 6390, 3)
    assert (settings.username, settings.password, settings.ssl) == ("app", SECRET, True)
    assert settings.describe().startswith("rediss://app:***@cache.example:6390/3")
    valkey, _ = parse(env={"REDIS_URL": "valkey://v:6379?db=2"})
    assert (valkey.host, valkey.db, valkey.ssl) == ("v", 2, False)


def test_the_first_source_wins_in_the_documented_order() -> None:
    env = {"REDIS_URL": "redis://from-env:1", "REDIS_HOST": "env-host"}
    cache = {"cache": True, "cache_params": {"type": "redis", "host": "cache-host"}}
    router = {"redis_host": "router-host"}
    coordination = {"coordination_redis": {"host": "coord-host"}}
    assert parse(env)[0].host == "from-env"
    assert parse(env, litellm_settings=cache)[0].host == "cache-host"
    assert parse(env, litellm_settings=cache, router_settings=router)[0].host == "router-host"
    top = parse(env, litellm_settings=cache, router_settings=router, general_settings=coordination)[
        0
    ]
    assert (top.host, top.source) == ("coord-host", "general_settings.coordination_redis.host")
    assert parse({"REDIS_HOST": "env-host"})[0].source == "REDIS_HOST"


def test_environment_fills_what_a_host_source_leaves_unset() -> None:
    env = {"REDIS_PORT": "7000", "REDIS_PASSWORD": SECRET, "REDIS_SSL": "True", "REDIS_DB": "4"}
    settings, _ = parse(env, router_settings={"redis_host": "h"})
    assert (settings.port, settings.password, settings.ssl, settings.db) == (7000, SECRET, True, 4)
    explicit, _ = parse(env, router_settings={"redis_host": "h", "redis_port": 6379})
    assert explicit.port == 6379
    tls, _ = parse(
        {"REDIS_URL": "rediss://h", "REDIS_SSL_CA_CERTS": "/ca.pem", "REDIS_SSL_CERT_REQS": "none"}
    )
    assert (tls.ssl, tls.ssl_ca_certs, tls.ssl_cert_reqs) == (True, "/ca.pem", "none")


def test_cache_params_need_cache_true_and_type_redis() -> None:
    params = {"type": "redis", "host": "h", "namespace": "team-a", "socket_timeout": 0.1}
    settings, warnings = parse(litellm_settings={"cache": True, "cache_params": params})
    assert (settings.host, settings.namespace, settings.timeout) == ("h", "team-a", 0.1)
    assert any("no response cache" in w for w in warnings)
    off, warnings = parse(litellm_settings={"cache_params": params})
    assert not off.enabled
    assert any("litellm_settings.cache is not true" in w for w in warnings)
    local, _ = parse(litellm_settings={"cache": True, "cache_params": {"type": "local"}})
    assert not local.enabled


def test_cluster_nodes_from_cache_params_cache_kwargs_and_the_environment() -> None:
    nodes = [{"host": "n1", "port": 7000}, {"host": "n2", "port": "7001"}]
    expected = (RedisNode("n1", 7000), RedisNode("n2", 7001))
    cache = {"cache": True, "cache_params": {"type": "redis", "redis_startup_nodes": nodes}}
    assert parse(litellm_settings=cache)[0].startup_nodes == expected
    router = {"cache_kwargs": {"startup_nodes": nodes}}
    settings, _ = parse(router_settings=router)
    assert settings.startup_nodes == expected
    assert settings.source == "router_settings.cache_kwargs.startup_nodes"
    assert settings.describe().startswith("cluster redis://n1:7000,n2:7001")
    env = {"REDIS_CLUSTER_NODES": '[{"host": "n1", "port": 7000}, {"host": "n2", "port": 7001}]'}
    from_env, _ = parse(env)
    assert (from_env.startup_nodes, from_env.source) == (expected, "REDIS_CLUSTER_NODES")


def test_timeout_and_fail_closed() -> None:
    settings, _ = parse(
        router_settings={"redis_host": "h"},
        general_settings={"fail_closed_rate_limit_enforcement": True},
        feathergate_settings={"redis_timeout": 0.05},
    )
    assert (settings.timeout, settings.fail_closed) == (0.05, True)
    assert parse(router_settings={"redis_host": "h"})[0].timeout == 0.25


@pytest.mark.parametrize(
    ("sections", "path"),
    [
        (
            {"router_settings": {"redis_host": "h", "redis_port": "abc"}},
            "router_settings.redis_port",
        ),
        ({"router_settings": {"redis_url": "http://h"}}, "router_settings.redis_url"),
        (
            {"router_settings": {"cache_kwargs": {"startup_nodes": [{"port": 1}]}}},
            "router_settings.cache_kwargs.startup_nodes[0].host",
        ),
        (
            {"general_settings": {"coordination_redis": {"host": "h", "ssl": "maybe"}}},
            "general_settings.coordination_redis.ssl",
        ),
        (
            {"router_settings": {"redis_host": "h"}, "feathergate_settings": {"redis_timeout": 0}},
            "feathergate_settings.redis_timeout",
        ),
        *(
            (
                {
                    "router_settings": {"redis_host": "h"},
                    "feathergate_settings": {"redis_timeout": t},
                },
                "feathergate_settings.redis_timeout",
            )
            for t in (math.nan, math.inf, "nan", 1e9)
        ),
        (
            {"general_settings": {"fail_closed_rate_limit_enforcement": "sometimes"}},
            "general_settings.fail_closed_rate_limit_enforcement",
        ),
    ],
)
def test_errors_name_the_key_path(sections: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**sections)
    assert caught.value.path.startswith(path)


def test_unset_variables_and_sentinel_warn_and_leave_shared_state_off() -> None:
    settings, warnings = parse(router_settings={"redis_host": "os.environ/NOPE"})
    assert not settings.enabled
    assert any("NOPE" in w and "router_settings.redis_host" in w for w in warnings)
    sentinel = {"cache": True, "cache_params": {"type": "redis", "service_name": "mymaster"}}
    settings, warnings = parse(litellm_settings=sentinel)
    assert not settings.enabled
    assert any("Sentinel" in w for w in warnings)


def test_config_reads_the_keys_without_unknown_key_warnings() -> None:
    config = parse_config(
        {
            "model_list": [],
            "router_settings": {"redis_host": "h", "redis_port": 1, "redis_password": SECRET},
            "general_settings": {"fail_closed_rate_limit_enforcement": False},
            "feathergate_settings": {"redis_timeout": 0.5},
        },
        {},
    )
    assert config.shared_state.enabled
    assert config.shared_state.timeout == 0.5
    assert not any("not used" in w for w in config.warnings)


def _deployment(rpm: int | None, tpm: int | None) -> dict[str, Any]:
    return {"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": rpm, "tpm": tpm}}


def test_workers_without_redis_divide_every_limit() -> None:
    config = parse_config(
        {"model_list": [_deployment(10, 1000), _deployment(1, None), _deployment(None, None)]},
        {"OPENAI_API_KEY": "k"},
    )
    split = per_worker(config, 3)
    assert [(d.rpm, d.tpm) for d in split.deployments] == [(3, 333), (1, None), (None, None)]
    assert per_worker(config, 1) is config
    shared = parse_config(
        {"model_list": [_deployment(10, None)], "router_settings": {"redis_host": "h"}},
        {"OPENAI_API_KEY": "k"},
    )
    kept = per_worker(shared, 3)
    assert kept.deployments[0].rpm == 10
    assert kept.shared_state.processes == 3


def test_check_shows_where_the_shared_state_is_but_not_the_password(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, mock_response: hi}\n"
        f"router_settings: {{redis_url: 'rediss://:{SECRET}@r.example:6380/1'}}\n"
    )
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "shared state: rediss://:***@r.example:6380/1 (from router_settings.redis_url" in (
        result.output
    )
    assert SECRET not in result.output
    plain = tmp_path / "p.yaml"
    plain.write_text(
        "model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, mock_response: hi}\n"
    )
    unset = {name: "" for name in ("REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_HOST")}
    result = CliRunner().invoke(main, ["check", "--config", str(plain)], env=unset)
    assert "shared state: off" in result.output
