"""Request ids and the access log, end to end: httpx or the openai SDK -> gateway -> fake OpenAI."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
import trio

from feathergate.config import Config, parse_config
from feathergate.ids import MAX_CLIENT_ID
from feathergate.observability.access import AccessRecord
from tests.conftest import run_gateway
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support.servers import serve_asgi

UPSTREAM_KEY = "sk-upstream-secret-0001"
MASTER_KEY = "sk-master-secret-0002"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
BODY: dict[str, Any] = {"model": "my-gpt", "messages": [{"role": "user", "content": "Hi"}]}


def config_for(upstream: str, *, fallback: str | None = None, **ours: Any) -> Config:
    def model(name: str, **params: Any) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {
                "model": "openai/gpt-real",
                "api_base": f"{upstream}/v1",
                "api_key": UPSTREAM_KEY,
                **params,
            },
        }

    models = [model("my-gpt", first_token_timeout=5)]
    router: dict[str, Any] = {}
    if fallback is not None:
        models.append(model(fallback))
        router["fallbacks"] = [{"my-gpt": [fallback]}]
    raw = {
        "model_list": models,
        "router_settings": router,
        "general_settings": {"master_key": MASTER_KEY},
        "feathergate_settings": {"shutdown_grace_period": 1, **ours},
    }
    return parse_config(raw, {})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(UPSTREAM_KEY)
    async with serve_asgi(fake) as url:
        yield fake, url


class Access(logging.Handler):
    """The access records logged during a test, and an event for the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[AccessRecord] = []
        self.logged = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, AccessRecord):
            self.records.append(record.msg)
            self.logged.set()


@pytest.fixture
def access() -> Iterator[Access]:
    logger = logging.getLogger("feathergate.access")
    handler = Access()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def records(access: Access) -> list[AccessRecord]:
    return access.records


# -- request ids ------------------------------------------------------------------------------


async def test_a_sane_client_id_is_kept_and_sent_upstream(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    fake, url = upstream
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        sent = {**AUTH, "x-request-id": "client-id-42"}
        response = await http.post("/v1/chat/completions", json=BODY, headers=sent)
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == ["client-id-42"]
    assert fake.requests[-1].headers["x-request-id"] == "client-id-42"
    assert fake.requests[-1].headers["x-client-request-id"] == "client-id-42"
    assert [r.request_id for r in records(access)] == ["client-id-42"]


@pytest.mark.parametrize(
    "sent", ["", "has space", "tab\there", "x" * (MAX_CLIENT_ID + 1), "caf\u00e9"]
)
async def test_an_insane_client_id_is_replaced(
    upstream: tuple[FakeOpenAI, str], access: Access, sent: str
) -> None:
    fake, url = upstream
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        headers = [*AUTH.items(), ("x-request-id", sent.encode())]
        response = await http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    assert fake.requests[-1].headers["x-request-id"] == request_id
    assert [r.request_id for r in records(access)] == [request_id]


async def test_every_kind_of_response_carries_one_id(upstream: tuple[FakeOpenAI, str]) -> None:
    _, url = upstream
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        stream = await http.post(
            "/v1/chat/completions", json={**BODY, "stream": True}, headers=AUTH
        )
        unknown = await http.post(
            "/v1/chat/completions", json={**BODY, "model": "no"}, headers=AUTH
        )
        no_key = await http.post("/v1/chat/completions", json=BODY)
        wrong_method = await http.get("/v1/chat/completions", headers=AUTH)
        models = await http.get("/v1/models", headers=AUTH)
        missing = await http.get("/nowhere")
    for response in (stream, unknown, no_key, wrong_method, models, missing):
        ids = response.headers.get_list("x-request-id")
        assert len(ids) == 1, response
        if response.status_code >= 400:
            assert response.json()["request_id"] == ids[0]
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert stream.text.endswith("data: [DONE]\n\n")
    assert len({r.headers["x-request-id"] for r in (stream, unknown, no_key, models)}) == 4


async def test_the_openai_sdk_sees_the_id_of_an_error(upstream: tuple[FakeOpenAI, str]) -> None:
    fake, url = upstream
    fake.script(Reply(status=429, error={"message": "slow down", "type": "rate_limit_error"}))
    async with run_gateway(config_for(url)) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=MASTER_KEY, max_retries=0)

        def call() -> openai.APIStatusError:
            try:
                client.chat.completions.create(
                    model="my-gpt", messages=BODY["messages"], extra_headers={"x-request-id": "r-1"}
                )
            except openai.APIStatusError as exc:
                return exc
            raise AssertionError("no error")

        err = await trio.to_thread.run_sync(call)
        client.close()
    assert err.status_code == 429
    assert err.request_id == "r-1"


