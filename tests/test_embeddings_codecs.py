"""The pure parts of embeddings and completions: codecs, answer mending, the stream pipe.

Everything here runs without sockets: the codecs on bytes, the operations on
an upstream's answer as bytes, the completions pipe fed its stream split at
every byte boundary.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from feathergate.config import parse_config
from feathergate.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from feathergate.ingress.openai_completions import OPENAI_COMPLETIONS
from feathergate.ingress.openai_embeddings import OPENAI_EMBEDDINGS, EmbeddingsRequest
from feathergate.operations.completions import CompletionsPipe
from feathergate.operations.completions import passthrough as completions_passthrough
from feathergate.operations.embeddings import (
    estimate_tokens,
    from_base64,
    openai_answer,
    to_base64,
)
from feathergate.operations.embeddings import passthrough as embeddings_passthrough
from feathergate.providers.base import CallContext, Usage
from feathergate.providers.gemini.embeddings import GeminiEmbeddings
from feathergate.splice import parse_members, set_member, splice


def embeddings(body: dict[str, Any]) -> EmbeddingsRequest:
    return OPENAI_EMBEDDINGS.parse(json.dumps(body).encode(), [], b"")


def context(model: str = "gemini/gemini-embedding-001", **params: Any) -> CallContext:
    entry = {"model_name": "alias", "litellm_params": {"model": model, "api_key": "k", **params}}
    dep = parse_config({"model_list": [entry]}, {}).deployments[0]
    return CallContext("alias", dep, False, False, "chatcmpl-1", 0)


# -- the embeddings codec -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "inputs", "tokens"),
    [
        ("x", ["x"], False),
        (["a", "b"], ["a", "b"], False),
        ([5, 0, 7], [[5, 0, 7]], True),
        ([[5], [6, 7]], [[5], [6, 7]], True),
    ],
)
def test_every_input_form_becomes_a_list(raw: Any, inputs: list[Any], tokens: bool) -> None:
    request = embeddings({"model": "m", "input": raw})
    assert (request.inputs, request.tokens) == (inputs, tokens)
    assert request.size == len(json.dumps({"model": "m", "input": raw}))
    assert (request.encoding, request.dimensions) == ("float", None)
    assert not request.stream
    assert not request.include_usage
    assert not request.json_mode


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": [1, -2]}, "input"),
        ({"model": "m", "input": [1, True]}, "input"),
        ({"model": "m", "input": [[1], "a"]}, "input"),
        ({"model": "m", "input": [1.5]}, "input"),
        ({"model": "m", "input": {"text": "a"}}, "input"),
        ({"model": "m", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": "m", "input": "x", "user": 5}, "user"),
        ({"model": "", "input": "x"}, "model"),
    ],
)
def test_what_openai_refuses_is_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        embeddings(body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "raw", [b"[1]", b"{", b"\xff", b'{"model": "m"} x', b'{"input": ' + b"[" * 100_000]
)
def test_a_body_that_is_not_one_json_object_is_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        OPENAI_EMBEDDINGS.parse(raw, [], b"")
    with pytest.raises(InvalidRequest):
        OPENAI_COMPLETIONS.parse(raw, [], b"")


def test_null_encoding_means_float() -> None:
    assert embeddings({"model": "m", "input": "x", "encoding_format": None}).encoding == "float"


def test_the_estimate_counts_token_arrays_exactly_and_text_by_bytes() -> None:
    assert estimate_tokens(embeddings({"model": "m", "input": [[1, 2], [3]]})) == 3
    assert estimate_tokens(embeddings({"model": "m", "input": ["abcde", "é"]})) == 2 + 1


# -- base64 -------------------------------------------------------------------------------


def test_base64_is_little_endian_float32_both_ways() -> None:
    vector = [0.5, -1.25, 3.0]
    encoded = to_base64(vector)
    assert base64.b64decode(encoded) == struct.pack("<3f", *vector)
    assert from_base64(encoded) == vector


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"abc").decode()])
def test_broken_base64_from_upstream_is_a_protocol_error(text: str) -> None:
    with pytest.raises(UpstreamProtocolError):
        from_base64(text)


def test_a_vector_that_is_not_numbers_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        to_base64(["x"])  # type: ignore[list-item]


# -- mending an OpenAI-compatible answer --------------------------------------------------


def answer_of(data: list[Any], **extra: Any) -> bytes:
    return json.dumps({"object": "list", "data": data, "model": "up", **extra}).encode()


def test_a_good_answer_is_spliced_not_reencoded() -> None:
    body = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.10]}],'
    body += b'"model":"up","usage":{"prompt_tokens":2,"total_tokens":2}}'
    answer = openai_answer(body, embeddings({"model": "m", "input": "x"}), "alias")
    assert answer.payload == body.replace(b'"up"', b'"alias"')  # 1.10 stays 1.10
    assert (answer.tokens, answer.headers) == (Usage(2, 0), ())


def test_a_missing_index_is_filled_in_and_a_missing_model_added() -> None:
    body = json.dumps({"data": [{"embedding": [1.0]}, {"embedding": [2.0]}]}).encode()
    answer = openai_answer(body, embeddings({"model": "m", "input": ["a", "b"]}), "alias")
    data = json.loads(answer.payload)
    assert [d["index"] for d in data["data"]] == [0, 1]
    assert data["model"] == "alias"
    assert answer.headers == ((b"x-feathergate-usage", b"estimated"),)


def test_base64_from_upstream_becomes_floats_when_floats_were_asked() -> None:
    body = answer_of([{"index": 0, "embedding": to_base64([0.5])}], usage={"prompt_tokens": 1})
    answer = openai_answer(body, embeddings({"model": "m", "input": "x"}), "a")
    assert json.loads(answer.payload)["data"][0]["embedding"] == [0.5]
    assert answer.tokens == Usage(1, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        answer_of([]),
        json.dumps({"data": "x"}).encode(),
        answer_of([{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]),
        answer_of([{"index": 0, "embedding": [1.0]}, 5]),
        answer_of([{"index": 1, "embedding": [1.0]}, {"index": "0", "embedding": [1.0]}]),
        answer_of([{"index": 0, "embedding": 5}, {"index": 1, "embedding": [1.0]}]),
    ],
)
def test_answers_that_break_the_contract_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        openai_answer(body, embeddings({"model": "m", "input": ["a", "b"]}), "alias")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model" : "up", "a": [1.50, "\\u00e9"], "model":"again"}',  # ASCII: cut from bytes
        '{"model": "up", "a": ["é", 1.50]}'.encode(),  # not ASCII: from the text
    ],
)
def test_splice_replaces_only_the_value_from_bytes_or_text(raw: bytes) -> None:
    members = parse_members(raw.decode(), "model", raw)
    assert (members.source is not None) == raw.isascii()
    expected = raw.replace(b'"up"', b'"alias"').replace(b'"again"', b'"alias"')
    assert splice(members, "alias") == expected
    assert set_member(members, "model", "alias") == expected
    plain = parse_members('{"x": "é"}', "model", '{"x": "é"}'.encode())
    assert json.loads(set_member(plain, "model", "a")) == {"model": "a", "x": "é"}


def test_set_member_adds_a_missing_key_first() -> None:
    assert set_member(parse_members("{}", "model"), "model", "a") == b'{"model":"a"}'
    members = parse_members('{"x": 1}', "model")
    assert json.loads(set_member(members, "model", "a")) == {"model": "a", "x": 1}


# -- Gemini --------------------------------------------------------------------------------


def test_gemini_request_cuts_at_100_and_keeps_the_deployment_headers() -> None:
    ctx = context(extra_headers={"X-Team": "a"})
    requests = GeminiEmbeddings().build_requests(
        embeddings({"model": "m", "input": [f"t{i}" for i in range(201)]}), ctx
    )
    assert [len(json.loads(r.content)["requests"]) for r in requests] == [100, 100, 1]
    assert dict(requests[0].headers)["x-team"] == "a"
    assert requests[0].url.endswith("/v1beta/models/gemini-embedding-001:batchEmbedContents")


def test_one_batch_is_also_a_plain_request() -> None:
    operation, ctx = GeminiEmbeddings(), context()
    request = embeddings({"model": "m", "input": ["a", "b"]})
    sent = operation.build_request(request, ctx)
    assert len(json.loads(sent.content)["requests"]) == 2
    body = json.dumps({"embeddings": [{"values": [3.0, 4.0]}, {"values": [0.0, 0.0]}]})
    answer = json.loads(operation.parse_response(body.encode(), request, ctx).payload)
    assert [d["embedding"] for d in answer["data"]] == [[3.0, 4.0], [0.0, 0.0]]
    with pytest.raises(InvalidRequest):
        operation.stream(request, ctx)
    assert isinstance(operation.map_error(429, {}, b"{}"), UpstreamStatusError)


def test_gemini_usage_metadata_wins_over_the_estimate() -> None:
    operation, ctx = GeminiEmbeddings(), context()
    request = embeddings({"model": "m", "input": ["a"], "dimensions": 2})
    body = {"embeddings": [{"values": [0.0, 0.0]}], "usageMetadata": {"promptTokenCount": 9}}
    answer = operation.merge([json.dumps(body).encode()], request, ctx)
    assert (answer.tokens, answer.headers) == (Usage(9, 0), ())
    assert json.loads(answer.payload)["data"][0]["embedding"] == [0.0, 0.0]  # no 0/0


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        json.dumps({"embeddings": []}).encode(),
        json.dumps({"embeddings": [{"value": [1.0]}]}).encode(),
        json.dumps({"embeddings": [{"values": ["x"]}]}).encode(),
    ],
)
def test_gemini_answers_that_do_not_fit_are_protocol_errors(body: bytes) -> None:
    request = embeddings({"model": "m", "input": ["a"], "dimensions": 1})
    with pytest.raises(UpstreamProtocolError):
        GeminiEmbeddings().merge([body], request, context())


def test_gemini_extension_fields_must_be_strings() -> None:
    request = embeddings({"model": "m", "input": "a", "task_type": 5})
    with pytest.raises(InvalidRequest) as caught:
        GeminiEmbeddings().build_requests(request, context())
    assert caught.value.param == "task_type"


# -- the completions stream pipe ----------------------------------------------------------

STREAM = (
    b'data: {"id":"c","object":"text_completion","model":"up",'
    b'"choices":[{"text":"Hel\\u00e9","index":0,"finish_reason":null}]}\r\n\r\n'
    b": keep-alive\n\n"
    b'data: {"id":"c","model":"up","choices":[{"text":"","index":0,"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c","model":"up","choices":[],"usage":{"prompt_tokens":1,"total_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_pipe_gives_the_same_bytes_however_the_stream_is_split(include_usage: bool) -> None:
    whole = CompletionsPipe("alias", include_usage)
    expected = whole.feed(STREAM) + whole.finish()
    assert expected.count(b'"model":"alias"') == 2 + include_usage
    assert expected.endswith(b"data: [DONE]\n\n")
    assert whole.tokens == Usage(1, 0)  # completion_tokens absent from this usage
    for cut in range(1, len(STREAM)):
        pipe = CompletionsPipe("alias", include_usage)
        assert pipe.feed(STREAM[:cut]) + pipe.feed(STREAM[cut:]) + pipe.finish() == expected


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"data: {not json\n\n", UpstreamProtocolError),
        (b"data: [1]\n\n", UpstreamProtocolError),
        (b'data: {"error": {"message": "boom", "code": 503}}\n\n', UpstreamStatusError),
        (b'data: {"error": "boom"}\n\n', UpstreamStatusError),
        (b'data: {"choices":[{"text":"a","finish_reason":null}]}\n\n', UpstreamProtocolError),
    ],
)
def test_the_pipe_raises_on_errors_and_cut_streams(stream: bytes, error: type[Exception]) -> None:
    def run() -> bytes:
        pipe = CompletionsPipe("alias", False)
        return pipe.feed(stream) + pipe.finish()

    with pytest.raises(error):
        run()


def test_events_after_done_are_ignored() -> None:
    pipe = CompletionsPipe("alias", False)
    assert pipe.feed(b'data: [DONE]\n\ndata: {"x": 1}\n\n') == b""
    assert pipe.finish() == b"data: [DONE]\n\n"


# -- the passthroughs' upstream headers ---------------------------------------------------


@pytest.mark.parametrize(
    ("make", "ingress", "body"),
    [
        (embeddings_passthrough, OPENAI_EMBEDDINGS, {"model": "alias", "input": "hi"}),
        (completions_passthrough, OPENAI_COMPLETIONS, {"model": "alias", "prompt": "hi"}),
    ],
    ids=["embeddings", "completions"],
)
def test_extra_headers_win_once_over_the_passthroughs_own(
    make: Any, ingress: Any, body: dict[str, Any]
) -> None:
    # As on the chat route (providers/outgoing.request_headers): one header of
    # each name, the deployment's value when it sets one.
    extra = {"Authorization": "Bearer from-config", "X-Team": "a"}
    ctx = context("openai/text-model", extra_headers=extra)
    request = make("openai").build_request(ingress.parse(json.dumps(body).encode(), [], b""), ctx)
    names = [name.lower() for name, _ in request.headers]
    assert sorted(names) == ["authorization", "content-type", "x-team"]
    assert dict(request.headers)["authorization"] == "Bearer from-config"
