"""LiteLLM's own example configs load, and models FeatherGate cannot serve fail alone.

The 27 configs LiteLLM 1.106.12 ships (tests/fixtures/litellm_configs/) all
load, with warnings for what FeatherGate does not use. A model whose provider
is unknown or unsupported loads with one warning, and answers an error naming
it, while the config's other models serve; bare model names get their
provider the way LiteLLM infers it.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from feathergate.catalog import split_model
from feathergate.config import Config, load_config, parse_config
from tests.conftest import run_gateway

CONFIGS = Path(__file__).parent / "fixtures" / "litellm_configs"
FILES = sorted(CONFIGS.glob("*/*.yaml"))


def _environ(path: Path) -> dict[str, str]:
    """A value for every ``os.environ/VAR`` the file names, of the kind the name suggests."""

    def value(var: str) -> str:
        if "BASE" in var or "URL" in var:
            return "https://example.invalid/v1"
        return "6379" if "PORT" in var else "secret-value"

    return {var: value(var) for var in re.findall(r"os\.environ/(\w+)", path.read_text())}


def _load(name: str) -> Config:
    path = next(p for p in FILES if p.name == name)
    return load_config(path, _environ(path))


def test_all_27_configs_are_here() -> None:
    assert len(FILES) == 27


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_litellm_example_config_loads(path: Path) -> None:
    config = load_config(path, _environ(path))
    for dep in config.deployments:
        # One warning per model that cannot be served, naming the model.
        if dep.unavailable:
            mentions = [w for w in config.warnings if dep.unavailable in w]
            assert any(repr(dep.model_name) in w for w in mentions)


def test_a_model_without_litellm_params_is_its_own_model_name() -> None:
    config = _load("langfuse_config.yaml")
    (dep,) = config.deployments
    assert (dep.provider, dep.model, dep.unavailable) == ("openai", "gpt-3.5-turbo", None)
    assert "model_list[0].litellm_params: missing: the model is 'gpt-3.5-turbo'" in "\n".join(
        config.warnings
    )


def test_unknown_prefixes_load_and_the_rest_serves() -> None:
    balancer = _load("load_balancer.yaml")
    assert [d.provider for d in balancer.deployments] == [
        "openai",
        "openai",
        "openrouter",
        "mistralai",
    ]
    assert balancer.deployments[3].unavailable == "unknown provider 'mistralai'"
    assert "environment_variables.REDIS_PASSWORD: no value; not exported" in balancer.warnings
    router = _load("adaptive_router_example.yaml")
    assert router.deployments[0].unavailable == "unknown provider 'auto_router'"
    assert [d.unavailable for d in router.deployments[1:]] == [None, None]


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-3.5-turbo", "openai"),
        ("gpt-4o-mini", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("o1", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini-2025-04-16", "openai"),
        ("text-embedding-3-small", "openai"),
        ("text-embedding-ada-002", "openai"),
        ("ft:gpt-4o-mini:org::abc", "openai"),
        ("*", "openai"),
        ("gpt-3.5-turbo-instruct", "text-completion-openai"),
        ("gpt-3.5-turbo-instruct-0914", "text-completion-openai"),
        ("davinci-002", "text-completion-openai"),
        ("babbage-002", "text-completion-openai"),
        ("claude-sonnet-4-5", "anthropic"),
        ("claude-3-haiku-20240307", "anthropic"),
        ("mistral-7b-instruct", None),
        ("gemini-2.5-flash", None),  # LiteLLM sends bare gemini names to vertex_ai
        ("omni", None),
        ("o", None),
        ("openai", None),
    ],
)
def test_bare_names_get_litellm_provider(model: str, provider: str | None) -> None:
    assert split_model(model) == (provider, model)


async def test_an_unservable_model_answers_501_naming_it_and_others_serve() -> None:
    raw = {
        "model_list": [
            {"model_name": "ok", "litellm_params": {"model": "openai/x", "mock_response": "hi"}},
            {"model_name": "typo", "litellm_params": {"model": "opnai/x"}},
            {"model_name": "bare", "litellm_params": {"model": "mistral-7b"}},
        ],
        "feathergate_settings": {"shutdown_grace_period": 1},
    }
    config = parse_config(raw, {})
    assert len(config.warnings) == 2
    messages = [{"role": "user", "content": "hi"}]
    async with run_gateway(config) as base, httpx.AsyncClient(base_url=base) as http:
        ok = await http.post("/v1/chat/completions", json={"model": "ok", "messages": messages})
        typo = await http.post("/v1/chat/completions", json={"model": "typo", "messages": messages})
        bare = await http.post("/v1/chat/completions", json={"model": "bare", "messages": messages})
        listed = (await http.get("/v1/models")).json()["data"]
    assert ok.status_code == 200
    assert typo.status_code == 501
    assert typo.json()["error"]["message"] == "model 'typo': unknown provider 'opnai'"
    assert bare.status_code == 501
    assert "no provider for 'mistral-7b'" in bare.json()["error"]["message"]
    assert {card["id"] for card in listed} == {"ok", "typo", "bare"}