async def test_a_mid_stream_error_event_carries_the_id(upstream: tuple[FakeOpenAI, str]) -> None:
    fake, url = upstream
    fake.script(Reply(error_event={"message": "boom", "type": "server_error"}))
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        sent = {**AUTH, "x-request-id": "stream-7"}
        response = await http.post(
            "/v1/chat/completions", json={**BODY, "stream": True}, headers=sent
        )
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert last["request_id"] == "stream-7"
    assert set(last["error"]) == {"message", "type", "param", "code"}


# -- the access log -----------------------------------------------------------------------------


async def test_a_completed_request_has_one_line_with_every_field(
    upstream: tuple[FakeOpenAI, str], caplog: pytest.LogCaptureFixture, access: Access
) -> None:
    caplog.set_level(logging.INFO)
    _, url = upstream
    config = config_for(url)
    async with run_gateway(config) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
    assert response.status_code == 200
    [record] = records(access)
    assert record.method == "POST"
    assert record.path == "/v1/chat/completions"
    assert record.status == record.upstream_status == 200
    assert record.model == "my-gpt"
    assert (
        record.deployment == config.deployments[0].id == response.headers["x-feathergate-model-id"]
    )
    assert (record.tokens_in, record.tokens_out) == (9, 4)
    assert record.ttft is None  # not a stream
    assert record.key == "master"
    assert record.client == "127.0.0.1"
    assert record.end == "completed"
    assert record.error is None
    assert record.cost is None
    assert 0 < record.latency < 30
    text = str(record)
    assert f"id={response.headers['x-request-id']}" in text
    assert '"POST /v1/chat/completions" 200' in text
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert MASTER_KEY not in everything
    assert UPSTREAM_KEY not in everything


async def test_a_stream_logs_its_time_to_first_token(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    _, url = upstream
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        response = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    [record] = records(access)
    assert record.ttft is not None
    assert 0 < record.ttft <= record.latency
    assert (record.tokens_in, record.tokens_out) == (9, 4)
    assert record.end == "completed"


async def test_a_fallback_is_counted_and_the_last_deployment_named(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    fake, url = upstream
    fake.script(Reply(status=500, error={"message": "down", "type": "server_error"}))
    config = config_for(url, fallback="backup")
    async with run_gateway(config) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
    assert response.status_code == 200
    [record] = records(access)
    assert record.fallbacks == 1
    assert record.deployment == config.deployments[1].id
    assert record.status == record.upstream_status == 200


async def test_an_upstream_error_logs_both_statuses(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    fake, url = upstream
    fake.script(Reply(status=400, error={"message": "bad", "type": "invalid_request_error"}))
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
    assert response.status_code == 400
    [record] = records(access)
    assert (record.status, record.upstream_status, record.end) == (400, 400, "error")
    assert record.error == "invalid_request_error"


async def test_a_deadline_says_which(upstream: tuple[FakeOpenAI, str], access: Access) -> None:
    fake, url = upstream
    never = trio.Event()
    fake.script(Reply(before_headers=never))
    config = config_for(url)
    dep = config.deployments[0]
    fast = type(dep.deadlines)(connect=5, first_token=0.3, idle=None, total=30)
    config = type(config)(
        deployments=(type(dep)(**{**_fields(dep), "deadlines": fast}),),
        router=config.router,
        server=config.server,
    )
    async with run_gateway(config) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
    assert response.status_code == 504
    [record] = records(access)
    assert record.end == "deadline:first_token"
    assert record.upstream_status is None


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


async def test_a_client_that_leaves_mid_stream_is_logged_with_the_phase(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    fake, url = upstream
    gate = trio.Event()
    fake.script(Reply(after_chunks=2, gate=gate))
    async with run_gateway(config_for(url)) as base:
        async with (
            httpx.AsyncClient(base_url=base) as http,
            http.stream(
                "POST", "/v1/chat/completions", json={**BODY, "stream": True}, headers=AUTH
            ) as response,
        ):
            async for _ in response.aiter_bytes():
                break  # the first chunk arrived: leave
        with trio.fail_after(10):
            await access.logged.wait()
        gate.set()
    [record] = records(access)
    assert record.status == 499
    assert record.end == "client_left:streaming"


async def test_quart_routes_are_logged_too(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    _, url = upstream
    async with run_gateway(config_for(url)) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/health/liveliness")
    [record] = records(access)
    assert (record.path, record.status) == ("/health/liveliness", 200)
    assert record.request_id == response.headers["x-request-id"]


async def test_access_log_false_turns_it_off(
    upstream: tuple[FakeOpenAI, str], access: Access
) -> None:
    _, url = upstream
    config = config_for(url, access_log=False)
    async with run_gateway(config) as base, httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=AUTH)
    assert response.status_code == 200
    assert records(access) == []
    assert response.headers["x-request-id"]
