"""Disconnect-to-upstream-close latency and deadline accuracy, measured.

    python scripts/cancel_probe.py [--cycles 200] [--deadline 0.2] [--samples 20]

Runs FeatherGate in this process under real Hypercorn on 127.0.0.1, against
the raw-socket fake upstream of the test suite, and a raw-socket client.

* **Disconnects.** For each phase (the gateway still connecting; waiting for
  the upstream's headers, streaming or not; waiting for the first token;
  mid-stream) and each way of leaving (FIN, RST), ``--cycles`` clients drop
  and the time from the client's ``close()`` to the moment the upstream saw
  its connection close is recorded: p50, p99 and max, in milliseconds. For the
  connect phase there is no upstream connection to watch; the time is until
  the relay has ended (its half-open socket closed).
* **Deadlines.** Each kind is set to ``--deadline`` seconds and provoked
  ``--samples`` times; the figure is how much later than the deadline the
  client got its 504 or SSE error event.

Client, gateway and upstream share one Trio loop (and one core): the figures
include the client's and the upstream's own scheduling, so they are an upper
bound on what the gateway alone adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feathergate.app import create_app
from feathergate.config import Config, parse_config
from feathergate.gateway import Gateway
from tests.conftest import run_gateway
from tests.fakes.tcp_upstream import (
    Behaviour,
    Mode,
    TCPUpstream,
    hang_connect,
    tcp_upstream,
)
from tests.support.rawclient import RawClient, read_sse_until

MESSAGES = [{"role": "user", "content": "hi"}]


def make_config(api_base: str, **params: Any) -> Config:
    entry = {"model": "openai/up", "api_base": api_base, "api_key": "k", **params}
    raw = {
        "model_list": [{"model_name": "m", "litellm_params": entry}],
        "feathergate_settings": {"shutdown_grace_period": 1},
    }
    return parse_config(raw, {})


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def disconnect_phase(
    app: Gateway, port: int, upstream: TCPUpstream | None, phase: str, rst: bool, cycles: int
) -> list[float]:
    behaviours = {
        "upstream_headers_json": (Behaviour(Mode.HANG_HEADERS), False),
        "upstream_headers_stream": (Behaviour(Mode.HANG_HEADERS), True),
        "first_token": (Behaviour(Mode.HANG_BODY, partial_events=0), True),
        "streaming": (Behaviour(Mode.HANG_BODY, partial_events=2), True),
    }
    results: list[float] = []
    for _ in range(cycles):
        if upstream is None:  # connect phase
            client = await RawClient.post(port, {"model": "m", "messages": MESSAGES})
            await trio.testing.wait_all_tasks_blocked(cushion=0.005)
            dropped = await client.drop(rst=rst)
            await app.runtime.drain.wait_empty()
            results.append(trio.current_time() - dropped)
            continue
        behaviour, stream = behaviours[phase]
        upstream.behaviour = behaviour
        arrived = upstream.new_request
        body = {"model": "m", "messages": MESSAGES, "stream": stream}
        client = await RawClient.post(port, body)
        if phase == "streaming":
            await read_sse_until(client, 2)
        else:
            await arrived.wait()
            await trio.testing.wait_all_tasks_blocked(cushion=0.002)
        conn = upstream.conns[-1]
        dropped = await client.drop(rst=rst)
        await conn.closed.wait()
        assert conn.closed_at is not None
        results.append(conn.closed_at - dropped)
    return results


async def timed(fn: Callable[[], Awaitable[float]], samples: int, deadline: float) -> list[float]:
    await fn()  # warm-up, not measured: the first request pays for lazy imports
    return [await fn() - deadline for _ in range(samples)]


async def deadline_accuracy(deadline: float, samples: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    body = {"model": "m", "messages": MESSAGES}
    async with httpx.AsyncClient(timeout=30) as http:

        async def request(base: str, payload: dict[str, Any]) -> float:
            start = trio.current_time()
            async with http.stream("POST", f"{base}/v1/chat/completions", json=payload) as r:
                if r.status_code != 504:
                    async for _ in r.aiter_raw():
                        pass
            return trio.current_time() - start

        async with hang_connect() as hang:
            cfg = make_config(hang, connect_timeout=deadline)
            async with run_gateway(cfg) as base:
                out["connect"] = summary(
                    await timed(lambda: request(base, body), samples, deadline)
                )
        async with tcp_upstream() as upstream:
            upstream.behaviour = Behaviour(Mode.HANG_HEADERS)
            async with run_gateway(make_config(upstream.url, first_token_timeout=deadline)) as b:
                out["first_token"] = summary(
                    await timed(lambda: request(b, body), samples, deadline)
                )
            async with run_gateway(make_config(upstream.url, timeout=deadline)) as b:
                out["total"] = summary(await timed(lambda: request(b, body), samples, deadline))
            upstream.behaviour = Behaviour(Mode.HANG_BODY, partial_events=1)
            cfg = make_config(upstream.url, stream_timeout=deadline)
            async with run_gateway(cfg) as base:
                port = int(base.rsplit(":", 1)[1])

                async def idle_gap() -> float:
                    client = await RawClient.post(port, {**body, "stream": True})
                    await read_sse_until(client, 1)
                    last_event = trio.current_time()
                    await client.read_until(b"\r\n0\r\n\r\n")  # the chunked body's end
                    await client.stream.aclose()
                    return trio.current_time() - last_event

                out["idle"] = summary(await timed(idle_gap, samples, deadline))
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"disconnect": {}, "deadline_overshoot": {}}
    phases = [
        "upstream_headers_json",
        "upstream_headers_stream",
        "first_token",
        "streaming",
    ]
    async with hang_connect() as hang:
        cfg = make_config(hang)
        app = create_app(cfg)
        async with run_gateway(cfg, app) as base:
            port = int(base.rsplit(":", 1)[1])
            for rst in (False, True):
                samples = await disconnect_phase(app, port, None, "connect", rst, args.cycles)
                report["disconnect"][f"connect/{'rst' if rst else 'fin'}"] = summary(samples)
    async with tcp_upstream() as upstream:
        cfg = make_config(upstream.url)
        app = create_app(cfg)
        async with run_gateway(cfg, app) as base:
            port = int(base.rsplit(":", 1)[1])
            for phase in phases:
                for rst in (False, True):
                    samples = await disconnect_phase(app, port, upstream, phase, rst, args.cycles)
                    report["disconnect"][f"{phase}/{'rst' if rst else 'fin'}"] = summary(samples)
    report["deadline_overshoot"] = await deadline_accuracy(args.deadline, args.samples)
    return report


def render(report: dict[str, Any]) -> str:
    lines = [
        "disconnect -> upstream closed (ms)",
        f"{'phase':34} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8}",
    ]
    for name, s in report["disconnect"].items():
        lines.append(f"{name:34} {s['n']:>5} {s['p50_ms']:>8} {s['p99_ms']:>8} {s['max_ms']:>8}")
    lines += ["", "deadline expiry, observed minus set (ms)"]
    lines.append(f"{'kind':34} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8}")
    for name, s in report["deadline_overshoot"].items():
        lines.append(f"{name:34} {s['n']:>5} {s['p50_ms']:>8} {s['p99_ms']:>8} {s['max_ms']:>8}")
    return "\n".join(lines)


if __name__ == "__main__":
    import trio.testing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200, help="disconnects per phase and kind")
    parser.add_argument("--deadline", type=float, default=0.2, help="seconds, for every kind")
    parser.add_argument("--samples", type=int, default=20, help="expiries per deadline kind")
    result = trio.run(main, parser.parse_args())
    print(render(result))
    print(json.dumps(result))
