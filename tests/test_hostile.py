"""Hostile input: whatever a client sends, an OpenAI-shaped answer and a server that answers on.

The first half runs against one gateway served for the whole module (three
strict fakes behind it, a master key in front): every case of the review's
§5 table, then a hypothesis fuzz of the chat body. Neither may ever see a
500 of the gateway's own making, or an error logged.

The second half is per test: a malformed upstream chunk mid-stream, a
client that leaves while its large body is translated, and the last
resort, driven by a provider that fails on purpose (a fake implementing the
provider interface, handed to the gateway's registry seam).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from feathergate.app import build_quart, create_app
from feathergate.clientjson import MAX_DEPTH
from feathergate.config import Config
from feathergate.errors import GatewayError
from feathergate.gateway import Gateway, Runtime
from feathergate.operations.chat import ChatOperation
from feathergate.providers.anthropic import passthrough as passthrough_module
from feathergate.providers.base import CallContext, Chunk, UpstreamRequest
from feathergate.providers.gemini import count_tokens as gemini_count_tokens_module
from feathergate.providers.gemini import embeddings as gemini_embeddings_module
from feathergate.providers.openai import OpenAIProvider
from feathergate.sse import SSEEvent
from feathergate.typing import ASGIApp
from tests.conftest import gateway_config, run_gateway
from tests.fakes import anthropic as fa
from tests.fakes import gemini as fg
from tests.fakes import openai as fo
from tests.support.rawclient import RawClient
from tests.support.servers import serve_asgi
from tests.support.threaded import served_in_thread

MASTER = "sk-master-hostile-0123456789"
AUTH = {"authorization": f"Bearer {MASTER}"}
HI = {"role": "user", "content": "hi"}
MODELS = ("gpt", "claude", "gemini")


# -- one gateway for the module -----------------------------------------------------------


@dataclass
class Served:
    base: str
    openai: fo.FakeOpenAI
    anthropic: fa.FakeAnthropic
    gemini: fg.FakeGemini


def _models(openai_url: str, anthropic_url: str, gemini_url: str) -> list[dict[str, Any]]:
    def entry(name: str, model: str, base: str, key: str) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {"model": model, "api_base": base, "api_key": key},
        }

    return [
        entry("gpt", "openai/gpt-real", f"{openai_url}/v1", "sk-upstream-secret"),
        entry("claude", "anthropic/claude-fake-1", anthropic_url, "sk-test"),
        entry("gemini", "gemini/gemini-2.5-flash", gemini_url, "test-key"),
        entry("azure/*", "azure/*", openai_url, "sk-upstream-secret"),
    ]


@asynccontextmanager
async def _everything() -> AsyncIterator[Served]:
    openai, anthropic, gemini = fo.FakeOpenAI(), fa.FakeAnthropic(), fg.FakeGemini()
    async with (
        serve_asgi(openai) as openai_url,
        serve_asgi(anthropic) as anthropic_url,
        serve_asgi(gemini) as gemini_url,
    ):
        models = _models(openai_url, anthropic_url, gemini_url)
        config = gateway_config(models, general_settings={"master_key": MASTER})
        # The gateway under plain Hypercorn: feathergate's own serve() wants the
        # main thread for its signal handlers. Hypercorn's error log stays on,
        # so an "Error in ASGI Framework" would show in the test's records.
        app = create_app(config)
        async with serve_asgi(app, errorlog=logging.getLogger("hypercorn.error")) as base:
            yield Served(base, openai, anthropic, gemini)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_in_thread(_everything) as value:
        yield value


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=60) as client:
        yield client


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert isinstance(error["type"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    return cast(dict[str, Any], error)


def assert_still_answers(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": [HI]}, headers=AUTH
    )
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- the review's §5 table ----------------------------------------------------------------


def chat(model: str, messages: list[Any], **extra: Any) -> bytes:
    return json.dumps({"model": model, "messages": messages, **extra}).encode()


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def tool_turns(arguments: str, result: str = "done") -> list[Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return [
        HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def ref_chain(links: int) -> dict[str, Any]:
    """The review's schema: each definition uses the next one twice (2 KB at 20 links)."""
    defs: dict[str, Any] = {
        f"d{i}": {
            "type": "object",
            "properties": {
                "a": {"$ref": f"#/$defs/d{i + 1}"},
                "b": {"$ref": f"#/$defs/d{i + 1}"},
            },
        }
        for i in range(links)
    }
    defs[f"d{links}"] = {"type": "string"}
    return {"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs}


ANY = object()  # the param is not checked


@dataclass(frozen=True)
class Hostile:
    id: str
    body: bytes
    status: int = 400
    param: Any = ANY
    path: str = "/v1/chat/completions"
    method: str = "POST"
    auth: bytes = f"Bearer {MASTER}".encode()
    within: float | None = None  # seconds: a generous bound on work that used to be unbounded


DEEP_ARGUMENTS = "[" * 100_000
TOO_DEEP = json.dumps(nested(MAX_DEPTH + 5))  # parses, but deeper than the cap
ARGS_PARAM = "messages[1].tool_calls[0].function.arguments"
LONE = "\ud800"

CASES = [
    Hostile(
        "body-10000-levels",
        b'{"model":"gpt","messages":[' + b"[" * 10_000 + b"]" * 10_000 + b"]}",
        param=None,
    ),
    Hostile("body-deeper-than-cap", chat("gpt", [{**HI, "content": nested(MAX_DEPTH + 5)}]),
            param="messages[0]"),
    *(
        Hostile(f"tool-arguments-unparseably-deep-{m}", chat(m, tool_turns(DEEP_ARGUMENTS)),
                param=ARGS_PARAM)
        for m in ("claude", "gemini")
    ),
    *(
        Hostile(f"tool-arguments-deeper-than-cap-{m}", chat(m, tool_turns(TOO_DEEP)),
                param=ARGS_PARAM)
        for m in ("claude", "gemini")
    ),
    Hostile("tool-result-unparseably-deep-gemini",
            chat("gemini", tool_turns("{}", DEEP_ARGUMENTS)), param="messages[2].content"),
    Hostile("tool-result-deeper-than-cap-gemini",
            chat("gemini", tool_turns("{}", TOO_DEEP)), param="messages[2].content"),
    *(
        Hostile(f"lone-surrogate-{m}", chat(m, [{**HI, "content": f"a{LONE}b"}]),
                param="messages[0].content")
        for m in ("claude", "gemini")
    ),
    *(
        Hostile(
            f"lone-surrogate-in-a-schema-key-{m}",
            chat(m, [HI], tools=[{"type": "function", "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {LONE: {"type": "string"}}},
            }}]),
            param="tools[0].function.parameters.properties.\ufffd",
        )
        for m in ("claude", "gemini")
    ),
    Hostile("lone-surrogate-gemini-embeddings",
            json.dumps({"model": "gemini", "input": ["ok", f"a{LONE}b"]}).encode(),
            param="input[1]", path="/v1/embeddings"),
    # The OpenAI passthrough escapes it (\ud800) and lets the upstream judge.
    Hostile("lone-surrogate-openai", chat("gpt", [{**HI, "content": LONE}]), status=200),
    # Quoted into the Azure path, it reaches the upstream.
    Hostile("non-latin-1-model-under-azure-wildcard", chat("azure/日本", [HI]), status=200),
    Hostile("gemini-ref-chain-20-links",
            chat("gemini", [HI], tools=[{"type": "function", "function": {
                "name": "f", "parameters": ref_chain(20)}}]),
            param="tools[0].function.parameters", within=10.0),
    *(
        Hostile(f"content-is-a-number-{m}", chat(m, [{**HI, "content": 5}]))
        for m in ("claude", "gemini")
    ),
    Hostile("invalid-utf-8", b'{"model":"gpt","messages":[{"role":"user","content":"\xff\xfe"}]}',
            param=None),
    Hostile("nan", b'{"model":"gpt","messages":[{"role":"user","content":"hi"}],"seed":NaN}',
            param=None),
    Hostile("number-past-infinity",
            b'{"model":"gpt","messages":[{"role":"user","content":"hi"}],"seed":1e400}',
            param="seed"),
    Hostile("body-not-an-object", b"[]", param=None),
    Hostile("too-many-messages", chat("gpt", [HI] * 100_001), param="messages"),
    Hostile("non-ascii-master-key-chat", chat("gpt", [HI]), status=401, auth=b"Bearer \xff\xfe"),
    Hostile("non-ascii-master-key-models", b"", status=401, path="/v1/models", method="GET",
            auth=b"Bearer \xff\xfe"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_gets_an_openai_shaped_answer_and_the_server_answers_on(
    served: Served, http: httpx.Client, case: Hostile, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"authorization": case.auth, "content-type": b"application/json"}
    response = http.request(case.method, case.path, content=case.body, headers=headers)
    assert response.status_code == case.status, response.text
    if case.status >= 400:
        error = assert_error_shape(response)
        if case.param is not ANY:
            assert error["param"] == case.param, error
    else:
        assert response.json()["object"] == "chat.completion"
    if case.within is not None:
        assert response.elapsed.total_seconds() < case.within
    assert_still_answers(http)
    assert errors_logged(caplog) == []


def test_an_azure_deployment_name_is_one_quoted_path_segment(
    served: Served, http: httpx.Client
) -> None:
    for model in ("azure/日本", "azure/../../admin"):
        response = http.post("/v1/chat/completions", content=chat(model, [HI]), headers=AUTH)
        assert response.status_code == 200
    # Hypercorn decodes the path it reports: one segment, with the text intact.
    paths = [r.path for r in served.openai.requests[-2:]]
    assert paths == [
        "/openai/deployments/日本/chat/completions",
        "/openai/deployments/../../admin/chat/completions",
    ]


@pytest.mark.parametrize("model", MODELS)
def test_a_large_body_is_translated_off_the_loop_and_arrives_whole(
    served: Served, http: httpx.Client, model: str
) -> None:
    # Over 1 MiB: parsed, translated and encoded in pieces in a worker thread.
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} é"}
        for i in range(40_001)
    ]
    content = chat(model, turns)
    assert len(content) > 1024 * 1024
    response = http.post("/v1/chat/completions", content=content, headers=AUTH)
    assert response.status_code == 200, response.text
    if model == "gpt":
        sent = served.openai.requests[-1].body["messages"]
    elif model == "claude":
        sent = served.anthropic.requests[-1].body["messages"]
    else:
        sent = served.gemini.requests[-1].body["contents"]
    assert len(sent) == len(turns)
    assert json.dumps(sent[-1], ensure_ascii=False).count("turn 40000 é") == 1


