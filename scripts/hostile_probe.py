"""What a concurrent small stream sees while the gateway chews on a 30 MB request.

    python scripts/hostile_probe.py [--size-mb 30] [--shapes transcript,parts,string]
                                    [--providers anthropic,gemini,openai]

Starts two ``scripts/fake_upstream.py`` (one for the small streams, one for
the large requests, whose JSON it parses) and ``feathergate serve`` as child
processes on 127.0.0.1 (so the probe's own work never shares the gateway's
GIL), then, for each body shape and provider:

* sends one large request (``--size-mb`` of JSON) to a deployment of that
  provider (the fake answers Anthropic's and Gemini's paths with 404: the
  gateway has parsed and translated the body by then, which is the point);
* meanwhile, back to back, small streaming requests to an OpenAI-compatible
  deployment, each timed from its send to its first SSE event (TTFT).

It prints the TTFT of the small streams with no large request in flight
(baseline) and while one was (p50, p99, max, in ms), and how long the large
request took. Shapes, all within the default limits (100,000 messages, 128
levels): ``transcript`` (the message cap's worth of ~300-byte messages),
``parts`` (a thousand messages of a thousand tiny text parts: the most
objects per byte), ``string`` (one message of one huge string).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "scripts" / "fake_upstream.py"
SMALL = {"model": "small", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _child(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    # Run from the log directory, not the checkout: `python -m feathergate`
    # would import the checkout's package first, whatever PYTHONPATH says.
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=sink, cwd=log.parent, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def _config(small: str, large: str) -> dict[str, Any]:
    def entry(name: str, model: str, upstream: str) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {"model": model, "api_base": upstream, "api_key": "sk-probe"},
        }

    return {
        "model_list": [
            entry("small", "openai/bench-fast", small),
            entry("anthropic", "anthropic/probe", large),
            entry("gemini", "gemini/probe", large),
            entry("openai", "openai/probe", large),
        ],
        "general_settings": {"max_request_size_mb": 64},
    }


def _body(shape: str, provider: str, size: int) -> bytes:
    if shape == "transcript":
        count = 100_000
        text = "x" * max(1, size // count - 40)
        messages = [{"role": "user", "content": text} for _ in range(count)]
    elif shape == "parts":
        parts = [{"type": "text", "text": "word"} for _ in range(1000)]
        count = max(1, size // len(json.dumps(parts)))
        messages = [{"role": "user", "content": parts} for _ in range(count)]
    else:
        messages = [{"role": "user", "content": "x" * size}]
    return json.dumps({"model": provider, "messages": messages}).encode()


async def _ttft(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=SMALL) as response:
        async for line in response.aiter_lines():  # read to the end: the connection is reused
            if first is None and line.startswith("data: "):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"no event from the small stream (HTTP {response.status_code})")
    return first


async def _streams_while(client: httpx.AsyncClient, busy: trio.Event, out: list[float]) -> None:
    while not busy.is_set():
        out.append(await _ttft(client))


async def _one_run(base: str, big: bytes) -> tuple[list[float], float, int]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=120) as small,
        httpx.AsyncClient(base_url=base, timeout=120) as large,
    ):
        await _ttft(small)  # warm the connection
        done = trio.Event()
        ttfts: list[float] = []
        result: list[Any] = []

        async def send_big() -> None:
            started = time.perf_counter()
            headers = {"content-type": "application/json"}
            response = await large.post("/v1/chat/completions", content=big, headers=headers)
            result.extend([time.perf_counter() - started, response.status_code])
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_big)
            nursery.start_soon(_streams_while, small, done, ttfts)
        return ttfts, result[0], result[1]


async def _baseline(base: str, count: int) -> list[float]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await _ttft(client)
        return [await _ttft(client) for _ in range(count)]


def _ms(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f}  p99 {p99 * 1000:6.1f}  "
        f"max {ordered[-1] * 1000:6.1f} ms  (n={len(ordered)})"
    )


async def _probe(base: str, args: argparse.Namespace) -> None:
    print(f"baseline, no large request:  {_ms(await _baseline(base, 50))}")
    size = args.size_mb * 1024 * 1024
    for shape in args.shapes.split(","):
        for provider in args.providers.split(","):
            big = _body(shape, provider, size)
            ttfts, took, status = await _one_run(base, big)
            label = f"{shape:10} {provider:9} {len(big) / 1e6:5.1f} MB"
            print(f"{label}: large took {took:5.2f}s (HTTP {status}); small TTFT {_ms(ttfts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=30)
    parser.add_argument("--shapes", default="transcript,parts,string")
    parser.add_argument("--providers", default="anthropic,gemini,openai")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        fake = [sys.executable, str(FAKE), "--port", "0"]
        with (
            _child(fake, logs / "small.log") as small,
            _child(fake, logs / "large.log") as large,
        ):
            config = logs / "config.json"
            config.write_text(json.dumps(_config(_upstream(small), _upstream(large))))
            port = _free_port()
            gateway = [sys.executable, "-m", "feathergate", "serve", "--config", str(config)]
            gateway += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
            with _child(gateway, logs / "gateway.log"):
                base = f"http://127.0.0.1:{port}"
                _wait_ready(base, logs / "gateway.log")
                print(f"feathergate ({_which(logs)}) at {base}")
                trio.run(_probe, base, args)


def _which(cwd: Path) -> str:
    """Where the gateway's ``feathergate`` package comes from (PYTHONPATH, or installed)."""
    code = "import feathergate, os; print(os.path.dirname(feathergate.__file__))"
    where = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    return where.stdout.strip()


def _upstream(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    ready = proc.stdout.readline().decode().split()
    if ready[:1] != ["READY"]:
        raise SystemExit(f"fake upstream did not start: {ready!r}")
    return f"http://127.0.0.1:{ready[1]}"


def _wait_ready(base: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/readiness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the gateway did not start:\n{log.read_text(errors='replace')[-2000:]}")


if __name__ == "__main__":
    main()
