"""What a burst of new streams costs, layer by layer: the floor, Hypercorn alone, FeatherGate.

Issue #15 asks that 1,000 streams opened at once get their first token with
p99 within 1.5x the floor's (``scripts/floor_proxy.py``). That is a question
of CPU per new stream, as a burst's last stream waits for the setup of every
one before it. This script measures it for three targets, each pinned to one
core as ``bench.py`` pins the gateway, and each sent ``--bursts`` bursts of
``--streams`` short streams (5 tokens, sent at once by the fake upstream),
every stream on a new connection:

* ``floor``: the Trio TCP proxy in front of the fake upstream (parses nothing);
* ``hypercorn``: Hypercorn 0.18 with FeatherGate's connection class serving an
  ASGI app that reads the request and streams the same five tokens itself,
  with no upstream at all: what the HTTP server costs before any gateway work;
* ``feathergate``: the gateway relaying the fake upstream's stream (an
  OpenAI passthrough), its upstream pool warm after the first burst.

For each: the target's CPU (user + system, /proc) per stream, and the first
body byte of the burst's streams, p50 / p99, from the request's write.

    .venv/bin/python scripts/burst_floor.py               # 3 bursts of 1,000, about 15 s
    .venv/bin/python scripts/burst_floor.py --app-only    # serve the hypercorn app (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import (
    CHAT_PATH,
    FAST_MODEL,
    Processes,
    body,
    cpu_seconds,
    feathergate_spec,
    free_port,
    http_status,
    layout,
    percentile,
    read_line,
    start_upstream,
    write_config,
)
from bench_clients import hold_streams

FLOOR_PROXY = Path(__file__).with_name("floor_proxy.py")
TOKENS = 5


# -- the hypercorn target: a trivial streaming app ----------------------------------------


def _piece(text: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    start = {"type": "http.response.start", "status": 200}
    await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(TOKENS):
        await send({"type": "http.response.body", "body": _piece(f" token{i}"), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def serve_app(port: int) -> None:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from feathergate import connection

    connection.install()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.backlog = 2048
    config.accesslog = None
    trio.run(partial(serve, _app, config))  # type: ignore[arg-type]


# -- measuring ----------------------------------------------------------------------------


def burst(pid: int, port: int, streams: int) -> tuple[float, float, float, int]:
    """One burst: (CPU us per stream, first byte p50 ms, p99 ms, streams completed)."""
    payload = body(FAST_MODEL, tokens=TOKENS, stream=True)
    before = cpu_seconds(pid)
    held = asyncio.run(hold_streams("127.0.0.1", port, CHAT_PATH, payload, TOKENS, streams, 60.0))
    cpu = cpu_seconds(pid) - before
    firsts = [o.first_byte * 1000 for o in held.outcomes if o.first_byte]
    p50 = statistics.median(firsts) if firsts else float("nan")
    return cpu * 1e6 / streams, p50, percentile(firsts, 99), held.completed


def wait_ready(port: int, bound: float = 30.0) -> None:
    deadline = time.monotonic() + bound
    while http_status(port, "/") is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answered on port {port}")
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="streams per burst")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--app-only", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app_only:
        serve_app(args.app_only)
        return 0
    where = layout(True, 1)
    print(f"pinning: {where.note}")
    with tempfile.TemporaryDirectory(prefix="feathergate-burst-") as tmp:
        procs = Processes(Path(tmp))
        try:
            upstream, _ = start_upstream(procs, where.load, TOKENS)
            base = f"http://127.0.0.1:{upstream}/v1"
            config = Path(tmp) / "config.json"
            write_config(config, base, FAST_MODEL, FAST_MODEL)
            targets: list[tuple[str, int, Any]] = []
            floor = procs.start(
                [sys.executable, str(FLOOR_PROXY), "--upstream", str(upstream)],
                "floor",
                where.gateway,
                stdout_pipe=True,
            )
            targets.append(("floor", int(read_line(floor, 15.0).split()[1]), floor))
            port = free_port()
            app = procs.start(
                [sys.executable, __file__, "--app-only", str(port)], "hypercorn", where.gateway
            )
            wait_ready(port)
            targets.append(("hypercorn", port, app))
            gateway = feathergate_spec(config, 1).start(procs, where.gateway)
            targets.append(("feathergate", gateway.port, gateway.proc))
            heading = ("target", "burst", "done", "CPU us/stream", "first p50/p99 ms")
            print("{:12} {:>5} {:>10} {:>14} {:>18}".format(*heading))
            for name, port, proc in targets:
                burst(proc.pid, port, 50)  # warm-up: imports, the first pool connections
                for i in range(args.bursts):
                    cpu, p50, p99, done = burst(proc.pid, port, args.streams)
                    times = f"{p50:.0f}/{p99:.0f}"
                    print(
                        f"{name:12} {i + 1:>5} {done:>5}/{args.streams:<4} {cpu:>14.0f} {times:>18}"
                    )
                procs.stop(proc)
        finally:
            procs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
