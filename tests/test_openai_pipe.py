"""The OpenAI passthrough's byte pipe: the same stream as the general pipe, less the re-encoding.

Every stream is fed whole, split at every byte, and byte by byte, and what
comes out is compared with :class:`ChatPipe` (decode, translate, encode): the
same events, parsed. Where the fast path applies, the output must also be
the upstream's own bytes with only the top-level ``model`` replaced.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from feathergate.config import parse_config
from feathergate.errors import GatewayError, UpstreamProtocolError, UpstreamStatusError
from feathergate.operations.chat import ChatPipe
from feathergate.providers import get_provider
from feathergate.providers.base import CallContext
from feathergate.providers.openai.pipe import OpenAIPassthroughPipe

ALIAS = "my-alias"


def ctx(*, include_usage: bool = False, alias: str = ALIAS) -> CallContext:
    params = {"model": "openai/up-model", "api_key": "sk-x"}
    config = parse_config({"model_list": [{"model_name": alias, "litellm_params": params}]}, {})
    return CallContext(alias, config.deployments[0], True, include_usage, "chatcmpl-x", 1)


def chunk(content: str | None = None, *, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def events(out: bytes) -> list[Any]:
    """The ``data:`` payloads of an encoded stream, parsed (``[DONE]`` kept as text)."""
    found = []
    for block in out.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: "), block
            assert b"\n" not in block, block
            payload = block[6:]
            found.append(payload.decode() if payload == b"[DONE]" else json.loads(payload))
    return found


def run(pipe: Any, pieces: list[bytes]) -> bytes:
    return b"".join(pipe.feed(p) for p in pieces) + pipe.finish()


def splits(stream: bytes) -> list[list[bytes]]:
    whole = [[stream]]
    halves = [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    return [*whole, *halves, [stream[i : i + 1] for i in range(len(stream))]]


def general(stream: bytes, c: CallContext) -> bytes:
    return run(ChatPipe(get_provider("openai"), c), [stream])


def assert_same_as_general(stream: bytes, c: CallContext | None = None) -> bytes:
    c = c or ctx()
    expected = events(general(stream, c))
    first = None
    for pieces in splits(stream):
        out = run(OpenAIPassthroughPipe(c), pieces)
        assert events(out) == expected, pieces
        first = out if first is None else first
        assert out == first  # the split changes nothing, not even a byte
    assert first is not None
    return first


STREAM = (
    chunk("", role="x")
    + chunk("Hello")
    + chunk(' wörld "model" \\ \u2028')
    + chunk(None, finish="stop")
    + b"data: [DONE]\n\n"
)


def test_the_common_stream_is_the_upstreams_bytes_with_the_alias() -> None:
    out = assert_same_as_general(STREAM)
    assert out == STREAM.replace(b'"model":"up-model"', b'"model":"my-alias"')


def test_whitespace_variants_keep_their_spacing() -> None:
    spaced = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }
    stream = b"data: " + json.dumps(spaced).encode() + b"\n\n"
    stream += b'data: { "id" : "c" ,\t"model":  "up-model", "choices":[{"delta":{}}]}\n\n'
    finish = b'data:  { "id":"c", "model" : "up-model", "choices":[{"index":0,"delta":{},'
    stream += finish + b'"finish_reason":"stop"}]}\n\n'
    out = assert_same_as_general(stream + b"data: [DONE]\n\n")
    assert b'"model": "my-alias", "choices"' in out  # json.dumps's default spacing, kept


@pytest.mark.parametrize(
    "payload",
    [
        # escapes before model: the prefix is not plain, so the chunk is re-encoded
        b'{"id":"a\\"b","model":"up-model","choices":[{"delta":{"content":"x"}}]}',
        # model after choices, and a "model" key inside the content
        b'{"choices":[{"delta":{"content":"\\"model\\":\\"up-model\\""}}],"model":"up-model"}',
        # a nested object first: its "model" is not the top level's
        b'{"meta":{"model":"inner"},"model":"up-model","choices":[{"delta":{"content":"x"}}]}',
        # the key written twice: the last one counts
        b'{"model":"a","model":"up-model","choices":[{"delta":{"content":"x"}}]}',
        b'{"model":"up-model","model":"up-model","choices":[{"delta":{"content":"x"}}]}',
        # escaped key spelling
        b'{"mod\\u0065l":"up-model","choices":[{"delta":{"content":"x"}}]}',
        # no model at all: the alias is added
        b'{"id":"c","choices":[{"delta":{"content":"x"}}]}',
        # model is not a string
        b'{"id":"c","model":null,"choices":[{"delta":{"content":"x"}}]}',
        # an escape inside model's value
        b'{"id":"c","model":"up\\/model","choices":[{"delta":{"content":"x"}}]}',
    ],
)
def test_chunks_off_the_fast_pattern_are_re_encoded_correctly(payload: bytes) -> None:
    stream = b"data: " + payload + b"\n\n" + chunk(None, finish="stop")
    out = assert_same_as_general(stream)
    first = events(out)[0]
    assert first["model"] == ALIAS
    assert list(first).count("model") == 1


def test_other_event_shapes_take_the_general_path_one_event_at_a_time() -> None:
    stream = (
        b": keep-alive\n\n"
        + b"event: message\n"
        + chunk("a")
        + b"id: 7\n"
        + chunk("b")
        + b"data:"
        + chunk("c")[len(b"data: ") :]
        + b"\n\n\n"
        + chunk("d")
        + chunk(None, finish="stop")
    )
    out = assert_same_as_general(stream)
    contents = [e["choices"][0]["delta"].get("content") for e in events(out) if e != "[DONE]"]
    assert contents == ["a", "b", "c", "d", None]


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b""])
def test_crlf_and_bom_streams_take_the_general_path(prefix: bytes) -> None:
    stream = prefix + (chunk("a") + chunk("b") + chunk(None, finish="stop")).replace(b"\n", b"\r\n")
    out = assert_same_as_general(stream)
    assert len(events(out)) == 4


def test_a_bom_alone_then_lf_events() -> None:
    out = assert_same_as_general(b"\xef\xbb\xbf" + chunk("a") + chunk(None, finish="stop"))
    assert events(out)[0]["choices"][0]["delta"]["content"] == "a"


def test_usage_only_chunk_is_dropped_unless_asked_for_and_counted_either_way() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    body = {"id": "c", "object": "chat.completion.chunk", "model": "up-model", "choices": []}
    usage_chunk = b"data: " + json.dumps({**body, "usage": usage}).encode() + b"\n\n"
    stream = chunk("a", usage=None) + chunk(None, finish="stop", usage=None) + usage_chunk
    stream += b"data: [DONE]\n\n"

    dropped = assert_same_as_general(stream, ctx(include_usage=False))
    assert all(e == "[DONE]" or e["choices"] for e in events(dropped))
    pipe = OpenAIPassthroughPipe(ctx(include_usage=False))
    run(pipe, [stream])
    assert pipe.tokens is None  # as the general pipe: a dropped chunk counts nothing

    kept = assert_same_as_general(stream, ctx(include_usage=True))
    last = events(kept)[-2]
    assert last["usage"] == usage
    assert last["model"] == ALIAS
    assert last["choices"] == []
    pipe = OpenAIPassthroughPipe(ctx(include_usage=True))
    run(pipe, [stream])
    assert pipe.tokens is not None
    assert pipe.tokens.total == 7


def test_empty_choices_chunk_without_usage_is_dropped() -> None:
    azure_first = b'data: {"id":"","object":"","created":0,"model":"","choices":[]}\n\n'
    out = assert_same_as_general(azure_first + chunk("a") + chunk(None, finish="stop"))
    assert len(events(out)) == 3


def test_an_alias_that_needs_escaping() -> None:
    c = ctx(alias='we"ird/ålias')
    out = assert_same_as_general(chunk("a") + chunk(None, finish="stop"), c)
    assert events(out)[0]["model"] == 'we"ird/ålias'


def test_events_after_done_are_ignored() -> None:
    stream = chunk("a") + b"data: [DONE]\n\n" + chunk("late")
    out = assert_same_as_general(stream)
    assert len(events(out)) == 2


def test_an_error_event_raises_with_the_chunks_before_it_ahead() -> None:
    error = b'data: {"error":{"message":"boom","type":"server_error","code":null}}\n\n'
    for pieces in ([chunk("a") + error], [chunk("a"), error]):
        pipe = OpenAIPassthroughPipe(ctx())
        out = b"".join(pipe.feed(piece) for piece in pieces[:-1])
        with pytest.raises(UpstreamStatusError) as info:
            pipe.feed(pieces[-1])
        assert "boom" in info.value.message
        sent = out + info.value.ahead
        assert events(sent)[0]["choices"][0]["delta"]["content"] == "a"


def test_the_general_pipe_also_sends_what_came_before_an_error() -> None:
    error = b'data: {"error":{"message":"boom","type":"server_error","code":null}}\n\n'
    pipe = ChatPipe(get_provider("openai"), ctx())
    with pytest.raises(GatewayError) as info:
        pipe.feed(chunk("a") + error)
    assert events(info.value.ahead)[0]["choices"][0]["delta"]["content"] == "a"


@pytest.mark.parametrize(
    "stream",
    [
        chunk("a"),  # cut short: no finish, no [DONE]
        chunk("a") + b"data: {not json}\n\n",
        chunk("a") + b"data: [1, 2]\n\n",
        chunk("a") + b'data: {"model":"m","choices":[1]}\n\n',
    ],
)
def test_broken_streams_fail_as_the_general_pipe_does(stream: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        general(stream, ctx())
    for pieces in splits(stream):
        with pytest.raises(UpstreamProtocolError):
            run(OpenAIPassthroughPipe(ctx()), pieces)


def test_an_unended_last_event_counts_at_the_end() -> None:
    stream = chunk("a") + chunk(None, finish="stop").rstrip(b"\n")
    out = assert_same_as_general(stream)
    assert events(out)[-2]["choices"][0]["finish_reason"] == "stop"


def test_a_long_event_falls_back_and_stays_correct() -> None:
    big = chunk("x" * 300_000)
    pipe = OpenAIPassthroughPipe(ctx())
    pieces = [big[i : i + 16384] for i in range(0, len(big), 16384)]
    out = run(pipe, [*pieces, chunk(None, finish="stop")])
    assert events(out)[0]["choices"][0]["delta"]["content"] == "x" * 300_000


def test_a_completion_keeps_the_upstreams_bytes_but_the_model() -> None:
    body = (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"caf\\u00e9 \\"model\\""},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,'
        b'"total_tokens":3,"cost":1.0e-5}}\n'
    )
    relayed = get_provider("openai").relay_response(body, ctx())
    assert relayed is not None
    payload, completion = relayed
    assert payload == body.replace(b'"model":"up-model"', b'"model":"my-alias"')
    assert completion["model"] == ALIAS
    assert completion["usage"]["total_tokens"] == 3


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"a\\"b","model":"up-model","choices":[]}',
        b'{"choices":[],"model":"up-model"}',
        b'{"model":"up-model","model":"up-model"}',
        b'{"choices":[]}',
    ],
)
def test_a_completion_off_the_fast_pattern_is_re_encoded(body: bytes) -> None:
    relayed = get_provider("openai").relay_response(body, ctx())
    assert relayed is not None
    payload, _ = relayed
    assert payload == json.dumps({**json.loads(body), "model": ALIAS}).encode()


@pytest.mark.parametrize("body", [b"not json", b"[1]"])
def test_a_completion_that_is_no_object_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        get_provider("openai").relay_response(body, ctx())


def test_usage_the_gateway_asked_for_is_counted_but_not_sent() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    body = {"id": "c", "object": "chat.completion.chunk", "model": "up-model", "choices": []}
    usage_chunk = b"data: " + json.dumps({**body, "usage": usage}).encode() + b"\n\n"
    stream = chunk("a") + chunk(None, finish="stop") + usage_chunk + b"data: [DONE]\n\n"
    for crlf in (False, True):  # the fast path, and the general one
        data = stream.replace(b"\n", b"\r\n") if crlf else stream
        for pieces in splits(data):
            pipe = OpenAIPassthroughPipe(ctx(include_usage=True), strip_usage=True)
            out = run(pipe, pieces)
            assert pipe.tokens is not None
            assert pipe.tokens.total == 7
            assert b'"usage"' not in out
            assert len(events(out)) == 3


def test_a_chunk_that_starts_differently_is_spliced_anew() -> None:
    # The splice remembers where the last chunk's model was; a chunk whose
    # first bytes differ (another model, id or created), or that carries a
    # second "model" after the same start, is looked at afresh.
    other = chunk("b").replace(b'"model":"up-model"', b'"model":"other-model"')
    later = chunk("c").replace(b'"created":1700000000', b'"created":1700000001')
    nested = chunk("d", extra={"model": "inner"})
    stream = chunk("a") + other + later + nested + chunk("e") + b"data: [DONE]\n\n"
    out = assert_same_as_general(stream)
    assert out.count(b'"model":"my-alias"') == 5
    assert b'"model":"inner"' in out


def test_a_second_model_spelled_with_escapes_is_re_encoded_after_a_spliced_chunk() -> None:
    # The same start as the chunk before, and a second "model" the count of
    # '"model"' does not see: the parsed value differs, so no shortcut.
    second = chunk("b")[:-3] + b',"mod\\u0065l":"leak"}\n\n'
    stream = chunk("a") + second + b"data: [DONE]\n\n"
    out = assert_same_as_general(stream)
    assert [e["model"] for e in events(out)[:2]] == [ALIAS, ALIAS]
