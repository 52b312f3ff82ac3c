"""Micro-benchmark of the upstream client's HTTP/1.1 framing, without sockets.

    .venv/bin/python scripts/bench_framing.py            # about 10 s
    .venv/bin/python scripts/bench_framing.py --no-h11   # FeatherGate only

Same request and response bytes for every parser, fed as one read per
response (``request``) or one read per chunk (``stream``); best of five
runs, CPU time (``process_time``). Figures:

request     encode a 4-header request with a 300-byte body, then parse a
            response head and a 631-byte JSON body; ``minimal`` has two
            header fields, ``openai`` the twenty an OpenAI response carries
stream      a chunked head, then 100 chunks of one SSE event each, one chunk
            per read: the cost per chunk, head excluded
tiny chunks one read of 1-byte chunks, 64 KiB and 256 KiB (hostile: four
            times the bytes should cost four times the time, not sixteen)

h11 (``h11.Connection`` reused with ``start_next_cycle``) is the reference
the review measured against. Run from another tree (``git archive OLD | tar
-x -C /tmp/old``, then ``PYTHONPATH=/tmp/old``) to compare versions; trees
from before ``upstream/h1.py`` are read through their ``upstream/wire.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

try:
    from feathergate.upstream.h1 import BodyFraming, HeadReader, encode_request

    def read_response(data: bytes) -> tuple[int, bytes]:
        got = HeadReader().feed(data)
        assert got is not None
        head, rest = got
        return head.status, BodyFraming(head).feed(rest)

    def open_stream(data: bytes) -> BodyFraming:
        got = HeadReader().feed(data)
        assert got is not None
        return BodyFraming(got[0])

except ImportError:  # a tree from before upstream/h1.py
    from feathergate.upstream.wire import (  # type: ignore[import-not-found,no-redef]
        BodyFraming,
        encode_request,
        parse_head,
    )

    def read_response(data: bytes) -> tuple[int, bytes]:
        end = data.find(b"\r\n\r\n")
        head = parse_head(data[:end])
        return head.status, BodyFraming(head).feed(data[end + 4 :])

    def open_stream(data: bytes) -> BodyFraming:
        return BodyFraming(parse_head(data[: data.find(b"\r\n\r\n")]))


BODY = json.dumps(
    {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! " * 40, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 80, "total_tokens": 89},
        "system_fingerprint": "fp_0123456789",
    }
).encode()[:631]
REQUEST_BODY = b"x" * 300
REQUEST_HEADERS = [
    ("content-type", "application/json"),
    ("authorization", "Bearer sk-" + "a" * 48),
    ("openai-organization", "org-123"),
    ("x-custom", "value"),
]
MINIMAL = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
OPENAI = (
    b"HTTP/1.1 200 OK\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: keep-alive\r\n"
    b"access-control-expose-headers: X-Request-ID\r\n"
    b"openai-organization: user-abc123\r\n"
    b"openai-processing-ms: 412\r\n"
    b"openai-version: 2020-10-01\r\n"
    b"x-ratelimit-limit-requests: 10000\r\n"
    b"x-ratelimit-limit-tokens: 2000000\r\n"
    b"x-ratelimit-remaining-requests: 9999\r\n"
    b"x-ratelimit-remaining-tokens: 1999985\r\n"
    b"x-ratelimit-reset-requests: 6ms\r\n"
    b"x-ratelimit-reset-tokens: 0s\r\n"
    b"x-request-id: req_0123456789abcdef0123456789abcdef\r\n"
    b"strict-transport-security: max-age=31536000; includeSubDomains; preload\r\n"
    b"CF-Cache-Status: DYNAMIC\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Server: cloudflare\r\n"
    b"CF-RAY: 0123456789abcdef-AMS\r\n"
    b"\r\n"
)
EVENT = (
    b'data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" token"},'
    b'"logprobs":null,"finish_reason":null}]}\n\n'
)
CHUNK = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
TINY = b"1\r\na\r\n" * (65536 // 6)
TINY4 = TINY * 4


def best(run: Callable[[], Any], count: int, rounds: int = 5) -> float:
    """Seconds per call: the best of ``rounds`` runs of ``count`` calls."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            run()
        times.append(time.process_time() - started)
    return min(times) / count


