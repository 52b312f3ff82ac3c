"""``POST /v1/embeddings`` end to end: the official openai SDK -> FeatherGate -> strict fakes.

OpenAI (and Azure) get a passthrough; Gemini gets ``batchEmbedContents`` in
batches of 100, called at once and joined in order. The fakes answer vectors
drawn from each input's hash, so every test can say which vector belongs to
which input.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import trio

from feathergate.config import parse_config
from tests.conftest import run_gateway
from tests.fakes.gemini import FakeGemini, error_reply
from tests.fakes.gemini_embeddings import gemini_vector
from tests.fakes.openai import FakeOpenAI, Reply, fake_vector
from tests.support.rawclient import RawClient
from tests.support.sdk import SDK
from tests.support.servers import serve_asgi

GEMINI_KEY = "test-key"


@dataclass
class Setup:
    openai: FakeOpenAI
    gemini: FakeGemini
    sdk: SDK
    base: str


def _models(openai_url: str, gemini_url: str, key: str) -> list[dict[str, Any]]:
    def openai_entry(name: str, model: str, **params: Any) -> dict[str, Any]:
        litellm = {"model": model, "api_base": f"{openai_url}/v1", "api_key": key, **params}
        return {"model_name": name, "litellm_params": litellm}

    return [
        openai_entry("emb", "openai/text-embedding-3-small"),
        openai_entry("ada", "openai/text-embedding-ada-002"),
        openai_entry("vllm-emb", "hosted_vllm/bge-m3"),
        {
            "model_name": "azure-emb",
            "litellm_params": {
                "model": "azure/my-embedder",
                "api_base": openai_url,
                "api_version": "2024-10-21",
                "api_key": key,
            },
        },
        {
            "model_name": "gem-emb",
            "litellm_params": {
                "model": "gemini/gemini-embedding-001",
                "api_base": gemini_url,
                "api_key": GEMINI_KEY,
            },
            "model_info": {"mode": "embedding"},
        },
        {
            "model_name": "gem-emb-drop",
            "litellm_params": {
                "model": "gemini/gemini-embedding-001",
                "api_base": gemini_url,
                "api_key": GEMINI_KEY,
                "drop_params": True,
            },
        },
        {
            "model_name": "gem-emb-slow",
            "litellm_params": {
                "model": "gemini/gemini-embedding-001",
                "api_base": gemini_url,
                "api_key": GEMINI_KEY,
                "timeout": 0.5,
            },
        },
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-x", "api_key": "k"}},
        {"model_name": "mock-emb", "litellm_params": {"model": "openai/x", "mock_response": "-"}},
        openai_entry("emb-primary", "openai/text-embedding-3-small"),
    ]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    fake_openai, fake_gemini = FakeOpenAI(), FakeGemini()
    async with serve_asgi(fake_openai) as openai_url, serve_asgi(fake_gemini) as gemini_url:
        raw = {
            "model_list": _models(openai_url, gemini_url, fake_openai.api_key),
            "router_settings": {"fallbacks": [{"emb-primary": ["gem-emb"]}]},
            "feathergate_settings": {"shutdown_grace_period": 1},
        }
        async with run_gateway(parse_config(raw, {})) as base:
            sdk = SDK(base)
            yield Setup(fake_openai, fake_gemini, sdk, base)
            sdk.close()


def _floats(data: list[float] | str) -> list[float]:
    """A vector as the client got it; base64 is little-endian float32 (the SDK decodes it
    itself only when it chose base64, that is when the caller named no encoding)."""
    if isinstance(data, list):
        return data
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# -- OpenAI: a passthrough ----------------------------------------------------------------


INPUT_FORMS: list[Any] = [
    "a single string",
    ["first", "second", "third"],
    [15496, 995],  # one token array
    [[15496, 995], [1, 2, 3]],  # a list of token arrays
]


def _items(raw: Any) -> list[Any]:
    if isinstance(raw, str) or isinstance(raw[0], int):
        return [raw]
    return list(raw)


@pytest.mark.parametrize("raw", INPUT_FORMS, ids=["str", "strs", "tokens", "token-lists"])
@pytest.mark.parametrize("encoding", [None, "float", "base64"])
async def test_openai_every_input_form_and_encoding(
    setup: Setup, raw: Any, encoding: str | None
) -> None:
    kwargs = {} if encoding is None else {"encoding_format": encoding}
    result = await setup.sdk.embed(model="emb", input=raw, **kwargs)
    assert result.model == "emb"
    items = _items(raw)
    assert [d.index for d in result.data] == list(range(len(items)))
    for item, data in zip(items, result.data, strict=True):
        assert isinstance(data.embedding, str) == (encoding == "base64")
        assert _floats(data.embedding) == pytest.approx(fake_vector(item), rel=1e-6)
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens
    sent = setup.openai.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body["model"] == "text-embedding-3-small"
    assert sent.body["input"] == raw
    # The SDK asks for base64 unless told otherwise; the upstream gets what the client sent.
    assert sent.body["encoding_format"] == (encoding or "base64")


async def test_the_body_reaches_the_upstream_byte_for_byte_but_for_model(setup: Setup) -> None:
    body = b'{"input": ["caf\\u00e9", "1.50"],  "model":"emb" ,"user":"u-1","dimensions":4}'
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post("/v1/embeddings", content=body)
    assert response.status_code == 200, response.text
    assert setup.openai.requests[-1].raw == body.replace(b'"emb"', b'"text-embedding-3-small"')
    answer = response.json()
    assert answer["model"] == "emb"
    assert [len(d["embedding"]) for d in answer["data"]] == [4, 4]  # floats: none asked


async def test_dimensions_and_user_reach_openai(setup: Setup) -> None:
    result = await setup.sdk.embed(model="emb", input=["x"], dimensions=3, user="u-7")
    assert len(result.data[0].embedding) == 3
    assert result.data[0].embedding == pytest.approx(fake_vector("x", 3), rel=1e-6)
    assert setup.openai.requests[-1].body["dimensions"] == 3
    assert setup.openai.requests[-1].body["user"] == "u-7"


async def test_dimensions_on_ada_is_openai_own_400(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await setup.sdk.embed(model="ada", input="x", dimensions=3)
    assert "does not support specifying dimensions" in caught.value.message
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]


async def test_azure_deployment_url_api_version_and_key(setup: Setup) -> None:
    result = await setup.sdk.embed(model="azure-emb", input=["x", "y"])
    assert result.model == "azure-emb"
    assert result.data[1].embedding == pytest.approx(fake_vector("y"), rel=1e-6)
    sent = setup.openai.requests[-1]
    assert sent.path == "/openai/deployments/my-embedder/embeddings"
    assert sent.query == {"api-version": ["2024-10-21"]}
    assert sent.headers["api-key"] == setup.openai.api_key
    assert "authorization" not in sent.headers


@pytest.mark.parametrize(
    "reply",
    [Reply(floats_only=True), Reply(reversed_data=True), Reply(floats_only=True, no_usage=True)],
    ids=["floats-despite-base64", "out-of-order", "no-usage"],
)
async def test_a_lax_compatible_server_is_mended(setup: Setup, reply: Reply) -> None:
    setup.openai.script(reply)
    texts = ["one", "two", "three"]
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post(
            "/v1/embeddings",
            json={"model": "vllm-emb", "input": texts, "encoding_format": "base64"},
        )
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == "vllm-emb"
    assert [d["index"] for d in answer["data"]] == [0, 1, 2]
    for text, data in zip(texts, answer["data"], strict=True):
        assert _floats(data["embedding"]) == pytest.approx(fake_vector(text), rel=1e-6)
    if reply.no_usage:  # about four bytes a token, at least one per input: 1 + 1 + 2
        assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
        assert response.headers["x-feathergate-usage"] == "estimated"
    else:
        assert answer["usage"]["prompt_tokens"] == 3
        assert "x-feathergate-usage" not in response.headers


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "emb", "input": ""}, "input"),
        ({"model": "emb", "input": []}, "input"),
        ({"model": "emb", "input": ["a", ""]}, "input"),
        ({"model": "emb", "input": [[]]}, "input"),
        ({"model": "emb", "input": ["a", 1]}, "input"),
        ({"model": "emb", "input": ["x"] * 2049}, "input"),
        ({"model": "emb"}, "input"),
        ({"model": "emb", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "emb", "input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
async def test_malformed_requests_are_400_before_any_upstream_call(
    setup: Setup, body: dict[str, Any], param: str
) -> None:
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert setup.openai.requests == []


async def test_2048_inputs_go_up_as_sent(setup: Setup) -> None:
    texts = [f"t{i}" for i in range(2048)]
    body = json.dumps({"model": "emb", "input": texts, "encoding_format": "base64"}).encode()
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post("/v1/embeddings", content=body)
    assert response.status_code == 200
    assert setup.openai.requests[-1].raw == body.replace(b'"emb"', b'"text-embedding-3-small"')
    data = response.json()["data"]
    assert len(data) == 2048
    assert _floats(data[2047]["embedding"]) == pytest.approx(fake_vector("t2047"), rel=1e-6)


async def test_unknown_model_is_404(setup: Setup) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await setup.sdk.embed(model="nope", input="x")
    assert caught.value.code == "model_not_found"


async def test_empty_input_is_400_for_the_sdk(setup: Setup) -> None:
    for empty in ("", [], [""]):
        with pytest.raises(openai.BadRequestError) as caught:
            await setup.sdk.embed(model="emb", input=empty)
        assert caught.value.body["param"] == "input"  # type: ignore[index]
    assert setup.openai.requests == []


async def test_upstream_429_keeps_its_retry_after(setup: Setup) -> None:
    error = {"error": {"message": "slow down", "type": "requests", "param": None, "code": None}}
    setup.openai.script(Reply(status=429, error=error, headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as caught:
        await setup.sdk.embed(model="emb", input="x")
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["message"] == "slow down"  # type: ignore[index]


async def test_a_provider_without_embeddings_is_a_clear_400(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await setup.sdk.embed(model="claude", input="x")
    assert "provider 'anthropic'" in caught.value.message
    assert "no embeddings API" in caught.value.message


async def test_fallback_between_embedding_deployments(setup: Setup) -> None:
    setup.openai.script(Reply(status=500))
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post(
            "/v1/embeddings", json={"model": "emb-primary", "input": ["p", "q"]}
        )
    assert response.status_code == 200
    assert response.headers["x-feathergate-attempted-fallbacks"] == "1"
    answer = response.json()
    assert answer["model"] == "emb-primary"  # the alias the client sent, whoever answered
    assert answer["data"][1]["embedding"] == pytest.approx(gemini_vector("q", 8))


async def test_mock_response_answers_zero_vectors(setup: Setup) -> None:
    result = await setup.sdk.embed(model="mock-emb", input=["a", "b"], dimensions=5)
    assert [d.embedding for d in result.data] == [[0.0] * 5, [0.0] * 5]
    assert result.model == "mock-emb"


async def test_models_list_keeps_every_model_and_says_embedding(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.base) as http:
        cards = (await http.get("/v1/models")).json()["data"]
    by_id = {card["id"]: card for card in cards}
    assert {"emb", "gem-emb", "claude", "mock-emb"} <= set(by_id)
    assert by_id["gem-emb"]["mode"] == "embedding"
    assert "mode" not in by_id["emb"]


async def test_metrics_count_embeddings_requests(setup: Setup) -> None:
    async def served() -> float:
        async with httpx.AsyncClient(base_url=setup.base) as http:
            text = (await http.get("/metrics")).text
        line = 'feathergate_requests_total{model="emb",status="200"} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = await served()  # the registry is the process's: other tests count too
    await setup.sdk.embed(model="emb", input="x")
    assert await served() == before + 1


# -- Gemini: batches of 100, at once ------------------------------------------------------


def _batch_sizes(fake: FakeGemini) -> list[int]:
    return [
        len(r.body["requests"]) for r in fake.requests if r.path.endswith(":batchEmbedContents")
    ]


@pytest.mark.parametrize(
    ("count", "batches"), [(1, [1]), (100, [100]), (101, [100, 1]), (250, [100, 100, 50])]
)
@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_gemini_batches_of_100_come_back_in_order(
    setup: Setup, count: int, batches: list[int], encoding: str
) -> None:
    texts = [f"text number {i}" for i in range(count)]
    result = await setup.sdk.embed(model="gem-emb", input=texts, encoding_format=encoding)
    assert result.model == "gem-emb"
    assert [d.index for d in result.data] == list(range(count))
    for text, data in zip(texts, result.data, strict=True):
        assert _floats(data.embedding) == pytest.approx(gemini_vector(text, 8), rel=1e-6)
    assert sorted(_batch_sizes(setup.gemini), reverse=True) == batches
    firsts = sorted(
        r.body["requests"][0]["content"]["parts"][0]["text"] for r in setup.gemini.requests
    )
    assert firsts == sorted(texts[i] for i in range(0, count, 100))
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


async def test_gemini_request_shape_and_estimated_usage(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.base) as http:
        response = await http.post(
            "/v1/embeddings",
            json={
                "model": "gem-emb",
                "input": ["héllo", "a much longer piece of text"],
                "encoding_format": "float",
                "user": "u-1",
                "task_type": "RETRIEVAL_DOCUMENT",
                "title": "Doc",
            },
        )
    assert response.status_code == 200, response.text
    sent = setup.gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert sent.body["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "héllo"}]},
        "taskType": "RETRIEVAL_DOCUMENT",
        "title": "Doc",
    }
    # ceil(6 bytes / 4) + ceil(27 / 4)
    assert response.json()["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    assert response.headers["x-feathergate-usage"] == "estimated"


async def test_gemini_dimensions_are_output_dimensionality_and_unit_length(setup: Setup) -> None:
    result = await setup.sdk.embed(model="gem-emb", input=["x"], dimensions=3)
    assert setup.gemini.requests[-1].body["requests"][0]["outputDimensionality"] == 3
    vector = result.data[0].embedding
    truncated = gemini_vector("x", 8)[:3]
    norm = sum(v * v for v in truncated) ** 0.5
    assert vector == pytest.approx([v / norm for v in truncated], rel=1e-6)
    assert sum(v * v for v in vector) == pytest.approx(1.0, rel=1e-6)


async def test_gemini_refuses_token_arrays_and_unknown_fields(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await setup.sdk.embed(model="gem-emb", input=[[1, 2, 3]])
    assert "token arrays" in caught.value.message
    async with httpx.AsyncClient(base_url=setup.base) as http:
        body = {"model": "gem-emb", "input": "x", "priority": 3}
        refused = await http.post("/v1/embeddings", json=body)
        dropped = await http.post("/v1/embeddings", json={**body, "model": "gem-emb-drop"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "priority"
    assert dropped.status_code == 200
    assert setup.gemini.requests[-1].body["requests"][0].keys() == {"model", "content"}


async def test_a_failed_gemini_batch_fails_the_request_and_cancels_the_others(
    setup: Setup,
) -> None:
    setup.gemini.embed_gate = trio.Event()  # the other batches wait, never answered
    setup.gemini.embed_errors_gate = trio.Event()
    held, arrivals = trio.open_memory_channel[Any](8)
    setup.gemini.held = held
    setup.gemini.embed_errors["poison"] = error_reply(
        429, "Resource has been exhausted", "RESOURCE_EXHAUSTED", retry_after="12"
    )
    texts = [f"t{i}" for i in range(250)]
    texts[150] = "poison"  # in the second batch
    outcome: list[httpx.Response] = []

    async def post() -> None:
        async with httpx.AsyncClient(base_url=setup.base) as http:
            outcome.append(
                await http.post("/v1/embeddings", json={"model": "gem-emb", "input": texts})
            )

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            records = [await arrivals.receive() for _ in range(2)]  # the others are held
            setup.gemini.embed_errors_gate.set()  # now the poisoned batch fails
        response = outcome[0]
        assert response.status_code == 429
        assert response.headers["retry-after"] == "12"
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert all("poison" not in json.dumps(record.body) for record in records)
        for record in records:
            await record.gone.wait()  # the gateway hung up on each held batch


async def test_a_client_that_leaves_cancels_every_gemini_batch(setup: Setup) -> None:
    setup.gemini.embed_gate = trio.Event()
    held, arrivals = trio.open_memory_channel[Any](8)
    setup.gemini.held = held
    port = int(setup.base.rsplit(":", 1)[1])
    texts = [f"t{i}" for i in range(300)]
    with trio.fail_after(20):
        client = await RawClient.post(
            port, {"model": "gem-emb", "input": texts}, path="/v1/embeddings"
        )
        records = [await arrivals.receive() for _ in range(3)]  # every batch is in flight
        await client.drop(rst=False)
        for record in records:
            await record.gone.wait()


async def test_the_total_deadline_covers_every_gemini_batch(setup: Setup) -> None:
    setup.gemini.embed_gate = trio.Event()  # no batch is ever answered
    texts = [f"t{i}" for i in range(150)]
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=setup.base) as http:
            response = await http.post(
                "/v1/embeddings", json={"model": "gem-emb-slow", "input": texts}
            )
        assert response.status_code == 504
        assert response.json()["error"]["message"] == "upstream total deadline of 0.5s expired"
        assert setup.gemini.requests  # (both batches, unless the machine is very slow)
        for record in setup.gemini.requests:
            await record.gone.wait()
