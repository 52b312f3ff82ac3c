"""The gateway's own CPU per request, in process: no sockets, a ``mock_response`` upstream.

    .venv/bin/python scripts/overhead.py                     # chat, JSON and stream
    .venv/bin/python scripts/overhead.py --endpoint messages
    .venv/bin/python scripts/overhead.py --access-log text   # or json: the access log's cost
    PYTHONPATH=/path/to/other/tree .venv/bin/python scripts/overhead.py   # A/B two trees

The ASGI app is called directly with an in-memory request, so what is
measured is FeatherGate's path (routing, ingress, router, relay, operation)
and not Hypercorn, the kernel or the upstream. It reports the minimum and
median CPU time per request over 7 rounds of 1,000 requests, and the number
of Python function calls per request (cProfile), which does not depend on
what else the machine is doing. ``scripts/bench.py`` measures the real thing
over sockets; this one is for comparing two trees on a busy machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from typing import Any

import trio

from feathergate.app import create_app
from feathergate.config import parse_config
from feathergate.observability.logs import setup_logging

ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {}),
    "messages": ("/v1/messages", {"max_tokens": 100}),
}


async def main(endpoint: str) -> None:
    path, extra = ENDPOINTS[endpoint]
    params = {"model": "openai/x", "mock_response": "hello there my friend"}
    app = create_app(
        parse_config({"model_list": [{"model_name": "m", "litellm_params": params}]}, {})
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }

    async def one(body: bytes) -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[Any] = []

        async def receive() -> Any:
            if messages:
                return messages.pop(0)
            await trio.sleep_forever()

        async def send(message: Any) -> None:
            sent.append(message)

        await app(dict(scope), receive, send)
        assert sent[0]["status"] == 200, sent

    await app.runtime.open()
    try:
        for stream in (False, True):
            body = json.dumps(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": stream,
                    **extra,
                }
            ).encode()
            for _ in range(200):  # warm up
                await one(body)
            rounds = []
            for _ in range(7):
                started = time.process_time()
                for _ in range(1000):
                    await one(body)
                rounds.append((time.process_time() - started) / 1000 * 1e6)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(500):
                await one(body)
            profile.disable()
            calls = pstats.Stats(profile).total_calls / 500  # type: ignore[attr-defined]
            print(
                f"{endpoint} {'stream' if stream else 'json'}: min {min(rounds):.1f} us/request, "
                f"median {sorted(rounds)[3]:.1f} us/request, {calls:.0f} Python calls/request"
            )
    finally:
        await app.runtime.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="chat")
    parser.add_argument("--access-log", choices=["text", "json"], help="log every request")
    args = parser.parse_args()
    if args.access_log is not None:  # the real handler and writer thread, writing to /dev/null
        setup_logging("info", args.access_log == "json", open(os.devnull, "w"))  # noqa: SIM115
    trio.run(main, args.endpoint)
