"""The OpenAI-compatible adapter's URLs and headers, Azure included."""

from __future__ import annotations

import json

from feathergate.config import parse_config
from feathergate.providers import get_provider
from feathergate.providers.base import CallContext


def ctx_for(params: dict[str, object]) -> CallContext:
    config = parse_config({"model_list": [{"model_name": "alias", "litellm_params": params}]}, {})
    return CallContext("alias", config.deployments[0], False, False, "chatcmpl-x", 1)


BODY = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "seed": 3}


def test_openai_compatible_request_keeps_the_body_but_the_model() -> None:
    ctx = ctx_for({"model": "groq/llama-3", "api_key": "gk", "extra_headers": {"x-team": "a"}})
    request = get_provider("openai").build_request(BODY, ctx)
    assert request.url == "https://api.groq.com/openai/v1/chat/completions"
    assert ("authorization", "Bearer gk") in request.headers
    assert ("x-team", "a") in request.headers
    assert json.loads(request.content) == {**BODY, "model": "llama-3"}


def test_no_key_means_no_authorization_header() -> None:
    ctx = ctx_for({"model": "hosted_vllm/m", "api_base": "http://vllm:8000/v1"})
    request = get_provider("openai").build_request(BODY, ctx)
    assert request.url == "http://vllm:8000/v1/chat/completions"
    assert all(name != "authorization" for name, _ in request.headers)


def test_azure_dated_api_puts_the_deployment_in_the_path() -> None:
    ctx = ctx_for(
        {
            "model": "azure/my-gpt4o",
            "api_base": "https://r.openai.azure.com",
            "api_key": "az",
            "api_version": "2024-06-01",
        }
    )
    request = get_provider("azure").build_request(BODY, ctx)
    assert request.url == (
        "https://r.openai.azure.com/openai/deployments/my-gpt4o/chat/completions"
        "?api-version=2024-06-01"
    )
    assert ("api-key", "az") in request.headers
    assert all(name != "authorization" for name, _ in request.headers)


def test_azure_v1_api_takes_no_version() -> None:
    ctx = ctx_for(
        {"model": "azure/dep", "api_base": "https://r.openai.azure.com/openai/v1", "api_key": "az"}
    )
    request = get_provider("azure").build_request(BODY, ctx)
    assert request.url == "https://r.openai.azure.com/openai/v1/chat/completions"
    assert json.loads(request.content)["model"] == "dep"