# -- a fuzz of the chat body --------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec=None) | st.sampled_from(["\ud800", "\udfff", "\x00", "\n"]),
    max_size=12,
)
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | _text
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_image = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries(
            {"url": st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "data:,x", "ftp://x"])}
        ),
    }
)
_part = st.fixed_dictionaries({"type": st.just("text"), "text": _text}) | _image | _json
_content = st.none() | _text | st.lists(_part, max_size=3) | _json
_function = st.fixed_dictionaries(
    {"name": _text | st.just("f"), "arguments": _text | st.just('{"a": 1}') | _json}
)
_call = (
    st.fixed_dictionaries(
        {"id": _text | st.just("call_1"), "type": st.just("function"), "function": _function}
    )
    | _json
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "bot"]),
        "content": _content,
    },
    optional={
        "tool_calls": st.lists(_call, max_size=2) | _json,
        "tool_call_id": _text | st.just("call_1"),
        "name": _text,
    },
)
_tool = (
    st.fixed_dictionaries(
        {
            "type": st.just("function") | _text,
            "function": st.fixed_dictionaries(
                {"name": _text | st.just("f")},
                optional={"parameters": _json | st.just({"type": "object"}), "description": _text},
            ),
        }
    )
    | _json
)
_number = st.none() | st.integers(-5, 5000) | st.floats(-3, 3) | _json
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "messages": st.lists(_message, max_size=4)},
    optional={
        "stream": st.booleans() | _json,
        "stream_options": st.just({"include_usage": True}) | _json,
        "temperature": _number,
        "top_p": _number,
        "max_tokens": _number,
        "max_completion_tokens": _number,
        "n": _number,
        "stop": _text | st.lists(_text, max_size=6) | _json,
        "tools": st.lists(_tool, max_size=2) | _json,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | _json,
        "response_format": st.just({"type": "json_object"}) | _json,
        "reasoning_effort": st.sampled_from(["low", "high", "bogus"]) | _json,
        "logit_bias": _json,
        "user": _text,
        "seed": _number,
        "metadata": _json,
    },
)


