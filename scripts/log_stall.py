"""Does a stalled log consumer stall requests? Measure it.

    .venv/bin/python scripts/log_stall.py [--requests 3000]

Runs the gateway twice on 127.0.0.1 with a ``mock_response`` model and the
access log on: once with its stderr read (to /dev/null), once with stderr a
pipe that nobody reads, so that after 64 KiB every write of the log blocks.
The same sequential requests go to each; it prints the latency percentiles,
how long the run took, and the ``feathergate_log_records_dropped`` counter.
With the writer thread and its bounded queue, the two runs look alike.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/x, mock_response: "Hello there"}
"""
BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(stalled: bool, requests: int, config: Path) -> dict[str, float]:
    port = free_port()
    command = [sys.executable, "-m", "feathergate", "--config", str(config)]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "info"]
    stderr = subprocess.PIPE if stalled else subprocess.DEVNULL
    process = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(200):  # up to 20 s for startup
                try:
                    http.get("/health/liveliness")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            latencies = []
            started = time.perf_counter()
            for _ in range(requests):
                t = time.perf_counter()
                response = http.post("/v1/chat/completions", json=BODY)
                latencies.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
            elapsed = time.perf_counter() - started
            metrics = http.get("/metrics").text
        dropped = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("feathergate_log_records_dropped_total")
        )
    finally:
        process.terminate()
        process.wait(30)
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "seconds": elapsed,
        "dropped": dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG)
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        for name, stalled in (("stderr read", False), ("stderr stalled", True)):
            r = run(stalled, args.requests, config)
            print(
                f"{name:15} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                f"max {r['max_ms']:.1f} ms  {args.requests} requests in {r['seconds']:.2f} s  "
                f"dropped {r['dropped']:.0f}"
            )


if __name__ == "__main__":
    main()
