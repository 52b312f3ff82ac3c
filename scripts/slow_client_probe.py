"""How long slow and lying clients hold a connection, measured against ``feathergate serve``.

    python scripts/slow_client_probe.py [--limit 90] [--set header_timeout=2 ...]

Starts the ``feathergate`` command in a subprocess on 127.0.0.1 with a config
of one mock model (``demo``), plus any ``feathergate_settings`` given with
``--set``, and opens one connection per misbehaviour, all at once:

* ``silent``: connects and sends nothing;
* ``half_head``: sends half a request head (the request line and one header);
* ``trickled_head``: sends a request head one header line every 2 s, never
  finishing it (a slowloris client);
* ``lying_body_chat``: a complete head with ``content-length: 1000`` to the
  chat route, then 10 bytes of body, then nothing;
* ``lying_body_quart``: the same to ``/v1/models`` (a route Quart answers).

For each, the time from connecting until the server closed the connection,
and the status line of whatever response came first. A connection still
open after ``--limit`` seconds is reported as such.
Meanwhile a well-behaved client sends a chat request every 0.25 s on a fresh
connection: how many it sent, how many failed, and its p50 and max latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.cli import gateway_process

HEAD = "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def write_config(settings: dict[str, Any], directory: str) -> str:
    raw = {
        "model_list": [
            {
                "model_name": "demo",
                "litellm_params": {"model": "openai/demo", "mock_response": "hello"},
            }
        ],
        "feathergate_settings": {"shutdown_grace_period": 1, **settings},
    }
    path = Path(directory) / "probe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


async def until_closed(stream: trio.SocketStream, since: float) -> dict[str, Any]:
    """Read until EOF or a reset: seconds since ``since``, and the response's status line."""
    received = b""
    try:
        while data := await stream.receive_some(65536):
            received += data
    except trio.BrokenResourceError:
        pass  # a reset is a close too
    status = received.split(b"\r\n", 1)[0].decode("latin-1") if received else None
    return {"closed_after_s": round(time.monotonic() - since, 2), "response": status}


async def silent(stream: trio.SocketStream) -> None:
    pass


async def half_head(stream: trio.SocketStream) -> None:
    await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n")


async def trickled_head(stream: trio.SocketStream) -> None:
    await stream.send_all(b"POST /v1/chat/completions HTTP/1.1\r\n")
    try:
        for i in range(1000):
            await trio.sleep(2)
            await stream.send_all(f"x-slow-{i}: 1\r\n".encode())
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def lying_body(path: str) -> Callable[[trio.SocketStream], Awaitable[None]]:
    async def send(stream: trio.SocketStream) -> None:
        head = HEAD.format(path=path) + "content-length: 1000\r\n\r\n"
        await stream.send_all(head.encode() + b'{"model": ')

    return send


async def misbehave(
    port: int,
    behaviour: Callable[[trio.SocketStream], Awaitable[None]],
    limit: float,
    out: dict[str, Any],
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    connected = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(behaviour, stream)
        with trio.move_on_after(limit):
            out.update(await until_closed(stream, connected))
        if not out:
            out.update({"closed_after_s": None, "still_open_at_s": limit})
        nursery.cancel_scope.cancel()
    await stream.aclose()


async def well_behaved(base: str, stop: trio.Event, out: dict[str, Any]) -> None:
    latencies: list[float] = []
    failures = 0
    while not stop.is_set():
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            started = time.monotonic()
            try:
                response = await client.post("/v1/chat/completions", json=CHAT)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.monotonic() - started)
            failures += not ok
        with trio.move_on_after(0.25):
            await stop.wait()
    out.update(
        {
            "requests": len(latencies),
            "failures": failures,
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
        }
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    behaviours: dict[str, Callable[[trio.SocketStream], Awaitable[None]]] = {
        "silent": silent,
        "half_head": half_head,
        "trickled_head": trickled_head,
        "lying_body_chat": lying_body("/v1/chat/completions"),
        "lying_body_quart": lying_body("/v1/models"),
    }
    report: dict[str, Any] = {"settings": settings, "limit_s": args.limit}
    with tempfile.TemporaryDirectory() as directory:
        config = write_config(settings, directory)
        async with gateway_process("--config", config) as gateway, trio.open_nursery() as outer:
            outer.start_soon(gateway.read_log)
            stop = trio.Event()
            normal: dict[str, Any] = {}
            async with trio.open_nursery() as clients:
                clients.start_soon(well_behaved, gateway.url, stop, normal)
                async with trio.open_nursery() as nursery:
                    for name, behaviour in behaviours.items():
                        report[name] = {}
                        nursery.start_soon(
                            misbehave, gateway.port, behaviour, args.limit, report[name]
                        )
                stop.set()
            report["normal_requests"] = normal
            gateway.process.terminate()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=90.0, help="seconds to wait per client")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a feathergate_settings key"
    )
    print(json.dumps(trio.run(main, parser.parse_args()), indent=2))