def check_answer(response: httpx.Response, stream: bool) -> None:
    """OpenAI-shaped, and never a failure of the gateway's own making."""
    status = response.status_code
    if status != 200:
        error = assert_error_shape(response)
        assert error["code"] != "internal_error", error
        if status >= 500:  # only the upstream's own failure may be a 5xx
            assert "x-feathergate-model-id" in response.headers, error
        else:
            assert 400 <= status < 500
        return
    if not stream:
        body = response.json()
        assert body["object"] == "chat.completion"
        assert isinstance(body["choices"], list)
        return
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events
    for data in events[:-1]:
        assert json.loads(data)["object"] == "chat.completion.chunk"
    last = events[-1]
    assert last == "[DONE]" or set(json.loads(last)) == {"error", "request_id"}


@settings(
    max_examples=int(os.environ.get("FEATHERGATE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),  # CI runs the same examples every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=chat_bodies)
def test_any_chat_body_gets_an_openai_shaped_answer(
    served: Served, http: httpx.Client, body: dict[str, Any]
) -> None:
    content = json.dumps(body).encode()  # lone surrogates go out as \ud800 escapes
    response = http.post("/v1/chat/completions", content=content, headers=AUTH)
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics: what the fuzz reached
    check_answer(response, body.get("stream") is True)


def test_the_server_answers_after_the_fuzz(served: Served, http: httpx.Client) -> None:
    assert_still_answers(http)


# -- a malformed upstream chunk mid-stream ------------------------------------------------


def _openai_chunk(delta: dict[str, Any]) -> bytes:
    chunk = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


@asynccontextmanager
async def _garbling_upstream(provider: str, gate: trio.Event) -> AsyncIterator[dict[str, Any]]:
    """An upstream whose stream turns to garbage once ``gate`` is set; the deployment for it."""
    if provider == "openai":
        fake = fo.FakeOpenAI()
        raw = [
            _openai_chunk({"role": "assistant", "content": ""}) + _openai_chunk({"content": "Hi"}),
            b'data: {"choices":[1]}\n\n',  # review §5: choices that are not objects
            b"data: [DONE]\n\n",
        ]
        fake.script(fo.Reply(raw=raw, after_chunks=1, gate=gate))
        async with serve_asgi(fake) as url:
            yield {"model": "openai/up", "api_base": f"{url}/v1", "api_key": fake.api_key}
    else:
        garbled = {"candidates": [{"logprobsResult": {"chosenCandidates": [1]}}]}
        reply = fg.text_reply("Hi", "there").chunks
        gemini = fg.FakeGemini()
        gemini.script.append(fg.Reply((reply[0], garbled, reply[1]), gate=gate, after_events=1))
        async with serve_asgi(gemini) as url:
            yield {"model": "gemini/gemini-2.5-flash", "api_base": url, "api_key": "test-key"}


def _deployment_config(params: dict[str, Any], dep_id: str = "d") -> Config:
    entry = {"model_name": "m", "litellm_params": params, "model_info": {"id": dep_id}}
    return gateway_config([entry])


def failures(metrics: str, dep_id: str) -> float:
    """What /metrics says of ``dep_id``'s 502 failures (the registry is per process)."""
    name = "feathergate_deployment_failures_total"
    labels = f'{{deployment="{dep_id}",model="m",status="502"}}'
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", metrics, re.MULTILINE)
    return float(found[1]) if found else 0.0


@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_a_malformed_chunk_mid_stream_ends_in_an_error_event_and_counts_a_failure(
    provider: str,
) -> None:
    gate = trio.Event()
    dep_id = f"garbling-{provider}"
    async with (
        _garbling_upstream(provider, gate) as params,
        run_gateway(_deployment_config(params, dep_id)) as base,
        httpx.AsyncClient(timeout=30) as client,
    ):
        before = failures((await client.get(f"{base}/metrics")).text, dep_id)
        events: list[str] = []
        body = {"model": "m", "messages": [HI], "stream": True}
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    gate.set()  # the client has its first chunk: now the garbage
        metrics = (await client.get(f"{base}/metrics")).text
    chunks, last = [json.loads(e) for e in events[:-1]], json.loads(events[-1])
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks)
    assert last["error"]["code"] == "bad_upstream_response"
    assert "[DONE]" not in events
    assert failures(metrics, dep_id) == before + 1


async def test_the_message_cap_is_a_setting() -> None:
    config = gateway_config(
        [{"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "hi"}}],
        feathergate_settings={"max_messages": 2, "shutdown_grace_period": 1},
    )
    async with run_gateway(config) as base, httpx.AsyncClient(timeout=30) as client:
        url = f"{base}/v1/chat/completions"
        assert (await client.post(url, json={"model": "m", "messages": [HI] * 2})).is_success
        response = await client.post(url, json={"model": "m", "messages": [HI] * 3})
    assert response.status_code == 400
    assert assert_error_shape(response)["param"] == "messages"


# -- a client that leaves while its large body is translated ------------------------------


async def test_a_client_leaving_during_a_threaded_translation_leaks_nothing() -> None:
    fake = fa.FakeAnthropic()
    # 1.5 MB of small messages: parsed and translated in a worker thread.
    messages = [{"role": "user", "content": f"message {i}"} for i in range(40_000)]
    body = {"model": "m", "messages": messages}
    async with serve_asgi(fake) as url:
        params = {"model": "anthropic/claude-fake-1", "api_base": url, "api_key": fake.api_key}
        config = _deployment_config(params)
        async with run_gateway(config) as base:
            port = int(base.rsplit(":", 1)[1])
            # More clients leave than there are translation threads: a slot
            # kept by an abandoned translation would stall the request after.
            for _ in range(3):
                client = await RawClient.post(port, body)
                await client.drop(rst=False)
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.post(f"{base}/v1/chat/completions", json=body)
                assert response.status_code == 200
        # The gateway has shut down: every relay has ended, and only the last
        # request ever reached the upstream.
    assert len(fake.requests) == 1


# -- the last resort ----------------------------------------------------------------------

SECRET_KEY = "sk-upstream-secret"  # what FakeOpenAI expects; it must never reach a log


class BrokenProvider(OpenAIProvider):
    """The OpenAI provider, but broken on purpose: before the call, or mid-stream."""

    def __init__(self, where: str) -> None:
        self.where = where

    def build_request(self, body: dict[str, Any], ctx: CallContext) -> UpstreamRequest:
        if self.where == "build":
            raise RuntimeError(f"broken on purpose, holding {ctx.deployment.api_key.value}")
        return super().build_request(body, ctx)

    def stream_translator(self, ctx: CallContext) -> Any:
        return _BreaksAfterOne(super().stream_translator(ctx))


class _BreaksAfterOne:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fed = 0

    def feed(self, event: SSEEvent) -> list[Chunk]:
        self.fed += 1
        if self.fed > 2:  # the role chunk and one word went out
            raise RuntimeError(f"broken mid-stream, holding {SECRET_KEY}")
        result: list[Chunk] = self.inner.feed(event)
        return result

    def finish(self) -> list[Chunk]:
        result: list[Chunk] = self.inner.finish()
        return result


@asynccontextmanager
async def _broken_gateway(where: str, fake: fo.FakeOpenAI) -> AsyncIterator[str]:
    async with serve_asgi(fake) as url:
        params = {"model": "openai/up", "api_base": f"{url}/v1", "api_key": SECRET_KEY}
        config = _deployment_config(params)
        runtime = Runtime(config)
        quart = build_quart(runtime)

        @quart.get("/v1/broken")
        async def broken() -> str:
            raise RuntimeError(f"a broken route, holding {SECRET_KEY}")

        broken_provider = BrokenProvider(where)
        gateway = Gateway(
            runtime,
            cast(ASGIApp, quart),
            operation_for=lambda _endpoint, _adapter: ChatOperation(broken_provider),
        )
        async with run_gateway(config, app=gateway) as base:
            yield base


def assert_logged_once(caplog: pytest.LogCaptureFixture, request_id: str, raised: str) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["feathergate.lastresort"]
    text = errors[0].getMessage()
    assert request_id in text
    assert "Traceback (most recent call last)" in text
    assert f"RuntimeError: {raised}, holding ***" in text
    assert SECRET_KEY not in text


def assert_internal_error(response: httpx.Response) -> str:
    assert response.status_code == 500
    error = assert_error_shape(response)
    request_id = response.headers["x-request-id"]
    assert error == {
        "message": f"internal error (request id {request_id})",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert response.headers["x-should-retry"] == "false"
    return request_id


async def test_the_last_resort_answers_a_bug_before_the_response_with_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        _broken_gateway("build", fo.FakeOpenAI()) as base,
        httpx.AsyncClient(timeout=30) as client,
    ):
        response = await client.post(
            f"{base}/v1/chat/completions", json={"model": "m", "messages": [HI]}
        )
        request_id = assert_internal_error(response)
        assert (await client.get(f"{base}/health")).status_code == 200
    assert_logged_once(caplog, request_id, "broken on purpose")


async def test_the_last_resort_ends_a_started_stream_with_an_error_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = trio.Event()
    fake = fo.FakeOpenAI()
    fake.script(fo.Reply(text="one two three", after_chunks=2, gate=gate))
    async with (
        _broken_gateway("stream", fake) as base,
        httpx.AsyncClient(timeout=30) as client,
    ):
        events: list[str] = []
        body = {"model": "m", "messages": [HI], "stream": True}
        async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    gate.set()
        assert (await client.get(f"{base}/health")).status_code == 200
    assert json.loads(events[0])["object"] == "chat.completion.chunk"
    error = json.loads(events[-1])["error"]
    found = re.fullmatch(r"internal error \(request id (\S+)\)", error["message"])
    assert found is not None
    assert error["code"] == "internal_error"
    assert error["type"] == "server_error"
    assert_logged_once(caplog, found[1], "broken mid-stream")


async def test_the_last_resort_covers_the_quart_routes_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        _broken_gateway("build", fo.FakeOpenAI()) as base,
        httpx.AsyncClient(timeout=30) as client,
    ):
        request_id = assert_internal_error(await client.get(f"{base}/v1/broken"))
        missing = await client.get(f"{base}/v1/nowhere")  # still the 404 handler's
        assert missing.status_code == 404
        assert assert_error_shape(missing)["type"] == "not_found_error"
    assert_logged_once(caplog, request_id, "a broken route")


_TOO_DEEP_FOR_PYTHON = b'{"error": ' + b"[" * 200_000


def _raise(err: Exception) -> None:  # an error mapper returns its error: raise it here
    raise err


@pytest.mark.parametrize(
    "parse",
    [
        lambda: _raise(passthrough_module._map_error(500, {}, _TOO_DEEP_FOR_PYTHON)),
        lambda: passthrough_module._json(_TOO_DEEP_FOR_PYTHON.decode()),
        lambda: passthrough_module._object(_TOO_DEEP_FOR_PYTHON),
        lambda: gemini_embeddings_module._vectors(_TOO_DEEP_FOR_PYTHON, 1),
        lambda: gemini_count_tokens_module.count_tokens("gemini").parse_response(
            _TOO_DEEP_FOR_PYTHON,
            None,
            None,  # type: ignore[arg-type]  # read after the parse
        ),
    ],
    ids=[
        "anthropic-error",
        "anthropic-event",
        "anthropic-answer",
        "gemini-embeddings",
        "gemini-count-tokens",
    ],
)
def test_an_upstream_body_nested_past_pythons_stack_is_a_gateway_error(parse: Any) -> None:
    # json.loads raises RecursionError, not ValueError, on such a body: every
    # upstream parse must turn both into the gateway's own error (a 502, or
    # the upstream's status), never a bare exception (the last resort's 500).
    with pytest.raises(GatewayError):
        parse()
