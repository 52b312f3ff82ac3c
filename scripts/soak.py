"""A soak of FeatherGate: mixed traffic for a given time, its RSS and descriptors watched.

    .venv/bin/python scripts/soak.py --minutes 30          # the issue's run
    .venv/bin/python scripts/soak.py --minutes 1 --rate 20 # a smoke run

Real processes on 127.0.0.1, as ``scripts/bench.py`` starts them (each in its
own process group, all stopped on exit): the fake upstream
(``scripts/fake_upstream.py``) and ``python -m feathergate serve`` with a
generated config. No CPU pinning: the soak is about what accumulates, not speed.

Traffic: ``--workers`` asyncio clients, together at most ``--rate`` requests
per second, each request on a new connection (the ``keepalive`` kind sends
five on one), picked at random by weight from:

=============  ================================================  =====================
kind           request                                           expected
=============  ================================================  =====================
plain          non-streaming chat, OpenAI upstream               200, 16 tokens
keepalive      five of those on one connection                   200 x 5
stream         20-token stream, one token per 20 ms, OpenAI      200, whole, [DONE]
anthropic      the same through the Anthropic translation        200, whole, [DONE]
gemini         the same through the Gemini translation           200, whole, [DONE]
drop           a 50-token stream the client drops (RST or FIN)   200 before the drop
               after its first bytes
e500, e429     the upstream answers 500 / 429 (no retries)       500 / 429
hang           the upstream never answers (timeout 1 s)          504
stall          a stream whose upstream goes quiet after one      200, an error event
               token (stream_timeout 1 s)                        last
bad            a body that is not JSON                           400
=============  ================================================  =====================

Every ``--every`` seconds the gateway's VmRSS and open descriptors
(``/proc/<pid>/fd``, its process tree) are sampled and printed with the
requests so far. After the run (and 3 s of quiet) they are sampled once more.

Verdict (exit status 0 only if all hold): no request got anything but its
expected outcome; after the warm-up (``--warmup``, default 20% of the run),
the median RSS of the last quarter of the samples is within 10% of the first
quarter's, and so is the median descriptor count (or within 5: it moves with
the requests in flight at the moment of the sample); and the quiet sample's
descriptors are within 10% (or 5) of the count before any traffic, plus the
upstream connections the pool keeps idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import (
    API_KEY,
    CHAT_PATH,
    GatewaySpec,
    Processes,
    _tree,
    cpu_seconds,
    rss_mb,
    start_upstream,
)
from bench_clients import ResponseParser, chat_request, stream_ok

PLAIN_TOKENS = 16
STREAM_TOKENS = 20
DROP_TOKENS = 50


def log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def fds(pid: int) -> int:
    count = 0
    for member in _tree(pid):
        try:
            count += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
    return count


def write_config(path: Path, upstream: str) -> None:
    root = upstream.removesuffix("/v1")

    def model(name: str, target: str, base: str = upstream, **extra: Any) -> dict[str, Any]:
        params = {"model": target, "api_base": base, "api_key": API_KEY, **extra}
        return {"model_name": name, "litellm_params": params}

    models = [
        model("soak-plain", "openai/bench-fast"),
        model("soak-stream", "openai/bench-20ms"),
        model("soak-anthropic", "anthropic/bench-20ms", root),
        model("soak-gemini", "gemini/bench-20ms", root),
        model("soak-e500", "openai/bench-e500", max_retries=0),
        model("soak-e429", "openai/bench-e429", max_retries=0),
        model("soak-hang", "openai/bench-hang", max_retries=0, timeout=1),
        model("soak-stall", "openai/bench-stall", max_retries=0, stream_timeout=1),
    ]
    path.write_text(json.dumps({"model_list": models}, indent=2) + "\n")


def body(model: str, tokens: int, *, stream: bool = False) -> bytes:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "soak"}],
        "max_tokens": tokens,
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


# --------------------------------------------------------------------------- clients


class Failure(Exception):
    """The request did not end as its kind expects; the message says how."""


async def exchange(
    port: int, payloads: list[bytes], *, drop_after_first: bool = False, abort: bool = False
) -> list[ResponseParser]:
    """Send ``payloads`` one after another on one new connection; the responses, parsed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parsed: list[ResponseParser] = []
    try:
        for payload in payloads:
            writer.write(chat_request("127.0.0.1", port, CHAT_PATH, payload))
            parser = ResponseParser()
            parsed.append(parser)
            while not parser.complete:
                data = await reader.read(65536)
                if not data:
                    raise Failure(f"connection closed after {len(parser.body)} body bytes")
                parser.feed(data)
                if drop_after_first and parser.body:
                    return parsed
        return parsed
    finally:
        if abort:
            writer.transport.abort()
        else:
            writer.close()


async def plain(port: int) -> str:
    (r,) = await exchange(port, [body("soak-plain", PLAIN_TOKENS)])
    return _json_ok(r)


