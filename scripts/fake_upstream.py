"""A fast fake OpenAI-compatible upstream for ``scripts/bench.py``.

It answers ``POST .../chat/completions`` (any prefix) with a valid OpenAI
``chat.completion`` JSON body, or, when the request says ``"stream": true``,
with an SSE stream of ``chat.completion.chunk`` events ending in
``data: [DONE]``. ``POST .../embeddings`` gets one vector per input
(``dimensions``, default 1536), as base64 float32s or as floats, whichever
``encoding_format`` asks for. ``GET`` on any path answers ``{"status":"ok"}``.
It also speaks just enough Anthropic (``POST .../v1/messages``) and Gemini
(``POST .../models/M:generateContent`` and ``:streamGenerateContent?alt=sse``,
CRLF events) for the gateway's translators to be measured the same way.

The stream's shape comes from the request, so that one fake serves every
benchmark and any gateway in front of it passes the shape through untouched:

* ``max_tokens``: the number of content tokens (default ``--tokens``);
* the model name: a suffix ``-<N>ms`` (``bench-50ms``) sends one token every
  N milliseconds; without it (``bench-fast``) every token is sent at once.
  For the soak (``scripts/soak.py``), a model named ``...-e<STATUS>``
  (``bench-e429``) answers that status with an OpenAI error body, one named
  ``...-hang`` never answers, and a stream of a model named ``...-stall``
  sends its first chunk and then nothing.

The role chunk goes out with the response headers, in the same write; token
``i`` goes out ``i * N`` ms later (scheduled against the stream's start, so
a late tick does not push the rest back); then the ``finish_reason`` chunk
and ``[DONE]``.

It is a bare ``asyncio.Protocol`` HTTP/1.1 server (keep-alive, pipelining,
``Content-Length`` request bodies, chunked responses for streams) with every
response prebuilt as far as possible, so that it costs a few microseconds per
request and is never the bottleneck of the benchmark. It prints
``READY <port>`` on stdout once it listens, and exits on SIGTERM or SIGINT.

Run it alone with ``python scripts/fake_upstream.py --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import signal
import struct
import sys
import time

_MODEL_INTERVAL = re.compile(rb"-(\d+)ms$")
_MODEL_STATUS = re.compile(rb"-e([1-5]\d\d)$")
_GEMINI_TARGET = re.compile(rb"/models/([^/:?]+):(stream)?generatecontent")
_MAX_HEAD = 64 * 1024

_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_DONE = b"data: [DONE]\n\n"
_HEALTH = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b'content-length: 15\r\n\r\n{"status":"ok"}'
)
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
)
_BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(payload: dict[str, object], event: str = "", end: bytes = b"\n\n") -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(payload, separators=(",", ":")).encode() + end


def _status_response(status: int) -> bytes:
    body = json.dumps(
        {"error": {"message": f"fake upstream error {status}", "type": "fake", "code": None}}
    ).encode()
    extra = b"retry-after: 0\r\n" if status == 429 else b""
    return (
        b"HTTP/1.1 %d Fake\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
        % (
            status,
            extra,
            len(body),
            body,
        )
    )


def completion_body(model: str, tokens: int) -> bytes:
    """A complete, valid ``chat.completion`` object with ``tokens`` words of content."""
    content = " ".join(["token"] * tokens)
    return json.dumps(
        {
            "id": "chatcmpl-fake0000000000000000000000",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens},
        },
        separators=(",", ":"),
    ).encode()


def embeddings_body(model: str, inputs: int, dimensions: int, as_base64: bool) -> bytes:
    """An OpenAI embeddings list: ``inputs`` copies of one ``dimensions``-long vector."""
    values = [((i * 7919) % 1000) / 1000 - 0.5 for i in range(dimensions)]
    vector: object = values
    if as_base64:
        vector = base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(inputs)]
    usage = {"prompt_tokens": 8 * inputs, "total_tokens": 8 * inputs}
    document = {"object": "list", "data": data, "model": model, "usage": usage}
    return json.dumps(document, separators=(",", ":")).encode()


def anthropic_body(model: str, tokens: int) -> bytes:
    """A complete Anthropic ``message`` with ``tokens`` words of text."""
    return json.dumps(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": " ".join(["token"] * tokens)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": tokens},
        },
        separators=(",", ":"),
    ).encode()


def gemini_body(tokens: int) -> bytes:
    """A complete Gemini ``GenerateContentResponse`` with ``tokens`` words of text."""
    return json.dumps(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": " ".join(["token"] * tokens)}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 9,
                "candidatesTokenCount": tokens,
                "totalTokenCount": 9 + tokens,
            },
            "modelVersion": "fake",
        },
        separators=(",", ":"),
    ).encode()


class StreamShape:
    """The prebuilt events of one stream: role chunk, one token event, finish chunk."""

    __slots__ = ("finish", "role", "token")

    def __init__(self, model: str, api: str = "openai") -> None:
        if api == "anthropic":
            self._anthropic(model)
            return
        if api == "gemini":
            self._gemini()
            return
        base: dict[str, object] = {
            "id": "chatcmpl-fake0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _chunked(_event({**base, "choices": [choice]}))

        self.role = chunk({"role": "assistant", "content": ""}, None)
        self.token = chunk({"content": " token"}, None)
        self.finish = chunk({}, "stop") + _chunked(_DONE) + b"0\r\n\r\n"

    def _anthropic(self, model: str) -> None:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 1},
        }
        block = {"type": "text", "text": ""}
        self.role = _chunked(
            _event({"type": "message_start", "message": message}, "message_start")
            + _event(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            )
        )
        delta = {"type": "text_delta", "text": " token"}
        self.token = _chunked(
            _event(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            )
        )
        stop = {"stop_reason": "end_turn", "stop_sequence": None}
        self.finish = (
            _chunked(
                _event({"type": "content_block_stop", "index": 0}, "content_block_stop")
                + _event(
                    {"type": "message_delta", "delta": stop, "usage": {"output_tokens": 1}},
                    "message_delta",
                )
                + _event({"type": "message_stop"}, "message_stop")
            )
            + b"0\r\n\r\n"
        )

    def _gemini(self) -> None:
        def item(text: str, finish: bool) -> dict[str, object]:
            candidate: dict[str, object] = {
                "content": {"parts": [{"text": text}], "role": "model"},
                "index": 0,
            }
            if finish:
                candidate["finishReason"] = "STOP"
            out: dict[str, object] = {"candidates": [candidate], "modelVersion": "fake"}
            if finish:
                usage = {"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10}
                out["usageMetadata"] = usage
            return out

        crlf = b"\r\n\r\n"
        self.role = _chunked(_event(item("", False), end=crlf))
        self.token = _chunked(_event(item(" token", False), end=crlf))
        self.finish = _chunked(_event(item("", True), end=crlf)) + b"0\r\n\r\n"


class Upstream:
    """Shared state: the prebuilt responses, per model name and token count."""

    def __init__(self, default_tokens: int) -> None:
        self.default_tokens = default_tokens
        self._json: dict[tuple[bytes, int], bytes] = {}
        self._shapes: dict[tuple[bytes, str], StreamShape] = {}
        self._embeddings: dict[tuple[bytes, int, int, bool], bytes] = {}

    def json_response(self, model: bytes, tokens: int, api: str = "openai") -> bytes:
        key = (model + api.encode(), tokens)
        response = self._json.get(key)
        if response is None:
            if api == "anthropic":
                body = anthropic_body(model.decode(), tokens)
            elif api == "gemini":
                body = gemini_body(tokens)
            else:
                body = completion_body(model.decode(), tokens)
            response = self._json[key] = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        return response

    def embeddings_response(
        self, model: bytes, inputs: int, dimensions: int, as_base64: bool
    ) -> bytes:
        key = (model, inputs, dimensions, as_base64)
        response = self._embeddings.get(key)
        if response is None:
            body = embeddings_body(model.decode(), inputs, dimensions, as_base64)
            response = self._embeddings[key] = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        return response

    def shape(self, model: bytes, api: str = "openai") -> StreamShape:
        shape = self._shapes.get((model, api))
        if shape is None:
            shape = self._shapes[(model, api)] = StreamShape(model.decode(), api)
        return shape


class Connection(asyncio.Protocol):
    """One client connection: parse requests as they arrive, answer in order."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.streaming = False  # a stream is being written: later requests wait
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.streaming:
            self._process()

    def _process(self) -> None:
        transport = self.transport
        while transport is not None and not self.streaming:
            buffer = self.buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                return
            head = buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            if len(buffer) < end + 4 + length:
                return
            body = buffer[end + 4 : end + 4 + length]
            self.buffer = buffer[end + 4 + length :]
            close = b"\r\nconnection: close" in head
            self._answer(head, body, transport)
            if close and not self.streaming:
                transport.close()
                return

    def _answer(self, head: bytes, body: bytes, transport: asyncio.Transport) -> None:
        if head.startswith(b"get "):
            transport.write(_HEALTH)
            return
        line_end = head.find(b"\r\n")
        target = head[: line_end if line_end >= 0 else None].split(b" ")
        path = target[1].split(b"?")[0] if len(target) >= 2 else b""
        if path.endswith(b"/embeddings"):
            self._embed(body, transport)
            return
        gemini = _GEMINI_TARGET.search(target[1]) if len(target) >= 2 else None
        if path.endswith(b"/chat/completions"):
            api = "openai"
        elif path.endswith(b"/messages"):
            api = "anthropic"
        elif gemini is not None:
            api = "gemini"
        else:
            transport.write(_NOT_FOUND)
            return
        try:
            request = json.loads(body)
            if gemini is not None:
                model = gemini.group(1)
                config = request.get("generationConfig") or {}
                tokens = int(config.get("maxOutputTokens") or self.upstream.default_tokens)
                stream = gemini.group(2) is not None
            else:
                model = str(request.get("model") or "fake").encode()
                tokens = int(request.get("max_tokens") or self.upstream.default_tokens)
                stream = bool(request.get("stream"))
        except (ValueError, TypeError, AttributeError):
            transport.write(_BAD)
            transport.close()
            return
        status = _MODEL_STATUS.search(model)
        if status is not None:
            transport.write(_status_response(int(status.group(1))))
            return
        if model.endswith(b"-hang"):
            self.streaming = True  # holds the connection: nothing more is answered on it
            return
        if not stream:
            transport.write(self.upstream.json_response(model, tokens, api))
            return
        shape = self.upstream.shape(model, api)
        if model.endswith(b"-stall"):
            transport.write(_STREAM_HEAD + shape.role + shape.token)
            self.streaming = True
            return
        match = _MODEL_INTERVAL.search(model)
        interval = int(match.group(1)) / 1000 if match else 0.0
        if interval <= 0 or tokens <= 0:
            transport.write(_STREAM_HEAD + shape.role + shape.token * tokens + shape.finish)
            return
        transport.write(_STREAM_HEAD + shape.role)
        self.streaming = True
        loop = asyncio.get_running_loop()
        self._tick(loop, shape, loop.time(), interval, 1, tokens)

    def _embed(self, body: bytes, transport: asyncio.Transport) -> None:
        try:
            request = json.loads(body)
            model = str(request.get("model") or "fake").encode()
            raw = request["input"]
            inputs = 1 if isinstance(raw, str) or isinstance(raw[0], int) else len(raw)
            dimensions = int(request.get("dimensions") or 1536)
            as_base64 = request.get("encoding_format") == "base64"
        except (ValueError, TypeError, AttributeError, KeyError, IndexError):
            transport.write(_BAD)
            transport.close()
            return
        transport.write(self.upstream.embeddings_response(model, inputs, dimensions, as_base64))

    def _tick(
        self,
        loop: asyncio.AbstractEventLoop,
        shape: StreamShape,
        start: float,
        interval: float,
        sent: int,
        tokens: int,
    ) -> None:
        """Schedule token ``sent`` at ``start + sent * interval``; the last one ends the stream."""
        self.timer = loop.call_at(
            start + sent * interval, self._send, loop, shape, start, interval, sent, tokens
        )

    def _send(
        self,
        loop: asyncio.AbstractEventLoop,
        shape: StreamShape,
        start: float,
        interval: float,
        sent: int,
        tokens: int,
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        if sent < tokens:
            transport.write(shape.token)
            self._tick(loop, shape, start, interval, sent + 1, tokens)
            return
        self.timer = None
        self.streaming = False
        transport.write(shape.token + shape.finish)
        if self.buffer:
            self._process()


async def serve(host: str, port: int, tokens: int) -> None:
    loop = asyncio.get_running_loop()
    upstream = Upstream(tokens)
    server = await loop.create_server(
        lambda: Connection(upstream), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--tokens", type=int, default=16, help="tokens when max_tokens is unset")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.tokens))


if __name__ == "__main__":
    main()
