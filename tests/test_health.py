"""``/health``: per-model status, background checks against the strict fakes, never a key."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from feathergate.app import create_app
from feathergate.config import parse_config
from feathergate.health.report import health_report
from feathergate.health.results import CheckResults
from feathergate.router import DeploymentStatus
from tests.conftest import gateway_config, run_gateway
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.support.servers import serve_asgi

SECRET = "sk-health-secret-0123456789"


def _entry(name: str, model: str, dep_id: str | None = None, **params: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model_name": name, "litellm_params": {"model": model, **params}}
    if dep_id is not None:
        entry["model_info"] = {"id": dep_id}
    return entry


async def test_models_that_cannot_be_served_make_the_gateway_degraded() -> None:
    config = gateway_config(
        [
            _entry("demo", "openai/x", mock_response="hi"),
            _entry("keyless", "openai/gpt-x", "keyless", api_key="os.environ/UNSET_IN_TEST"),
            _entry("elsewhere", "bedrock/claude", "elsewhere", api_key=SECRET),
        ]
    )
    async with run_gateway(config) as base, httpx.AsyncClient() as client:
        response = await client.get(f"{base}/health")
    assert response.status_code == 200
    assert SECRET not in response.text
    body = response.json()
    assert body["status"] == "degraded"
    assert body["models"] == {"demo": "healthy", "elsewhere": "unhealthy", "keyless": "unhealthy"}
    assert [e["model"] for e in body["healthy_endpoints"]] == ["demo"]
    errors = {e["deployment"]: e["error"] for e in body["unhealthy_endpoints"]}
    assert errors["keyless"] == "the environment variable UNSET_IN_TEST is not set on the gateway"
    assert "bedrock" in errors["elsewhere"]
    assert body["background_health_checks"]["enabled"] is False
    assert body["config_generation"] == 1


async def test_no_model_that_can_be_served_is_unhealthy() -> None:
    config = gateway_config([_entry("keyless", "anthropic/c", api_key="os.environ/UNSET_X")])
    async with run_gateway(config) as base, httpx.AsyncClient() as client:
        body = (await client.get(f"{base}/health")).json()
        ready = await client.get(f"{base}/health/readiness")
    assert body["status"] == "unhealthy"
    assert ready.status_code == 200  # readiness stays the cheap probe: the process serves


def test_a_model_whose_every_deployment_cools_down_cannot_be_served() -> None:
    config = parse_config(
        {
            "model_list": [
                _entry("a", "openai/x", "a1", mock_response="x"),
                _entry("b", "openai/x", "b1", mock_response="x"),
            ]
        },
        {},
    )
    cooling = DeploymentStatus(
        model_name="b",
        in_flight=0,
        requests=3,
        tokens=0,
        failures=4,
        cooling_until=100.0,
        cooldown_remaining=42.0,
    )
    body = health_report(config, {"b1": cooling}, CheckResults(), generation=3)
    assert body["status"] == "degraded"
    assert body["unhealthy_endpoints"][0]["error"] == (
        "cooling down for 42 s more after 4 recent failure(s)"
    )


async def test_background_checks_feed_health_and_the_router() -> None:
    openai, anthropic = FakeOpenAI(api_key=SECRET), FakeAnthropic(api_key=SECRET)
    gemini = FakeGemini(api_key=SECRET, models=("gemini-2.5-flash",))
    async with (
        serve_asgi(openai) as openai_url,
        serve_asgi(anthropic) as anthropic_url,
        serve_asgi(gemini) as gemini_url,
    ):
        oa = {"api_base": f"{openai_url}/v1"}
        config = gateway_config(
            [
                _entry("chat", "openai/gpt-x", "good", api_key=SECRET, **oa),
                _entry("chat", "openai/gpt-x", "bad", api_key="sk-wrong-key-0123456789", **oa),
                _entry(
                    "claude", "anthropic/claude-x", "claude", api_key=SECRET, api_base=anthropic_url
                ),
                _entry(
                    "flash", "gemini/gemini-2.5-flash", "flash", api_key=SECRET, api_base=gemini_url
                ),
                _entry("gone", "gemini/gemini-0-none", "gone", api_key=SECRET, api_base=gemini_url),
            ],
            general_settings={"background_health_checks": True, "health_check_interval": 300},
            router_settings={"cooldown_time": 120},
            feathergate_settings={"shutdown_grace_period": 1},
        )
        app = create_app(config)
        first_round = app.runtime.checks.round_done
        async with run_gateway(config, app=app) as base, httpx.AsyncClient() as client:
            with trio.fail_after(20):
                await first_round.wait()
            response = await client.get(f"{base}/health")
            assert SECRET not in response.text
            assert "sk-wrong" not in response.text
            body = response.json()
            assert body["status"] == "degraded"  # "gone" cannot be served
            assert body["models"] == {
                "chat": "healthy",
                "claude": "healthy",
                "flash": "healthy",
                "gone": "unhealthy",
            }
            bad = {e["deployment"]: e for e in body["unhealthy_endpoints"]}
            assert bad["bad"]["error"] == "the upstream refused the API key (HTTP 401)"
            assert bad["gone"]["error"] == (
                "the upstream does not know this model or path (HTTP 404)"
            )
            assert all(e["last_checked"] for e in body["healthy_endpoints"])
            assert body["background_health_checks"]["last_round"]

            # The failed check cooled "bad": every chat request goes to "good".
            ask = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(6):
                answer = await client.post(f"{base}/v1/chat/completions", json=ask)
                assert answer.status_code == 200
                assert answer.headers["x-feathergate-model-id"] == "good"
    listings = [r for r in openai.requests if r.path == "/v1/models"]
    assert len(listings) == 2
    assert [r.path for r in anthropic.requests] == ["/v1/models"]
    assert {r.path for r in gemini.requests} == {
        "/v1beta/models/gemini-2.5-flash",
        "/v1beta/models/gemini-0-none",
    }


async def test_a_reload_starts_a_round_and_a_failing_upstream_shows(tmp_path: Any) -> None:
    openai = FakeOpenAI(api_key=SECRET)
    async with serve_asgi(openai) as url:
        config = gateway_config(
            [_entry("chat", "openai/gpt-x", "only", api_key=SECRET, api_base=f"{url}/v1")],
            general_settings={"background_health_checks": True},
        )
        app = create_app(config)
        runtime = app.runtime
        first_round = runtime.checks.round_done
        async with run_gateway(config, app=app) as base, httpx.AsyncClient() as client:
            with trio.fail_after(20):
                await first_round.wait()
            assert (await client.get(f"{base}/health")).json()["status"] == "healthy"
            openai.listing_status = 503
            second_round = runtime.checks.round_done
            runtime.swap(config)  # what a SIGHUP does once the file is read
            runtime.reload_finished()
            with trio.fail_after(20):
                await second_round.wait()
            body = (await client.get(f"{base}/health")).json()
    assert body["status"] == "unhealthy"  # its only deployment failed its check
    assert body["unhealthy_endpoints"][0]["error"] == "the upstream failed (HTTP 503)"
    assert body["config_generation"] == 2


def test_probes_ask_each_api_for_its_model_listing() -> None:
    from feathergate.health.probe import describe_status, probe_for

    config = parse_config(
        {
            "model_list": [
                _entry("az", "azure/dep", api_key=SECRET, api_base="https://r.openai.azure.com"),
                _entry(
                    "az1", "azure/dep", api_key=SECRET, api_base="https://r.azure.com/openai/v1"
                ),
                _entry("oa", "openai/x", api_key=SECRET, extra_headers={"X-Org": "o"}),
                _entry("gw", "gemini/*", api_key=SECRET),
                _entry("mock", "openai/x", mock_response="hi"),
            ]
        },
        {},
    )
    probes = [probe_for(dep) for dep in config.deployments]
    assert [p.url if p else None for p in probes] == [
        "https://r.openai.azure.com/openai/models?api-version=2024-10-21",
        "https://r.azure.com/openai/v1/models",
        "https://api.openai.com/v1/models",
        "https://generativelanguage.googleapis.com/v1beta/models",
        None,
    ]
    assert probes[0] is not None
    assert probes[0].headers == [("api-key", SECRET)]
    assert probes[2] is not None
    assert probes[2].headers == [("authorization", f"Bearer {SECRET}"), ("x-org", "o")]
    assert describe_status(429) == "the upstream is rate limiting (HTTP 429)"
    assert describe_status(418) == "the upstream answered HTTP 418"