async def keepalive(port: int) -> str:
    responses = await exchange(port, [body("soak-plain", PLAIN_TOKENS)] * 5)
    for r in responses:
        _json_ok(r)
    return "200"


def _json_ok(r: ResponseParser) -> str:
    if r.status != 200:
        raise Failure(f"HTTP {r.status}: {bytes(r.body)[:200]!r}")
    content = json.loads(bytes(r.body))["choices"][0]["message"]["content"]
    if content.count("token") != PLAIN_TOKENS:
        raise Failure("wrong content")
    return "200"


def streamer(model: str) -> Callable[[int], Coroutine[Any, Any, str]]:
    async def run(port: int) -> str:
        (r,) = await exchange(port, [body(model, STREAM_TOKENS, stream=True)])
        if not stream_ok(r.status, bytes(r.body), STREAM_TOKENS):
            raise Failure(f"HTTP {r.status}, stream not whole: {bytes(r.body)[-200:]!r}")
        return "200"

    return run


async def drop(port: int) -> str:
    payload = body("soak-stream", DROP_TOKENS, stream=True)
    (r,) = await exchange(port, [payload], drop_after_first=True, abort=random.random() < 0.5)
    if r.status != 200:
        raise Failure(f"HTTP {r.status}")
    return "200 dropped"


def status(model: str, expected: int) -> Callable[[int], Coroutine[Any, Any, str]]:
    async def run(port: int) -> str:
        (r,) = await exchange(port, [body(model, PLAIN_TOKENS)])
        if r.status != expected:
            raise Failure(f"HTTP {r.status}, expected {expected}: {bytes(r.body)[:200]!r}")
        error = json.loads(bytes(r.body))["error"]
        if set(error) != {"message", "type", "param", "code"}:
            raise Failure(f"error body {error!r}")
        return str(r.status)

    return run


async def stall(port: int) -> str:
    (r,) = await exchange(port, [body("soak-stall", STREAM_TOKENS, stream=True)])
    payload = bytes(r.body)
    last = payload.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    if r.status != 200 or not last.startswith(b'data: {"error"'):
        raise Failure(f"HTTP {r.status}, no error event at the end: {payload[-200:]!r}")
    return "200 error event"


async def bad(port: int) -> str:
    (r,) = await exchange(port, [b'{"model": "soak-plain", "messages": ['])
    if r.status != 400:
        raise Failure(f"HTTP {r.status}, expected 400")
    return "400"


KINDS: dict[str, tuple[int, Callable[[int], Coroutine[Any, Any, str]]]] = {
    "plain": (30, plain),
    "keepalive": (5, keepalive),
    "stream": (20, streamer("soak-stream")),
    "anthropic": (8, streamer("soak-anthropic")),
    "gemini": (8, streamer("soak-gemini")),
    "drop": (8, drop),
    "e500": (5, status("soak-e500", 500)),
    "e429": (5, status("soak-e429", 429)),
    "hang": (3, status("soak-hang", 504)),
    "stall": (3, stall),
    "bad": (5, bad),
}


@dataclass(slots=True)
class Tally:
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    done: int = 0
    inflight: int = 0


async def worker(port: int, tally: Tally, stop: float, interval: float) -> None:
    names = list(KINDS)
    weights = [KINDS[n][0] for n in names]
    while time.monotonic() < stop:
        started = time.monotonic()
        kind = random.choices(names, weights)[0]
        tally.inflight += 1
        try:
            outcome = await asyncio.wait_for(KINDS[kind][1](port), 30.0)
        except (Failure, OSError, TimeoutError, ValueError, KeyError) as exc:
            outcome = "UNEXPECTED"
            if len(tally.unexpected) < 50:
                tally.unexpected.append(f"{kind}: {type(exc).__name__}: {exc}")
        finally:
            tally.inflight -= 1
        tally.outcomes[(kind, outcome)] += 1
        tally.done += 1
        left = interval - (time.monotonic() - started)
        if left > 0:
            await asyncio.sleep(left * random.uniform(0.5, 1.5))


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    rss_mb: float
    fds: int
    cpu: float  # share of one core since the last sample
    done: int
    inflight: int
    unexpected: int


async def sampler(pid: int, tally: Tally, stop: float, every: float, out: list[Sample]) -> None:
    began = time.monotonic()
    last_t, last_cpu = began, cpu_seconds(pid)
    print(f"{'t s':>6} {'RSS MB':>7} {'fds':>5} {'CPU':>5} {'requests':>9} {'open':>5} {'bad':>4}")
    while time.monotonic() < stop:
        await asyncio.sleep(min(every, max(0.0, stop - time.monotonic())))
        now, cpu = time.monotonic(), cpu_seconds(pid)
        unexpected = sum(n for (_, o), n in tally.outcomes.items() if o == "UNEXPECTED")
        sample = Sample(
            now - began,
            rss_mb(pid),
            fds(pid),
            (cpu - last_cpu) / max(1e-9, now - last_t),
            tally.done,
            tally.inflight,
            unexpected,
        )
        last_t, last_cpu = now, cpu
        out.append(sample)
        print(
            f"{sample.t:>6.0f} {sample.rss_mb:>7.1f} {sample.fds:>5} {sample.cpu:>5.0%} "
            f"{sample.done:>9,} {sample.inflight:>5} {sample.unexpected:>4}",
            flush=True,
        )


