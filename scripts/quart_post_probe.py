"""Does every keep-alive request get an answer? One client, one request a second.

    python scripts/quart_post_probe.py [--seconds 95] [--interval 1] [--path /v1/completions]
                                       [--method POST] [--timeout 5] [--url URL]

Starts ``feathergate`` (the shipped config) in a subprocess, on a port of
127.0.0.1 the kernel chooses, unless ``--url`` names a running one. Then
sends one small JSON request every ``--interval`` seconds over one
keep-alive ``httpx.Client`` for ``--seconds`` seconds. A request with no
response within ``--timeout`` seconds is counted as hung (the client then
opens a new connection), one that ends in a transport error (such as
"server disconnected") as failed. Prints one line for each, a summary, and
how long the gateway took to exit on SIGTERM (a connection stuck
mid-request used to hold that up); exits 1 if any request hung or failed.
``--interval 0`` sends back to back.

This is the loop that found the lost POSTs on Quart's routes (issue #9, part
8); ``tests/test_keepalive_body.py`` drives the same failure deterministically.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def local_gateway() -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    command = [sys.executable, "-m", "feathergate", "--config", str(ROOT / "feathergate.yaml")]
    process = subprocess.Popen(
        [*command, "--bind", "127.0.0.1:0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        deadline = time.monotonic() + 30
        for line in process.stderr:
            match = re.search(r"Running on (http://\S+)", line)
            if match:
                # Keep draining the log, so that the server never blocks on a full pipe.
                threading.Thread(target=process.stderr.read, daemon=True).start()
                yield match.group(1)
                return
            if time.monotonic() > deadline:
                break
        raise SystemExit(f"the gateway did not start: exit {process.poll()}")
    finally:
        stopping = time.monotonic()
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"SIGTERM to exit: {time.monotonic() - stopping:.1f} s (exit {process.returncode})")


def probe(url: str, args: argparse.Namespace) -> int:
    body = {"model": "demo", "prompt": "hi", "max_tokens": 1}
    hung = failed = sent = 0
    statuses: dict[int, int] = {}
    timeout = httpx.Timeout(args.timeout)
    ends = time.monotonic() + args.seconds
    with httpx.Client(base_url=url, timeout=timeout) as client:
        while time.monotonic() < ends:
            started = time.monotonic()
            sent += 1
            try:
                if args.method == "GET":
                    response = client.get(args.path)
                else:
                    response = client.request(args.method, args.path, json=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            except httpx.TimeoutException:
                hung += 1
                print(f"request {sent}: no response within {args.timeout:g} s", flush=True)
            except httpx.TransportError as exc:
                failed += 1
                print(f"request {sent}: {type(exc).__name__}: {exc}", flush=True)
            pause = args.interval - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
    print(f"{args.method} {args.path}: {sent} sent, {hung} hung, {failed} failed, {statuses}")
    return 1 if hung or failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=95.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--path", default="/v1/completions")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--url", help="a running gateway; default: start one")
    args = parser.parse_args()
    if args.url:
        sys.exit(probe(args.url, args))
    with local_gateway() as url:
        sys.exit(probe(url, args))


if __name__ == "__main__":
    main()