def ours() -> dict[str, float]:
    minimal = MINIMAL % len(BODY) + BODY
    openai = OPENAI % len(BODY) + BODY

    def request(response: bytes) -> Callable[[], None]:
        def run() -> None:
            encode_request(
                "POST", "/v1/chat/completions", "api.openai.com", REQUEST_HEADERS, REQUEST_BODY
            )
            status, body = read_response(response)
            assert status == 200
            assert len(body) == len(BODY)

        return run

    def stream_head() -> None:
        open_stream(STREAM_HEAD)

    def stream() -> None:
        framing = open_stream(STREAM_HEAD)
        for _ in range(100):
            framing.feed(CHUNK)

    def tiny(data: bytes) -> Callable[[], None]:
        def run() -> None:
            framing = open_stream(STREAM_HEAD)
            assert len(framing.feed(data)) == len(data) // 6

        return run

    return {
        "request minimal": best(request(minimal), 3000),
        "request openai": best(request(openai), 3000),
        "stream per chunk": (best(stream, 200) - best(stream_head, 2000)) / 100,
        "tiny chunks, 64 KiB read": best(tiny(TINY), 3, rounds=3),
        "tiny chunks, 256 KiB read": best(tiny(TINY4), 1, rounds=3),
    }


def h11_reference() -> dict[str, float]:
    import h11

    def connection() -> h11.Connection:
        return h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)

    def cycle(conn: h11.Connection, response: bytes, per_read: list[bytes] | None = None) -> None:
        conn.send(
            h11.Request(
                method="POST",
                target="/v1/chat/completions",
                headers=[
                    ("host", "api.openai.com"),
                    *REQUEST_HEADERS,
                    ("content-length", str(len(REQUEST_BODY))),
                ],
            )
        )
        conn.send(h11.Data(data=REQUEST_BODY))
        conn.send(h11.EndOfMessage())
        for data in per_read or [response]:
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
                    break
        conn.start_next_cycle()

    def request(response: bytes) -> Callable[[], None]:
        conn = connection()
        return lambda: cycle(conn, response)

    head_only = connection()
    stream_conn = connection()
    empty_end = [STREAM_HEAD, b"0\r\n\r\n"]
    with_chunks = [STREAM_HEAD, *([CHUNK] * 100), b"0\r\n\r\n"]
    return {
        "request minimal": best(request(MINIMAL % len(BODY) + BODY), 3000),
        "request openai": best(request(OPENAI % len(BODY) + BODY), 3000),
        "stream per chunk": (
            best(lambda: cycle(stream_conn, b"", with_chunks), 200)
            - best(lambda: cycle(head_only, b"", empty_end), 2000)
        )
        / 100,
        "tiny chunks, 64 KiB read": best(
            lambda: cycle(connection(), b"", [STREAM_HEAD, TINY + b"0\r\n\r\n"]), 3, rounds=3
        ),
        "tiny chunks, 256 KiB read": best(
            lambda: cycle(connection(), b"", [STREAM_HEAD, TINY4 + b"0\r\n\r\n"]), 1, rounds=3
        ),
    }


def shown(seconds: float) -> str:
    return f"{seconds * 1e6:>11.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:>11.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-h11", action="store_true", help="skip the h11 reference")
    args = parser.parse_args()
    columns = {"feathergate": ours()}
    if not args.no_h11:
        columns["h11"] = h11_reference()
    print(f"{'workload':<30}" + "".join(f"{name:>14}" for name in columns))
    for key in columns["feathergate"]:
        print(f"{key:<30}" + "".join(shown(col[key]) for col in columns.values()))


if __name__ == "__main__":
    main()