async def drive(args: argparse.Namespace, port: int, pid: int) -> tuple[Tally, list[Sample]]:
    tally = Tally()
    samples: list[Sample] = []
    stop = time.monotonic() + args.minutes * 60
    interval = args.workers / args.rate
    tasks = [asyncio.create_task(worker(port, tally, stop, interval)) for _ in range(args.workers)]
    watch = asyncio.create_task(sampler(pid, tally, stop, args.every, samples))
    await asyncio.gather(*tasks, watch)
    return tally, samples


# --------------------------------------------------------------------------- verdict


def quarter_medians(values: list[float]) -> tuple[float, float]:
    n = max(1, len(values) // 4)
    return statistics.median(values[:n]), statistics.median(values[-n:])


def verdict(
    args: argparse.Namespace, tally: Tally, samples: list[Sample], idle: tuple[int, int]
) -> tuple[bool, list[str]]:
    lines: list[str] = []
    warm = args.warmup if args.warmup is not None else args.minutes * 60 * 0.2
    after = [s for s in samples if s.t >= warm]
    ok = True
    unexpected = sum(n for (_, o), n in tally.outcomes.items() if o == "UNEXPECTED")
    lines.append(f"requests: {tally.done:,}, unexpected outcomes: {unexpected}")
    for kind in KINDS:
        seen = {o: n for (k, o), n in sorted(tally.outcomes.items()) if k == kind}
        lines.append(f"  {kind:<10} " + ", ".join(f"{o}: {n:,}" for o, n in seen.items()))
    for line in tally.unexpected[:10]:
        lines.append(f"  ! {line}")
    ok &= unexpected == 0
    if len(after) < 4:
        lines.append(f"too few samples after the {warm:.0f} s warm-up to judge flatness")
        return False, lines
    for name, values in (
        ("RSS MB", [s.rss_mb for s in after]),
        ("fds", [float(s.fds) for s in after]),
    ):
        first, last = quarter_medians(values)
        change = (last - first) / first
        flat = abs(change) <= 0.10 or abs(last - first) <= 5  # a few sockets more or less
        ok &= flat
        lines.append(
            f"{name} after {warm:.0f} s warm-up: first-quarter median {first:.1f}, last-quarter "
            f"median {last:.1f} ({change:+.1%}), range {min(values):.1f}-{max(values):.1f}: "
            + ("FLAT" if flat else "NOT FLAT")
        )
    before, quiet = idle
    allowed = max(5, before * 0.10) + args.workers  # idle upstream connections kept by the pool
    back = quiet <= before + allowed
    ok &= back
    lines.append(
        f"descriptors before traffic {before}, 3 s after it {quiet} "
        f"(allowed up to {before + allowed:.0f}): " + ("OK" if back else "LEAK?")
    )
    return ok, lines


# --------------------------------------------------------------------------- main


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="traffic time")
    parser.add_argument("--rate", type=float, default=60.0, help="requests/s, all workers")
    parser.add_argument("--workers", type=int, default=24, help="concurrent clients")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default: 20%%)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="feathergate-soak-") as tmp:
        procs = Processes(Path(tmp))
        try:
            upstream_port, _ = start_upstream(procs, None, PLAIN_TOKENS)
            upstream = f"http://127.0.0.1:{upstream_port}/v1"
            config = Path(tmp) / "config.yaml"
            write_config(config, upstream)

            def argv(port: int) -> list[str]:
                args = [sys.executable, "-m", "feathergate", "serve", "--config", str(config)]
                return [*args, "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]

            spec = GatewaySpec("feathergate", argv, "/health", "feathergate serve")
            gateway = spec.start(procs, None)
            time.sleep(1.0)
            before = fds(gateway.pid)
            log(
                f"gateway pid {gateway.pid} on :{gateway.port}, upstream {upstream}; "
                f"{args.minutes:g} min at <= {args.rate:g} req/s, {args.workers} workers; "
                f"idle RSS {rss_mb(gateway.pid):.1f} MB, {before} fds"
            )
            tally, samples = asyncio.run(drive(args, gateway.port, gateway.pid))
            time.sleep(3.0)
            quiet = fds(gateway.pid)
            alive = gateway.proc.poll() is None
            ok, lines = verdict(args, tally, samples, (before, quiet))
            print("\n".join(lines))
            if not alive:
                print(f"the gateway exited: {procs.tail('feathergate')}")
                ok = False
            print(f"VERDICT: {'PASS' if ok else 'FAIL'}")
            return 0 if ok else 1
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            procs.close()


if __name__ == "__main__":
    sys.exit(main())
