"""FeatherGate's benchmark suite: what the gateway costs over talking to the upstream directly.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench.py                  # full run, 3 to 4 minutes
    .venv/bin/python scripts/bench.py --quick          # smaller counts, about 70 s
    .venv/bin/python scripts/bench.py --only latency,ttft
    .venv/bin/python scripts/bench.py --only chunks     # CPU per chunk vs a floor proxy
    .venv/bin/python scripts/bench.py --compare 'litellm --config {config} --port {port}'
    .venv/bin/python scripts/bench.py --only latency --redis     # shared state's cost
    # another tree (git archive OLD | tar -x -C /tmp/old) side by side with this one:
    .venv/bin/python scripts/bench.py --only latency --compare 'env -C /tmp/old \
        $PWD/.venv/bin/python -m feathergate serve --config {config} --bind 127.0.0.1:{port}'

It needs ``wrk`` (``apt-get install -y wrk``) and prints a table, then, as
its last line, one JSON object with every figure. ``--compare`` runs its
command as ``sh -c "exec COMMAND"`` and waits for ``--compare-health``
(``/health/liveliness``, which LiteLLM and FeatherGate both answer).

Processes
---------
Everything runs on 127.0.0.1, each in its own process (and process group, so
that every child is ended on exit, Ctrl-C or an exception):

* the **fake upstream**, ``scripts/fake_upstream.py``: a bare asyncio
  HTTP/1.1 server answering OpenAI chat completions (JSON, or SSE with a
  per-request number of tokens and interval, ending in ``data: [DONE]``);
  about 40,000 requests/s on one core, so it is never the bottleneck;
* the **gateway**: ``python -m feathergate serve --config <temp> --bind
  127.0.0.1:<port> --log-level warning [--workers N]``, with a generated
  LiteLLM-style config whose ``openai/`` models point at the fake upstream
  (``api_base``) with a literal ``api_key``. ``--compare CMD`` starts a second
  gateway the same way (``{port}``, ``{upstream}``, ``{config}`` substituted)
  and runs the same measurements against it, after FeatherGate's;
* the **load**: ``wrk`` with ``scripts/bench_post.lua`` for non-streaming
  requests, and this process's own asyncio raw-socket clients
  (``scripts/bench_clients.py``) for streams.

Each section (rss, latency/cpu, ttft, streams) gets a freshly started
gateway, so that no section inherits another's state and ``--only`` measures
what a full run does; startup starts its own five.

CPU pinning (2-core machine): the gateway runs on CPU 0 alone; the fake
upstream, wrk, the stream clients and this script share CPU 1 (the
equivalent of ``taskset -c 0`` / ``taskset -c 1``, set with
``os.sched_setaffinity``). The load generator therefore never steals the
gateway's core, and "direct" and "through the gateway" runs put the same
processes on the same CPU. With ``--workers N > 1`` the gateway gets every
CPU but the load's (on 2 cores: both, shared with the load; the table says
so). With ``--no-pin`` nothing is pinned.

Figures, and how each is measured
---------------------------------
latency
    Non-streaming chat completions (a 16-token ``chat.completion``, 351 bytes)
    at concurrency 1, 16 and 64, DIRECT (wrk -> fake upstream) and THROUGH the
    gateway (wrk -> gateway -> fake upstream): requests/s and p50/p99
    latency. wrk runs one connection per thread and the Lua script times every
    request itself (wrk's own histogram is wrong on this machine; see
    ``bench_post.lua``). Each run is bounded by time (``-d``) and by a request
    count, after a short unmeasured warm-up at the same concurrency. **Added
    latency** = gateway minus direct at concurrency 1, for p50 and p99.
cpu
    The gateway's CPU per request: utime+stime of the gateway's process tree
    (``/proc/<pid>/stat``) before and after a run, divided by the requests the
    run completed; shown for every gateway run, judged at concurrency 16.
    "busy" is the same CPU time divided by the run's wall time (100% = one
    core saturated). "other" is the CPU that *other* processes took on the
    gateway's core meanwhile (``/proc/stat`` minus the gateway's own time):
    anything above a few percent means something else on the machine (a test
    suite, a build) disturbed the run, and the table says so.
ttft
    Time to first token of a stream: from writing the request to the first
    byte of the response body (the first SSE ``data:`` byte), over ``N``
    streams in a row on one keep-alive connection (concurrency 1), direct and
    through the gateway; median and p99, and the **added TTFT** (gateway minus
    direct). Each stream is 5 tokens, one per 2 ms, and must end correctly.
streams
    Concurrent streams held: ``N`` streams (default 1,000) opened at once,
    each 100 tokens at one per 50 ms (5 s), read to the end by asyncio
    clients with one socket each; counted "completed" when the status is 200,
    every token arrived, there was no error event and the body ended with
    ``data: [DONE]``. Streams still open after a bound (40 s) are abandoned.
    The gateway's RSS is sampled every 100 ms (peak reported), and its CPU per
    stream is reported too.
embeddings
    The gateway's CPU per ``POST /v1/embeddings`` passthrough (base64, what the
    ``openai`` SDK asks for) beside its CPU per non-streaming chat completion
    of the same size: the chat request body is padded to the embeddings
    request's byte count and its answer (``max_tokens``) to the embeddings
    answer's, both measured on the fake upstream first. Two shapes: 64 inputs
    of 1,536 dimensions (a 4 KB request, a 530 KB answer) and 2,048 inputs of
    256 dimensions (the most OpenAI takes in one request: 122 KB, 2.9 MB). wrk at concurrency
    16, warm-up first, as for cpu. The **ratio** embeddings / chat must not
    exceed 1.

chunks
    CPU per relayed chunk against a floor: ``N`` streams (default 1,000) opened
    at once, 200 chunks each, one per 100 ms, through the **floor**
    (``scripts/floor_proxy.py``: a Trio TCP proxy that copies bytes both ways,
    pinned like the gateway), then through the gateway relaying an OpenAI
    passthrough stream, the Anthropic translation and the Gemini translation
    (a fresh gateway each). The target's CPU over the burst (the streams'
    requests included) divided by the token chunks delivered. Also: the
    burst's first tokens (p50/p99/max from each request's write), the longest
    silence of any stream between two reads, and the time to first token of
    short streams (5 tokens) started on new connections every 0.2 s meanwhile.
rss
    VmRSS (``/proc/<pid>/status``, summed over the process tree) of a freshly
    started gateway: idle (1 s after its first ``/health`` 200, before any
    chat request), then after every batch of non-streaming requests up to
    20,000 at concurrency 16 (within 120 s; a slower gateway reports what it
    got through). "No upward trend" means the RSS grew by at most 1 MB over
    the second half of the requests.
redis (``--redis``)
    Two more FeatherGate targets, latency and CPU sections only, with a
    ``redis-server`` (``--save '' --appendonly no``) on the load's CPU:
    ``redis`` has shared state on and no limits (no Redis round trip on the
    request path: its CPU per request should be within 5% of plain
    ``feathergate``); ``redis-rpm`` also gives the benchmarked deployment an
    rpm and a tpm too large to refuse anything, so every request runs the one
    admission script. **Added latency with limits** = ``redis-rpm`` minus
    ``feathergate`` at concurrency 1, p50 (goal: <= 0.6 ms).
startup
    Spawn to the first ``/health`` 200 (polled every 2 ms), median of 5 cold
    starts. Beside it the **floor**: ``python -c "import trio, hypercorn,
    quart_trio, httpx, yaml, prometheus_client, click"``, timed from spawn to
    the moment it reports its VmRSS after the imports (median of 5); that
    RSS is the memory floor. Both run on the gateway's CPU.

Targets (PASS/MISS in the table): CPU per chunk <= 1.5x the floor's (OpenAI
passthrough) and <= 2x (Anthropic, Gemini); the burst's first-token p99 <=
1.5x the floor's, no stream silent for more than 1 s, short streams' TTFT p50
<= 20 ms; CPU per non-streaming request <= 1.0 ms;
CPU per embeddings passthrough <= CPU per chat passthrough of the same size;
added latency p50 <= 1.0 ms and p99 <= 2.0 ms at concurrency 1; added TTFT
(median) <= 1.5 ms; 1,000 concurrent streams all completed with RSS <= 150 MB;
startup <= 1.2x the import floor; idle RSS <= floor RSS + 10 MB; RSS after
20,000 requests <= 60 MB with no upward trend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench_clients import StreamsResult, TTFTResult, hold_streams, measure_ttft, probe_ttft

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "bench_post.lua"
FAKE = HERE / "fake_upstream.py"
FLOOR_PROXY = HERE / "floor_proxy.py"

SECTIONS = ("latency", "cpu", "embeddings", "ttft", "streams", "chunks", "rss", "startup")
# The chunks section's targets: the floor proxy, then the gateway per upstream API.
CHUNK_APIS = ("openai", "anthropic", "gemini")
CHUNK_TARGETS: dict[str, float] = {"openai": 1.5, "anthropic": 2.0, "gemini": 2.0}  # x floor
SHORT_TOKENS = 5  # the short streams started during the chunks run
SHORT_EVERY = 0.2  # seconds between two of them
CONCURRENCY = (1, 16, 64)
CPU_JUDGED_AT = 16
FLOOR_IMPORTS = "trio, hypercorn, quart_trio, httpx, yaml, prometheus_client, click"
CHAT_PATH = "/v1/chat/completions"
API_KEY = "sk-bench"
FAST_MODEL = "bench-fast"  # JSON, or every token at once
REDIS_TARGETS: tuple[tuple[str, dict[str, int]], ...] = (
    ("redis", {}),
    ("redis-rpm", {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000}),
)
REDIS_NAMES = frozenset(name for name, _ in REDIS_TARGETS)
TTFT_MODEL = "bench-2ms"  # one token per 2 ms
TTFT_TOKENS = 5
EMBED_PATH = "/v1/embeddings"
EMBED_MODEL = "bench-embed"
PADDED_MODEL = "bench-padded"  # chat, its request and answer sized like an embeddings call
EMBED_SHAPES = ((64, 1536), (2048, 256))  # (inputs, dimensions)
PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of everything one run does (``--quick`` shrinks it)."""

    load_seconds: float  # one wrk run
    warmup_seconds: float
    max_requests: int  # the count bound of one wrk run
    ttft_streams: int
    streams: int
    stream_tokens: int
    stream_interval_ms: int
    stream_bound: float  # seconds before open streams are abandoned
    chunk_streams: int  # the chunks section: streams opened at once
    chunk_count: int  # chunks per stream
    chunk_interval_ms: int
    rss_requests: int
    rss_batches: int
    rss_bound: float  # seconds for all the rss batches together
    starts: int


FULL = Plan(8.0, 1.0, 400_000, 200, 1000, 100, 50, 60.0, 1000, 200, 100, 20_000, 10, 120.0, 5)
QUICK = Plan(2.0, 1.0, 100_000, 50, 200, 40, 50, 20.0, 200, 50, 100, 4_000, 4, 30.0, 3)
"""--quick: about 70 s; the default run takes 3 to 4 minutes on 2 cores."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True)
class Layout:
    """Which CPUs each side runs on (None: not pinned)."""

    gateway: frozenset[int] | None
    load: frozenset[int] | None
    note: str


def layout(pin: bool, workers: int) -> Layout:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Layout(None, None, "no CPU pinning")
    load = frozenset({cpus[-1]})
    rest = frozenset(cpus[:-1])
    if workers == 1:
        gateway = frozenset({cpus[0]})
    else:
        gateway = rest if len(rest) >= workers else frozenset(cpus)
    shared = " (shared with the load)" if gateway & load else ""
    note = (
        f"gateway on CPU {_cpus(gateway)}{shared}; "
        f"fake upstream, wrk and the stream clients on CPU {_cpus(load)}"
    )
    return Layout(gateway, load, note)


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


class Processes:
    """Every child this script starts, each in its own process group; all ended by ``close``."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.live: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: list[str],
        name: str,
        cpus: frozenset[int] | None,
        *,
        stdout_pipe: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        logfile = self.logdir / f"{name}.log"
        with logfile.open("ab") as sink:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else sink,
                stderr=sink,
                cwd=ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=_pinner(cpus),
            )
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """SIGTERM, SIGKILL after ``grace`` s, then SIGKILL to whatever is left in its group."""
        try:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            if proc in self.live:
                self.live.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.live)):
            self.stop(proc, grace=3.0)

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.logdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _pinner(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_line(proc: subprocess.Popen[bytes], seconds: float) -> bytes:
    """One line of the child's stdout, waiting at most ``seconds``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + seconds
    while not buffer.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no output from the child process")
        byte = os.read(fd, 1)
        if not byte:
            raise RuntimeError("the child process closed its output")
        buffer += byte
    return buffer


# --------------------------------------------------------------------------- /proc


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``'s process tree, in seconds."""
    ticks = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / CLK_TCK


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid``'s process tree, in MiB ("MB" in the report)."""
    kb = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmRSS:"):
                        kb += int(line.split()[1])
                        break
        except OSError:
            continue
    return kb / 1024


# --------------------------------------------------------------------------- servers


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET path``, or None when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return None
                head += data
            return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(slots=True)
class Gateway:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    ready_after: float  # seconds from spawn to the first health 200

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"

    @property
    def embeddings_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{EMBED_PATH}"


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """How to start one gateway under test."""

    name: str
    argv: Callable[[int], list[str]]  # port -> argv
    health: str
    display: str

    def start(self, procs: Processes, cpus: frozenset[int] | None, bound: float = 60.0) -> Gateway:
        port = free_port()
        started = time.perf_counter()
        proc = procs.start(self.argv(port), self.name, cpus)
        while True:
            if http_status(port, self.health, timeout=1.0) == 200:
                return Gateway(self.name, proc, port, time.perf_counter() - started)
            if proc.poll() is not None or time.perf_counter() - started > bound:
                procs.stop(proc)
                raise RuntimeError(
                    f"{self.name} did not answer {self.health} with 200 "
                    f"(exit status {proc.returncode}); its log:\n{procs.tail(self.name)}"
                )
            time.sleep(0.002)


def feathergate_spec(config: Path, workers: int, log_level: str = "warning") -> GatewaySpec:
    """``warning`` leaves the access log out; ``info`` (the default when serving) writes it."""

    def argv(port: int) -> list[str]:
        args = [sys.executable, "-m", "feathergate", "serve", "--config", str(config)]
        args += ["--bind", f"127.0.0.1:{port}", "--log-level", log_level]
        return [*args, "--workers", str(workers)] if workers != 1 else args

    display = "python -m feathergate serve --config CONFIG --bind 127.0.0.1:PORT"
    return GatewaySpec("feathergate", argv, "/health", display + f" --log-level {log_level}")


def compare_spec(command: str, config: Path, upstream: str, health: str) -> GatewaySpec:
    def argv(port: int) -> list[str]:
        filled = command.format(port=port, upstream=upstream, config=shlex.quote(str(config)))
        return ["/bin/sh", "-c", f"exec {filled}"]

    return GatewaySpec("compare", argv, health, command)


def write_config(
    path: Path,
    upstream: str,
    stream_model: str,
    chunk_model: str,
    *,
    redis_port: int | None = None,
    limits: dict[str, int] | None = None,
) -> None:
    # JSON is YAML: one openai/ deployment per stream shape, all on the same fake.
    models = [
        {
            "model_name": name,
            "litellm_params": {"model": f"openai/{name}", "api_base": upstream, "api_key": API_KEY},
        }
        for name in (FAST_MODEL, TTFT_MODEL, stream_model, EMBED_MODEL, PADDED_MODEL)
    ]
    models[0]["litellm_params"].update(limits or {})
    root = upstream.removesuffix("/v1")  # Anthropic and Gemini take the host root
    for api in CHUNK_APIS:
        base = upstream if api == "openai" else root
        params = {"model": f"{api}/{chunk_model}", "api_base": base, "api_key": API_KEY}
        models.append({"model_name": f"chunks-{api}", "litellm_params": params})
    config: dict[str, Any] = {"model_list": models}
    if redis_port is not None:
        config["router_settings"] = {"redis_host": "127.0.0.1", "redis_port": redis_port}
    path.write_text(json.dumps(config, indent=2) + "\n")


def start_redis(procs: Processes, cpus: frozenset[int] | None) -> int:
    """A ``redis-server`` without persistence on a free port; returns the port."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise RuntimeError("--redis needs redis-server (apt-get install -y redis-server)")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = procs.start(argv, "redis", cpus, stdout_pipe=True)
    deadline = time.monotonic() + 15.0
    while b"Ready to accept connections" not in read_line(proc, deadline - time.monotonic()):
        pass
    return port


def start_upstream(
    procs: Processes, cpus: frozenset[int] | None, tokens: int
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start the fake upstream; returns the port it listens on, and its process."""
    proc = procs.start(
        [sys.executable, str(FAKE), "--port", "0", "--tokens", str(tokens)],
        "fake_upstream",
        cpus,
        stdout_pipe=True,
    )
    line = read_line(proc, 15.0).decode().split()
    if len(line) != 2 or line[0] != "READY":
        raise RuntimeError(f"fake upstream said {line!r}: {procs.tail('fake_upstream')}")
    return int(line[1]), proc


# --------------------------------------------------------------------------- load (wrk)


@dataclass(slots=True)
class Load:
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors plus non-200 responses
    cpu_ms_per_request: float | None = None  # gateway runs only
    cpu_busy: float | None = None  # gateway CPU seconds / wall seconds
    # CPU that other processes took on the gateway's cores during the run, as a
    # share of wall time: anything but ~0 means the figures are disturbed.
    other_busy: float | None = None


def body(model: str, *, tokens: int = 16, stream: bool = False) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": PROMPT, "max_tokens": tokens}
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


def wrk(
    procs: Processes,
    cpus: frozenset[int] | None,
    url: str,
    concurrency: int,
    seconds: float,
    max_requests: int,
    payload: bytes | None = None,
) -> Load:
    """One wrk run: ``concurrency`` connections, at most ``seconds`` and ``max_requests``.

    Every request POSTs ``payload`` (default: a 16-token chat completion).
    """
    per_thread = max(1, math.ceil(max_requests / concurrency))
    env = {
        **os.environ,
        "BENCH_BODY": (payload or body(FAST_MODEL)).decode(),
        "BENCH_REQUESTS": str(per_thread),
    }
    whole = max(1, round(seconds))  # wrk takes whole seconds
    argv = ["wrk", f"-t{concurrency}", f"-c{concurrency}", f"-d{whole}s", "--timeout", "10s"]
    proc = procs.start([*argv, "-s", str(LUA), url], "wrk", cpus, stdout_pipe=True, env=env)
    result: dict[str, Any] | None = None
    stopped = 0
    output: list[bytes] = []
    try:
        while True:
            line = read_line(proc, whole + 30.0)
            output.append(line)
            if line.startswith(b"BENCH_STOP"):
                stopped += 1
                if stopped == concurrency:
                    # Every thread reached its count: wrk's main thread would
                    # still sleep out -d, so wake it up (SIGINT ends the run).
                    os.kill(proc.pid, signal.SIGINT)
            elif line.startswith(b"BENCH_JSON "):
                result = json.loads(line[len(b"BENCH_JSON ") :])
                break
    except (RuntimeError, TimeoutError) as exc:
        said = b"".join(output[-10:]).decode(errors="replace")
        raise RuntimeError(f"wrk failed ({exc}): {said}{procs.tail('wrk')}") from exc
    finally:
        procs.stop(proc)
    lat = result["latency_us"]
    requests = int(result["requests"])
    elapsed = result["elapsed_us"] / 1e6
    errors = sum(result["errors"].values()) + int(result["non_200"])
    return Load(
        concurrency,
        requests,
        elapsed,
        requests / elapsed,
        lat["p50"] / 1e3,
        lat["p90"] / 1e3,
        lat["p99"] / 1e3,
        lat["max"] / 1e3,
        errors,
    )


class CPUMeter:
    """The gateway's CPU time over an interval, and what other processes took of its cores."""

    def __init__(self, gateway: Gateway, lay: Layout) -> None:
        self.pid = gateway.pid
        # Only meaningful when the gateway has cores of its own.
        self.cores = (
            lay.gateway if lay.gateway and not (lay.gateway & (lay.load or set())) else None
        )
        self.started = time.perf_counter()
        self.gateway_before = cpu_seconds(self.pid)
        self.cores_before = busy_seconds(self.cores) if self.cores else 0.0

    def stop(self) -> tuple[float, float, float | None]:
        """(gateway CPU seconds, wall seconds, other processes' share of the gateway's cores)."""
        spent = cpu_seconds(self.pid) - self.gateway_before
        wall = time.perf_counter() - self.started
        other = None
        if self.cores:
            other = max(0.0, busy_seconds(self.cores) - self.cores_before - spent) / wall
        return spent, wall, other


def busy_seconds(cpus: frozenset[int]) -> float:
    """Busy time (all but idle, iowait and steal) of ``cpus`` since boot, from /proc/stat."""
    ticks = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
                ticks += user + nice + system + irq + softirq
    return ticks / CLK_TCK


def measured_wrk(
    ctx: Context,
    gateway: Gateway | None,
    url: str,
    concurrency: int,
    seconds: float,
    payload: bytes | None = None,
) -> Load:
    """A wrk run with the gateway's CPU time around it (when there is a gateway)."""
    meter = CPUMeter(gateway, ctx.layout) if gateway else None
    load = wrk(
        ctx.procs, ctx.layout.load, url, concurrency, seconds, ctx.plan.max_requests, payload
    )
    if meter is not None and load.requests:
        spent, _, load.other_busy = meter.stop()
        load.cpu_ms_per_request = spent * 1000 / load.requests
        load.cpu_busy = spent / load.seconds
    return load


# --------------------------------------------------------------------------- sections


@dataclass(slots=True)
class Context:
    plan: Plan
    procs: Processes
    layout: Layout
    upstream_port: int
    upstream_pid: int
    sections: frozenset[str]

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}{CHAT_PATH}"

    @property
    def stream_model(self) -> str:
        return f"bench-{self.plan.stream_interval_ms}ms"

    @property
    def chunk_model(self) -> str:
        return f"bench-{self.plan.chunk_interval_ms}ms"


def run_load(
    ctx: Context, gateway: Gateway | None, concurrencies: tuple[int, ...]
) -> dict[int, Load]:
    """Non-streaming runs (warm-up first) at each concurrency, direct when ``gateway`` is None."""
    plan = ctx.plan
    url = gateway.url if gateway else ctx.direct_url
    name = gateway.name if gateway else "direct"
    results: dict[int, Load] = {}
    for c in concurrencies:
        wrk(ctx.procs, ctx.layout.load, url, c, plan.warmup_seconds, plan.max_requests)
        load = measured_wrk(ctx, gateway, url, c, plan.load_seconds)
        cpu = f", CPU {load.cpu_ms_per_request:.2f} ms/req" if load.cpu_ms_per_request else ""
        log(
            f"{name:11} c={c:<3} {load.rps:9,.0f} req/s  p50 {load.p50_ms:.3f} ms  "
            f"p99 {load.p99_ms:.3f} ms  errors {load.errors}{cpu}"
        )
        results[c] = load
    return results


@dataclass(slots=True)
class EmbeddingsLevel:
    inputs: int
    dimensions: int
    request_bytes: int  # both requests' bodies
    response_bytes: int  # the embeddings answer's body (the chat answer's within a few bytes)
    chat: Load
    embeddings: Load

    @property
    def ratio(self) -> float:
        chat, embed = self.chat.cpu_ms_per_request, self.embeddings.cpu_ms_per_request
        return embed / chat if chat and embed is not None else math.nan


def post_direct(port: int, path: str, payload: bytes) -> bytes:
    """The body of one POST to the fake upstream, which answers with a content-length."""
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    head_end = data.index(b"\r\n\r\n")
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"fake upstream answered {data[:head_end]!r}")
    return data[head_end + 4 :]


def embeddings_payload(inputs: int, dimensions: int) -> bytes:
    texts = [f"passage {i}: the quick brown fox jumps over the lazy dog" for i in range(inputs)]
    payload = {
        "model": EMBED_MODEL,
        "input": texts,
        "encoding_format": "base64",
        "dimensions": dimensions,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def padded_chat_payload(request_bytes: int, tokens: int) -> bytes:
    """A chat request of exactly ``request_bytes`` bytes asking for ``tokens`` tokens."""

    def build(pad: int) -> bytes:
        messages = [{"role": "user", "content": "x" * pad}]
        payload = {"model": PADDED_MODEL, "messages": messages, "max_tokens": tokens}
        return json.dumps(payload, separators=(",", ":")).encode()

    return build(max(0, request_bytes - len(build(0))))


def run_embeddings(ctx: Context, gateway: Gateway) -> list[EmbeddingsLevel]:
    plan = ctx.plan
    levels = []
    for inputs, dimensions in EMBED_SHAPES:
        embed = embeddings_payload(inputs, dimensions)
        answer = len(post_direct(ctx.upstream_port, EMBED_PATH, embed))
        # The fake's chat answer grows by 6 bytes a token ("token " each).
        one = len(post_direct(ctx.upstream_port, CHAT_PATH, padded_chat_payload(0, 1)))
        tokens = max(1, (answer - one) // 6 + 1)
        chat = padded_chat_payload(len(embed), tokens)
        loads = []
        for url, payload in ((gateway.url, chat), (gateway.embeddings_url, embed)):
            wrk(
                ctx.procs,
                ctx.layout.load,
                url,
                CPU_JUDGED_AT,
                plan.warmup_seconds,
                plan.max_requests,
                payload,
            )
            loads.append(measured_wrk(ctx, gateway, url, CPU_JUDGED_AT, plan.load_seconds, payload))
        level = EmbeddingsLevel(inputs, dimensions, len(embed), answer, *loads)
        log(
            f"{gateway.name:11} embeddings {inputs}x{dimensions} "
            f"({level.request_bytes:,} B -> {answer:,} B): CPU "
            f"{_num(level.embeddings.cpu_ms_per_request)} ms/req, chat of the same size "
            f"{_num(level.chat.cpu_ms_per_request)} ms/req, errors "
            f"{level.embeddings.errors}+{level.chat.errors}"
        )
        levels.append(level)
    return levels


@dataclass(slots=True)
class TTFT:
    streams: int
    failed: int
    median_ms: float
    p99_ms: float


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def run_ttft(ctx: Context, port: int, name: str) -> TTFT:
    payload = body(TTFT_MODEL, tokens=TTFT_TOKENS, stream=True)
    asyncio.run(measure_ttft("127.0.0.1", port, CHAT_PATH, payload, TTFT_TOKENS, 10, 10.0))
    result = asyncio.run(
        measure_ttft(
            "127.0.0.1", port, CHAT_PATH, payload, TTFT_TOKENS, ctx.plan.ttft_streams, 10.0
        )
    )
    ms = [t * 1000 for t in result.ttft]
    ttft = TTFT(
        len(ms), result.failed, statistics.median(ms) if ms else math.nan, percentile(ms, 99)
    )
    log(
        f"{name:11} TTFT median {ttft.median_ms:.3f} ms  p99 {ttft.p99_ms:.3f} ms  "
        f"({ttft.streams} ok, {ttft.failed} failed)"
    )
    return ttft


@dataclass(slots=True)
class Streams:
    opened: int
    started: int  # streams that got a first body byte
    completed: int
    errors: dict[str, int]
    tokens: int  # per stream
    interval_ms: int
    all_open_s: float  # until every stream had its first byte (0: never)
    duration_p50_s: float  # of the completed streams
    duration_p99_s: float
    elapsed_s: float
    tokens_per_s: float  # tokens delivered to the clients per second, over the run
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    cpu_ms_per_stream: float
    cpu_us_per_token: float
    cpu_busy: float  # gateway CPU seconds / wall seconds
    load_cpu_busy: float  # the same for the load side (fake upstream + stream clients)
    other_busy: float | None  # other processes' share of the gateway's cores


def run_streams(ctx: Context, gateway: Gateway) -> Streams:
    plan = ctx.plan
    payload = body(ctx.stream_model, tokens=plan.stream_tokens, stream=True)
    rss_before = rss_mb(gateway.pid)
    peak = rss_before

    def sample() -> None:
        nonlocal peak
        peak = max(peak, rss_mb(gateway.pid))

    meter = CPUMeter(gateway, ctx.layout)
    load_before = cpu_seconds(ctx.upstream_pid) + sum(os.times()[:2])
    result = asyncio.run(
        hold_streams(
            "127.0.0.1",
            gateway.port,
            CHAT_PATH,
            payload,
            plan.stream_tokens,
            plan.streams,
            plan.stream_bound,
            tick=sample,
        )
    )
    cpu, _, other = meter.stop()
    load_cpu = cpu_seconds(ctx.upstream_pid) + sum(os.times()[:2]) - load_before
    sample()
    time.sleep(1.0)  # let the gateway close its upstream connections before the "after" sample
    done = [o.duration for o in result.outcomes if o.ok]
    delivered = result.tokens
    streams = Streams(
        opened=plan.streams,
        started=result.started,
        completed=result.completed,
        errors=result.errors(),
        tokens=plan.stream_tokens,
        interval_ms=plan.stream_interval_ms,
        all_open_s=result.all_open,
        duration_p50_s=statistics.median(done) if done else math.nan,
        duration_p99_s=percentile(done, 99),
        elapsed_s=result.elapsed,
        tokens_per_s=delivered / result.elapsed,
        rss_before_mb=rss_before,
        rss_peak_mb=peak,
        rss_after_mb=rss_mb(gateway.pid),
        cpu_ms_per_stream=cpu * 1000 / max(1, result.started),
        cpu_us_per_token=cpu * 1e6 / max(1, delivered),
        cpu_busy=cpu / result.elapsed,
        load_cpu_busy=load_cpu / result.elapsed,
        other_busy=other,
    )
    log(
        f"{gateway.name:11} streams {streams.completed}/{streams.opened} completed, "
        f"peak RSS {streams.rss_peak_mb:.1f} MB, duration p50 {streams.duration_p50_s:.2f} s "
        f"p99 {streams.duration_p99_s:.2f} s, errors {streams.errors}"
    )
    return streams


@dataclass(slots=True)
class Chunks:
    """One burst of long streams through one target: CPU per chunk, first tokens, stalls."""

    target: str
    opened: int
    completed: int
    errors: dict[str, int]
    chunks: int  # token chunks delivered to the clients
    elapsed_s: float
    cpu_s: float
    cpu_us_per_chunk: float
    cpu_busy: float
    other_busy: float | None
    first_p50_ms: float  # first body byte of the burst's streams, from the request's write
    first_p99_ms: float
    first_max_ms: float
    max_stall_s: float  # the longest silence of any stream between two body reads
    stalls_over_1s: int  # streams with such a silence above 1 s
    short_p50_ms: float  # short streams started during the burst (new connection each)
    short_p99_ms: float
    short_count: int
    short_failed: int
    short_failures: dict[str, int]


async def _burst(
    port: int, payload: bytes, short: bytes, plan: Plan, tick: Callable[[], None]
) -> tuple[StreamsResult, TTFTResult]:
    stop = asyncio.Event()
    probing = asyncio.create_task(
        probe_ttft("127.0.0.1", port, CHAT_PATH, short, SHORT_TOKENS, stop, SHORT_EVERY, 10.0)
    )
    bound = plan.chunk_count * plan.chunk_interval_ms / 1000 * 3 + 10
    try:
        held = await hold_streams(
            "127.0.0.1", port, CHAT_PATH, payload, plan.chunk_count, plan.chunk_streams, bound, tick
        )
    finally:
        stop.set()
    return held, await probing


def start_floor(ctx: Context) -> tuple[int, subprocess.Popen[bytes]]:
    argv = [sys.executable, str(FLOOR_PROXY), "--upstream", str(ctx.upstream_port)]
    proc = ctx.procs.start(argv, "floor_proxy", ctx.layout.gateway, stdout_pipe=True)
    line = read_line(proc, 15.0).decode().split()
    if len(line) != 2 or line[0] != "READY":
        raise RuntimeError(f"floor proxy said {line!r}: {ctx.procs.tail('floor_proxy')}")
    return int(line[1]), proc


def run_chunks(ctx: Context, gateway: Gateway, model: str, name: str, api: str) -> Chunks:
    """``chunk_streams`` streams at once, ``chunk_count`` chunks each, through ``gateway``.

    The gateway's CPU is read from /proc around the whole burst (the streams'
    requests included) and divided by the token chunks delivered.
    """
    plan = ctx.plan
    payload = body(model, tokens=plan.chunk_count, stream=True)
    short_model = FAST_MODEL
    short = body(short_model, tokens=SHORT_TOKENS, stream=True)
    meter = CPUMeter(gateway, ctx.layout)
    held, probed = asyncio.run(_burst(gateway.port, payload, short, plan, lambda: None))
    cpu, _, other = meter.stop()
    firsts = [o.first_byte * 1000 for o in held.outcomes if o.first_byte]
    gaps = [o.max_gap for o in held.outcomes]
    shorts = [t * 1000 for t in probed.ttft]
    delivered = held.tokens
    result = Chunks(
        target=f"{name}/{api}",
        opened=plan.chunk_streams,
        completed=held.completed,
        errors=held.errors(),
        chunks=delivered,
        elapsed_s=held.elapsed,
        cpu_s=cpu,
        cpu_us_per_chunk=cpu * 1e6 / max(1, delivered),
        cpu_busy=cpu / held.elapsed,
        other_busy=other,
        first_p50_ms=statistics.median(firsts) if firsts else math.nan,
        first_p99_ms=percentile(firsts, 99),
        first_max_ms=max(firsts, default=math.nan),
        max_stall_s=max(gaps, default=0.0),
        stalls_over_1s=sum(1 for g in gaps if g > 1.0),
        short_p50_ms=statistics.median(shorts) if shorts else math.nan,
        short_p99_ms=percentile(shorts, 99),
        short_count=len(shorts),
        short_failed=probed.failed,
        short_failures=probed.reasons,
    )
    log(
        f"{result.target:21} chunks {result.completed}/{result.opened} complete, "
        f"CPU {result.cpu_us_per_chunk:.1f} us/chunk (busy {result.cpu_busy:.0%}), first "
        f"p50 {result.first_p50_ms:.0f} p99 {result.first_p99_ms:.0f} ms, max stall "
        f"{result.max_stall_s:.2f} s, short TTFT p50 {result.short_p50_ms:.1f} ms, "
        f"errors {result.errors}"
    )
    return result


def run_floor_chunks(ctx: Context) -> Chunks:
    """The same burst through the floor proxy (OpenAI's stream, no gateway)."""
    port, proc = start_floor(ctx)
    floor = Gateway("floor", proc, port, 0.0)
    try:
        return run_chunks(ctx, floor, ctx.chunk_model, "floor", "openai")
    finally:
        ctx.procs.stop(proc)


@dataclass(slots=True)
class Memory:
    idle_mb: float
    samples: list[tuple[int, float]]  # (requests so far, RSS MB)
    final_mb: float
    requests: int
    growth_second_half_mb: float
    errors: int


def run_rss(ctx: Context, gateway: Gateway) -> Memory:
    plan = ctx.plan
    time.sleep(1.0)
    idle = rss_mb(gateway.pid)
    log(f"{gateway.name:11} idle RSS {idle:.1f} MB")
    batch = plan.rss_requests // plan.rss_batches
    done, errors = 0, 0
    samples: list[tuple[int, float]] = []
    give_up = time.monotonic() + plan.rss_bound
    for _ in range(plan.rss_batches):
        # Count-bounded; the time bound only cuts short a gateway too slow for the budget.
        left = give_up - time.monotonic()
        if left < 1:
            log(f"{gateway.name:11} RSS: time budget spent after {done:,} requests")
            break
        load = wrk(ctx.procs, ctx.layout.load, gateway.url, CPU_JUDGED_AT, left, batch)
        done += load.requests
        errors += load.errors
        samples.append((done, rss_mb(gateway.pid)))
        log(f"{gateway.name:11} RSS after {done:6,} requests: {samples[-1][1]:.1f} MB")
    final = samples[-1][1] if samples else idle
    half = samples[len(samples) // 2 - 1][1] if len(samples) > 1 else idle
    return Memory(idle, samples, final, done, final - half, errors)


@dataclass(slots=True)
class Startup:
    runs_s: list[float]
    median_s: float
    rss_at_ready_mb: float


@dataclass(slots=True)
class Floor:
    runs_s: list[float]
    median_s: float
    rss_mb: float


def run_floor_once(ctx: Context) -> tuple[float, float]:
    code = (
        f"import {FLOOR_IMPORTS}\n"
        "import sys\n"
        "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0]\n"
        "sys.stdout.write(rss.split()[1] + '\\n')\n"
        "sys.stdout.flush()\n"
    )
    started = time.perf_counter()
    proc = ctx.procs.start(
        [sys.executable, "-c", code], "floor", ctx.layout.gateway, stdout_pipe=True
    )
    try:
        kb = int(read_line(proc, 30.0))
        return time.perf_counter() - started, kb / 1024
    finally:
        ctx.procs.stop(proc)


def run_startup(ctx: Context, spec: GatewaySpec, floor: Floor | None) -> tuple[Startup, Floor]:
    runs: list[float] = []
    rss: list[float] = []
    floor_runs: list[tuple[float, float]] = []
    for _ in range(ctx.plan.starts):
        if floor is None:
            floor_runs.append(run_floor_once(ctx))
        gateway = spec.start(ctx.procs, ctx.layout.gateway)
        rss.append(rss_mb(gateway.pid))
        ctx.procs.stop(gateway.proc)
        runs.append(gateway.ready_after)
    startup = Startup(runs, statistics.median(runs), statistics.median(rss))
    if floor is None:
        times = [t for t, _ in floor_runs]
        floor = Floor(times, statistics.median(times), statistics.median(r for _, r in floor_runs))
        log(f"import floor {floor.median_s:.3f} s, {floor.rss_mb:.1f} MB")
    log(f"{spec.name:11} startup {startup.median_s:.3f} s (runs {_fmt_list(runs, 3)})")
    return startup, floor


def _fmt_list(values: list[float], digits: int) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


# --------------------------------------------------------------------------- one target


@dataclass(slots=True)
class Results:
    """Everything measured about one gateway (or the direct baseline)."""

    name: str
    command: str
    load: dict[int, Load] = field(default_factory=dict)
    embeddings: list[EmbeddingsLevel] = field(default_factory=list)
    ttft: TTFT | None = None
    streams: Streams | None = None
    memory: Memory | None = None
    startup: Startup | None = None
    chunks: dict[str, Chunks] = field(default_factory=dict)  # per upstream API (or "floor")


def measure_gateway(
    ctx: Context, spec: GatewaySpec, results: Results, floor: Floor | None
) -> Floor | None:
    """Every selected section against one gateway, each on a freshly started instance.

    A fresh instance per section keeps the sections independent of each other
    (what one leaves behind in pools, caches or the router's usage window does
    not bend the next one), so ``--only X`` measures what a full run does.
    """
    if "startup" in ctx.sections:
        results.startup, floor = run_startup(ctx, spec, floor)
    if "rss" in ctx.sections:
        with fresh(ctx, spec) as gateway:
            results.memory = run_rss(ctx, gateway)
    if "latency" in ctx.sections or "cpu" in ctx.sections:
        levels = CONCURRENCY if "latency" in ctx.sections else (CPU_JUDGED_AT,)
        with fresh(ctx, spec) as gateway:
            results.load = run_load(ctx, gateway, levels)
    if "embeddings" in ctx.sections:
        with fresh(ctx, spec) as gateway:
            results.embeddings = run_embeddings(ctx, gateway)
    if "ttft" in ctx.sections:
        with fresh(ctx, spec) as gateway:
            results.ttft = run_ttft(ctx, gateway.port, spec.name)
    if "streams" in ctx.sections:
        with fresh(ctx, spec) as gateway:
            results.streams = run_streams(ctx, gateway)
    if "chunks" in ctx.sections:
        for api in CHUNK_APIS:
            with fresh(ctx, spec) as gateway:
                results.chunks[api] = run_chunks(ctx, gateway, f"chunks-{api}", spec.name, api)
    return floor


@contextmanager
def fresh(ctx: Context, spec: GatewaySpec) -> Iterator[Gateway]:
    gateway = spec.start(ctx.procs, ctx.layout.gateway)
    try:
        yield gateway
    finally:
        ctx.procs.stop(gateway.proc)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class Check:
    key: str
    label: str
    value: float
    unit: str
    target: str
    passed: bool


def checks(r: Results, direct: Results, floor: Floor | None) -> list[Check]:
    """The targets of the issue, judged on what was measured of ``r``."""
    out: list[Check] = []
    if CPU_JUDGED_AT in r.load and r.load[CPU_JUDGED_AT].cpu_ms_per_request is not None:
        cpu = r.load[CPU_JUDGED_AT].cpu_ms_per_request or 0.0
        label = f"CPU per non-streaming request (c={CPU_JUDGED_AT})"
        out.append(Check("cpu_ms_per_request", label, cpu, "ms", "<= 1.0 ms", cpu <= 1.0))
    for level in r.embeddings:
        ratio = level.ratio
        out.append(
            Check(
                f"embeddings_{level.inputs}_cpu_vs_chat",
                f"embeddings {level.inputs}x{level.dimensions} CPU / chat of the same size",
                ratio,
                "x",
                "<= 1.0x",
                ratio <= 1.0,
            )
        )
    if 1 in r.load and 1 in direct.load:
        p50 = r.load[1].p50_ms - direct.load[1].p50_ms
        p99 = r.load[1].p99_ms - direct.load[1].p99_ms
        out.append(
            Check("added_p50_ms", "added latency p50 (c=1)", p50, "ms", "<= 1.0 ms", p50 <= 1.0)
        )
        out.append(
            Check("added_p99_ms", "added latency p99 (c=1)", p99, "ms", "<= 2.0 ms", p99 <= 2.0)
        )
    if r.ttft is not None and direct.ttft is not None:
        added = r.ttft.median_ms - direct.ttft.median_ms
        out.append(
            Check("added_ttft_ms", "added TTFT (median)", added, "ms", "<= 1.5 ms", added <= 1.5)
        )
    if r.streams is not None:
        s = r.streams
        out.append(
            Check(
                "streams_completed",
                f"concurrent streams completed (of {s.opened})",
                s.completed,
                "",
                f"= {s.opened}",
                s.completed == s.opened,
            )
        )
        out.append(
            Check(
                "streams_peak_rss_mb",
                f"peak RSS with {s.opened} streams",
                s.rss_peak_mb,
                "MB",
                "<= 150 MB",
                s.rss_peak_mb <= 150,
            )
        )
    out += chunk_checks(r, direct.chunks.get("floor"))
    if r.startup is not None and floor is not None:
        ratio = r.startup.median_s / floor.median_s
        out.append(
            Check(
                "startup_vs_floor",
                f"startup {r.startup.median_s:.3f} s / floor {floor.median_s:.3f} s",
                ratio,
                "x",
                "<= 1.2x",
                ratio <= 1.2,
            )
        )
    if r.memory is not None:
        m = r.memory
        if floor is not None:
            over = m.idle_mb - floor.rss_mb
            out.append(
                Check(
                    "idle_rss_over_floor_mb",
                    f"idle RSS {m.idle_mb:.1f} MB - floor {floor.rss_mb:.1f} MB",
                    over,
                    "MB",
                    "<= +10 MB",
                    over <= 10,
                )
            )
        out.append(
            Check(
                "rss_after_requests_mb",
                f"RSS after {m.requests:,} requests",
                m.final_mb,
                "MB",
                "<= 60 MB",
                m.final_mb <= 60,
            )
        )
        out.append(
            Check(
                "rss_growth_second_half_mb",
                "RSS growth over the second half",
                m.growth_second_half_mb,
                "MB",
                "<= 1 MB",
                m.growth_second_half_mb <= 1.0,
            )
        )
    return out


def chunk_checks(r: Results, floor: Chunks | None) -> list[Check]:
    """CPU per chunk against the floor proxy's, and the burst's first tokens and stalls."""
    out: list[Check] = []
    if floor is None:
        return out
    for api, limit in CHUNK_TARGETS.items():
        c = r.chunks.get(api)
        if c is None:
            continue
        ratio = c.cpu_us_per_chunk / floor.cpu_us_per_chunk
        out.append(
            Check(
                f"chunk_cpu_{api}_vs_floor",
                f"CPU per chunk, {api} ({c.cpu_us_per_chunk:.0f} / "
                f"{floor.cpu_us_per_chunk:.0f} us)",
                ratio,
                "x",
                f"<= {limit:g}x floor",
                ratio <= limit and c.completed == c.opened,
            )
        )
    c = r.chunks.get("openai")
    if c is not None:
        ratio = c.first_p99_ms / floor.first_p99_ms
        label = f"burst first token p99 ({c.first_p99_ms:.0f} / {floor.first_p99_ms:.0f} ms)"
        out.append(Check("burst_first_p99_vs_floor", label, ratio, "x", "<= 1.5x", ratio <= 1.5))
        out.append(
            Check(
                "burst_max_stall_s",
                "burst: longest stall of a stream",
                c.max_stall_s,
                "s",
                "<= 1 s",
                c.max_stall_s <= 1.0,
            )
        )
        out.append(
            Check(
                "burst_short_ttft_p50_ms",
                "burst: short streams' TTFT p50",
                c.short_p50_ms,
                "ms",
                "<= 20 ms",
                c.short_p50_ms <= 20.0 and c.short_failed == 0,
            )
        )
    return out


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def render(
    plan: Plan,
    args: argparse.Namespace,
    lay: Layout,
    direct: Results,
    targets: list[Results],
    floor: Floor | None,
    verdicts: dict[str, list[Check]],
) -> str:
    lines: list[str] = []
    add = lines.append
    mode = "quick" if args.quick else "full"
    add(
        f"FeatherGate benchmark ({mode} run; {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()}; feathergate --workers {args.workers})"
    )
    add(f"pinning: {lay.note}")
    source = args.label or _commit() or str(ROOT)
    add(f"tree: {source}")
    for r in targets:
        add(f"{r.name}: {r.command}")

    paths = [direct, *targets]
    if any(r.load for r in paths):
        add("")
        add(
            f"Non-streaming chat completions (wrk, one connection per thread, "
            f"{plan.load_seconds:g} s per run after {plan.warmup_seconds:g} s warm-up)"
        )
        add(
            f"  {'conc':>4}  {'path':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'errors':>6} {'CPU ms/req':>10} {'CPU busy':>8} {'other':>6}"
        )
        for c in CONCURRENCY:
            for r in paths:
                if c in r.load:
                    x = r.load[c]
                    busy = f"{x.cpu_busy:.0%}" if x.cpu_busy is not None else "-"
                    other = f"{x.other_busy:.0%}" if x.other_busy is not None else "-"
                    add(
                        f"  {c:>4}  {r.name:<12} {x.rps:>9,.0f} {x.p50_ms:>8.3f} {x.p99_ms:>8.3f} "
                        f"{x.errors:>6} {_num(x.cpu_ms_per_request):>10} {busy:>8} {other:>6}"
                    )
        for r in targets:
            if 1 in r.load and 1 in direct.load:
                add(
                    f"  added latency at c=1 ({r.name} - direct): "
                    f"p50 {r.load[1].p50_ms - direct.load[1].p50_ms:.3f} ms, "
                    f"p99 {r.load[1].p99_ms - direct.load[1].p99_ms:.3f} ms"
                )

    if any(r.embeddings for r in targets):
        add("")
        add(
            f"Embeddings passthrough (base64) against a chat completion of the same size "
            f"(wrk, c={CPU_JUDGED_AT}, {plan.load_seconds:g} s per run)"
        )
        add(
            f"  {'shape':>10}  {'path':<24} {'request B':>9} {'answer B':>9} "
            f"{'req/s':>7} {'p50 ms':>8} {'errors':>6} {'CPU ms/req':>10} {'ratio':>6}"
        )
        for r in targets:
            for level in r.embeddings:
                shape = f"{level.inputs}x{level.dimensions}"
                for kind, x in (("chat", level.chat), ("embeddings", level.embeddings)):
                    ratio = f"{level.ratio:.2f}x" if kind == "embeddings" else ""
                    add(
                        f"  {shape:>10}  {r.name + ' ' + kind:<24} {level.request_bytes:>9,} "
                        f"{level.response_bytes:>9,} {x.rps:>7,.0f} {x.p50_ms:>8.3f} "
                        f"{x.errors:>6} {_num(x.cpu_ms_per_request):>10} {ratio:>6}"
                    )

    if any(r.ttft for r in paths):
        add("")
        add(
            f"Time to first token (streams of {TTFT_TOKENS} tokens, one per 2 ms, one after "
            f"another on one connection)"
        )
        add(f"  {'path':<12} {'streams':>7} {'failed':>6} {'median ms':>9} {'p99 ms':>8}")
        for r in paths:
            if r.ttft is not None:
                t = r.ttft
                add(
                    f"  {r.name:<12} {t.streams:>7} {t.failed:>6} {t.median_ms:>9.3f} "
                    f"{t.p99_ms:>8.3f}"
                )
        for r in targets:
            if r.ttft is not None and direct.ttft is not None:
                add(
                    f"  added TTFT ({r.name} - direct): median "
                    f"{r.ttft.median_ms - direct.ttft.median_ms:.3f} ms, p99 "
                    f"{r.ttft.p99_ms - direct.ttft.p99_ms:.3f} ms"
                )

    for r in targets:
        if r.streams is None:
            continue
        s = r.streams
        nominal = s.tokens * s.interval_ms / 1000
        add("")
        add(
            f"Concurrent streams through {r.name}: {s.opened} at once, {s.tokens} tokens "
            f"one per {s.interval_ms} ms ({nominal:g} s each), abandoned after "
            f"{plan.stream_bound:g} s"
        )
        add(
            f"  completed with [DONE]: {s.completed}/{s.opened} (got a first byte: {s.started}); "
            f"errors: {s.errors or 'none'}"
        )
        opened = f"{s.all_open_s:.2f} s" if s.all_open_s else "never"
        add(
            f"  every stream had its first byte after: {opened}; duration of the completed: "
            f"p50 {s.duration_p50_s:.2f} s, p99 {s.duration_p99_s:.2f} s (nominal {nominal:g} s)"
        )
        offered = s.opened * 1000 / s.interval_ms
        add(
            f"  tokens delivered {s.tokens_per_s:,.0f}/s (offered {offered:,.0f}/s) over "
            f"{s.elapsed_s:.1f} s; CPU busy: gateway {s.cpu_busy:.0%}, load side "
            f"{s.load_cpu_busy:.0%}, others on the gateway's core "
            + (f"{s.other_busy:.0%}" if s.other_busy is not None else "-")
        )
        add(
            f"  gateway CPU {s.cpu_ms_per_stream:.1f} ms per stream, {s.cpu_us_per_token:.0f} us "
            f"per token; RSS before {s.rss_before_mb:.1f} MB, peak {s.rss_peak_mb:.1f} MB, "
            f"1 s after {s.rss_after_mb:.1f} MB"
        )

    rows = [c for r in paths for c in r.chunks.values()]
    if rows:
        add("")
        add(
            f"Bursts of long streams: {plan.chunk_streams} opened at once, {plan.chunk_count} "
            f"chunks each, one per {plan.chunk_interval_ms} ms; short streams of "
            f"{SHORT_TOKENS} tokens on new connections every {SHORT_EVERY:g} s meanwhile"
        )
        add(
            f"  {'target':<22} {'done':>9} {'chunks':>7} {'CPU us/chunk':>12} {'x floor':>7} "
            f"{'busy':>5} {'other':>5} {'first p50/p99/max ms':>21} {'stall s':>7} "
            f"{'short p50/p99 ms':>16}"
        )
        base = direct.chunks.get("floor")
        for c in rows:
            times = f"{c.first_p50_ms:.0f}/{c.first_p99_ms:.0f}/{c.first_max_ms:.0f}"
            ratio = f"{c.cpu_us_per_chunk / base.cpu_us_per_chunk:.2f}" if base else "-"
            other = f"{c.other_busy:.0%}" if c.other_busy is not None else "-"
            short = f"{c.short_p50_ms:.1f}/{c.short_p99_ms:.1f}"
            add(
                f"  {c.target:<22} {f'{c.completed}/{c.opened}':>9} {c.chunks:>7} "
                f"{c.cpu_us_per_chunk:>12.1f} {ratio:>7} {c.cpu_busy:>5.0%} {other:>5} "
                f"{times:>21} {c.max_stall_s:>7.2f} {short:>16}"
            )
            if c.errors or c.short_failed:
                add(f"    errors {c.errors}, short streams failed: {c.short_failures}")

    if floor is not None or any(r.memory or r.startup for r in targets):
        add("")
        add("Memory (VmRSS, MB) and startup (spawn -> first health 200)")
        if floor is not None:
            add(
                f"  import floor: {floor.median_s:.3f} s (runs {_fmt_list(floor.runs_s, 3)}), "
                f"{floor.rss_mb:.1f} MB   [python -c 'import {FLOOR_IMPORTS}']"
            )
        for r in targets:
            if r.startup is not None:
                ratio = f" = {r.startup.median_s / floor.median_s:.2f}x floor" if floor else ""
                add(
                    f"  {r.name} startup: {r.startup.median_s:.3f} s{ratio} "
                    f"(runs {_fmt_list(r.startup.runs_s, 3)}), RSS at ready "
                    f"{r.startup.rss_at_ready_mb:.1f} MB"
                )
            if r.memory is not None:
                m = r.memory
                over = f" (floor + {m.idle_mb - floor.rss_mb:.1f})" if floor else ""
                trail = "  ".join(f"{n / 1000:.1f}k:{v:.1f}" for n, v in m.samples)
                add(f"  {r.name} idle {m.idle_mb:.1f}{over}; after requests  {trail}")
                add(
                    f"  {r.name} after {m.requests:,} requests: {m.final_mb:.1f} MB, growth over "
                    f"the second half {m.growth_second_half_mb:+.2f} MB, errors {m.errors}"
                )

    add_redis_summary(add, targets)

    others = [x.other_busy for r in targets for x in r.load.values() if x.other_busy is not None]
    others += [r.streams.other_busy for r in targets if r.streams and r.streams.other_busy]
    others += [c.other_busy for r in paths for c in r.chunks.values() if c.other_busy]
    if others and max(others) > 0.05:
        add("")
        add(
            f"NOTE: other processes took up to {max(others):.0%} of the gateway's core during "
            "the runs; these figures are disturbed (see the 'other' column)."
        )

    if any(verdicts.values()):
        add("")
        names = [r.name for r in targets]
        header = f"{'Targets':<58}" + "".join(f"{n:>20}" for n in names)
        add(header + (f"{'ratio':>8}" if len(names) == 2 else ""))
        first = verdicts[names[0]]
        for check in first:
            cells = ""
            values: list[float] = []
            for n in names:
                match = [v for v in verdicts[n] if v.key == check.key]
                if match:
                    v = match[0]
                    values.append(v.value)
                    digits = 0 if v.unit == "" else 2
                    cell = f"{v.value:,.{digits}f} {v.unit} {'PASS' if v.passed else 'MISS'}"
                else:
                    cell = "-"
                cells += f"{cell:>20}"
            if len(values) == 2 and values[0]:
                cells += f"{values[1] / values[0]:>7.2f}x"
            label = f"{check.label} [{check.target}]"
            add(f"  {label:<56}{cells}")
    return "\n".join(lines)


def redis_figures(targets: list[Results]) -> dict[str, float]:
    """Shared state's cost: CPU per request against plain feathergate, and the added p50."""
    by_name = {r.name: r for r in targets}
    names = ("feathergate", *(name for name, _ in REDIS_TARGETS))
    base, shared, limited = (by_name.get(n) for n in names)
    if base is None or shared is None or limited is None:
        return {}
    out: dict[str, float] = {}
    for key, r in (("redis", shared), ("redis_rpm", limited)):
        for c in (CPU_JUDGED_AT, 1):
            ours, theirs = base.load.get(c), r.load.get(c)
            if ours and theirs and ours.cpu_ms_per_request and theirs.cpu_ms_per_request:
                out[f"{key}_cpu_ratio_c{c}"] = theirs.cpu_ms_per_request / ours.cpu_ms_per_request
    if 1 in base.load and 1 in limited.load:
        out["redis_rpm_added_p50_ms"] = limited.load[1].p50_ms - base.load[1].p50_ms
        out["redis_rpm_added_p99_ms"] = limited.load[1].p99_ms - base.load[1].p99_ms
    if 1 in base.load and 1 in shared.load:
        out["redis_added_p50_ms"] = shared.load[1].p50_ms - base.load[1].p50_ms
    return out


def add_redis_summary(add: Callable[[str], None], targets: list[Results]) -> None:
    figures = redis_figures(targets)
    if not figures:
        return
    add("")
    add("Shared state (redis-server on the load's CPU), against plain feathergate")
    for key, label in (("redis", "Redis, no limits"), ("redis_rpm", "Redis, rpm/tpm on")):
        for c in (CPU_JUDGED_AT, 1):
            ratio = figures.get(f"{key}_cpu_ratio_c{c}")
            if ratio is not None:
                add(f"  {label}: CPU per request at c={c} {ratio - 1:+.1%}")
    if "redis_added_p50_ms" in figures:
        add(f"  Redis, no limits: added p50 at c=1 {figures['redis_added_p50_ms']:.3f} ms")
    if "redis_rpm_added_p50_ms" in figures:
        p50, p99 = figures["redis_rpm_added_p50_ms"], figures["redis_rpm_added_p99_ms"]
        verdict = "PASS" if p50 <= 0.6 else "MISS"
        add(
            f"  Redis, rpm/tpm on: added latency at c=1 p50 {p50:.3f} ms [goal <= 0.6 ms] "
            f"{verdict}, p99 {p99:.3f} ms"
        )


def to_json(
    args: argparse.Namespace,
    plan: Plan,
    lay: Layout,
    direct: Results,
    targets: list[Results],
    floor: Floor | None,
    verdicts: dict[str, list[Check]],
    failure: str = "",
) -> str:
    def results(r: Results) -> dict[str, Any]:
        out: dict[str, Any] = {"command": r.command}
        if r.load:
            out["load"] = {str(c): asdict(x) for c, x in r.load.items()}
        if r.embeddings:
            out["embeddings"] = [{**asdict(x), "ratio": x.ratio} for x in r.embeddings]
        for name in ("ttft", "streams", "memory", "startup"):
            value = getattr(r, name)
            if value is not None:
                out[name] = asdict(value)
        if r.chunks:
            out["chunks"] = {api: asdict(c) for api, c in r.chunks.items()}
        return out

    document: dict[str, Any] = {
        "bench": "feathergate",
        "mode": "quick" if args.quick else "full",
        "complete": not failure,
        "failure": failure.splitlines()[0] if failure else None,
        "sections": sorted(set(args.sections)),
        "workers": args.workers,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "pinning": lay.note,
        "commit": _commit(),
        "label": args.label or None,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "plan": asdict(plan),
        "floor": asdict(floor) if floor else None,
        "direct": results(direct),
    }
    for r in targets:
        document[r.name] = results(r)
    if redis_figures(targets):
        document["shared_state"] = {k: round(v, 4) for k, v in redis_figures(targets).items()}
    document["checks"] = {
        name: {
            c.key: {"value": round(c.value, 4), "target": c.target, "pass": c.passed} for c in cs
        }
        for name, cs in verdicts.items()
    }
    if len(targets) == 2:
        base, other = (verdicts[t.name] for t in targets)
        document["ratios"] = {
            c.key: round(o.value / c.value, 3)
            for c in base
            for o in other
            if o.key == c.key and c.value
        }
    return json.dumps(document, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(type(value).__name__)


def _commit() -> str | None:
    """The checked-out commit, with "+dirty" when feathergate/ has local changes (read-only git)."""

    def git(*args: str) -> str:
        run = subprocess.run(
            # --no-optional-locks: never refresh (write) the index of a tree others work in.
            ["git", "--no-optional-locks", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return run.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "feathergate")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (about 70 s)")
    parser.add_argument(
        "--only",
        metavar="SECTION[,SECTION]",
        help=f"run only these sections: {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--compare",
        metavar="COMMAND",
        help="also measure the gateway COMMAND starts ({port}, {upstream}, {config} substituted)",
    )
    parser.add_argument(
        "--compare-health",
        default="/health/liveliness",
        metavar="PATH",
        help="readiness path of the --compare gateway (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=1, help="passed to feathergate serve")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="also measure the gateway with its access log on (--log-level info)",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also measure shared state on a local redis-server, without and with rpm/tpm",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--label", default="", help="free text for the report and the JSON (e.g. the tree's commit)"
    )
    args = parser.parse_args(argv)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = sections
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and args.sections != ["startup"]:
        print(
            "bench.py needs wrk, the HTTP load generator: apt-get install -y wrk "
            "(Debian/Ubuntu) or brew install wrk (macOS)",
            file=sys.stderr,
        )
        return 2
    # Ctrl-C (even when started with SIGINT ignored, as a background job is),
    # SIGTERM and SIGHUP all unwind through the cleanup below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    plan = QUICK if args.quick else FULL
    lay = layout(not args.no_pin, args.workers)
    if lay.load is not None:
        os.sched_setaffinity(0, lay.load)  # this process is a load client too
    started = time.monotonic()
    direct = Results("direct", "wrk / asyncio clients -> fake upstream")
    targets: list[Results] = []
    floor: list[Floor | None] = [None]
    failure, code = "", 0
    with tempfile.TemporaryDirectory(prefix="feathergate-bench-") as tmp:
        procs = Processes(Path(tmp))
        try:
            measure_all(args, plan, lay, procs, Path(tmp), direct, targets, floor)
        except KeyboardInterrupt:
            failure, code = "interrupted", 130
        except (RuntimeError, TimeoutError) as exc:
            failure, code = f"failed: {exc}", 1
        finally:
            procs.close()
    if failure:
        log(f"{failure.splitlines()[0]} (every child process is stopped)")
    if not (direct.load or direct.ttft or direct.chunks or any(_measured(r) for r in targets)):
        if failure:
            log(failure)
        return code or 1
    verdicts = {r.name: checks(r, direct, floor[0]) for r in targets}
    print(render(plan, args, lay, direct, targets, floor[0], verdicts))
    if failure:
        print(f"\nINCOMPLETE: {failure}")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    print(to_json(args, plan, lay, direct, targets, floor[0], verdicts, failure))
    return code


def _measured(r: Results) -> bool:
    return bool(r.load or r.embeddings or r.ttft or r.streams or r.memory or r.startup or r.chunks)


def measure_all(
    args: argparse.Namespace,
    plan: Plan,
    lay: Layout,
    procs: Processes,
    workdir: Path,
    direct: Results,
    targets: list[Results],
    floor: list[Floor | None],
) -> None:
    """Run every selected section.

    Results land in ``direct``, ``targets`` and ``floor`` as they are measured,
    so that a failure half-way still reports what was measured before it.
    """
    port, upstream_proc = start_upstream(procs, lay.load, 16)
    upstream = f"http://127.0.0.1:{port}/v1"
    direct.command += f" {upstream}"
    ctx = Context(plan, procs, lay, port, upstream_proc.pid, frozenset(args.sections))
    config = workdir / "config.yaml"
    write_config(config, upstream, ctx.stream_model, ctx.chunk_model)
    log(f"fake upstream on {upstream}; {lay.note}")
    specs = [feathergate_spec(config, args.workers)]
    if args.access_log:  # the same gateway with its access log on (--log-level info)
        spec = feathergate_spec(config, args.workers, "info")
        specs.append(replace(spec, name="access-log", display=f"{spec.display} (access log)"))
    if args.compare:
        specs.append(compare_spec(args.compare, config, upstream, args.compare_health))
    if args.redis:
        redis_port = start_redis(procs, lay.load)
        log(f"redis-server on 127.0.0.1:{redis_port}")
        # Limits far above what one core can serve: every request is counted, none refused.
        for name, limits in REDIS_TARGETS:
            path = workdir / f"{name}.yaml"
            write_config(
                path,
                upstream,
                ctx.stream_model,
                ctx.chunk_model,
                redis_port=redis_port,
                limits=limits,
            )
            spec = feathergate_spec(path, args.workers)
            specs.append(replace(spec, name=name, display=f"{spec.display} ({name})"))
    if "latency" in ctx.sections:
        direct.load = run_load(ctx, None, CONCURRENCY)
    if "ttft" in ctx.sections:
        direct.ttft = run_ttft(ctx, port, "direct")
    if "chunks" in ctx.sections:
        direct.chunks["floor"] = run_floor_chunks(ctx)
    for spec in specs:
        results = Results(spec.name, spec.display)
        targets.append(results)
        sub = ctx
        if spec.name in REDIS_NAMES:  # what Redis changes is the request path only
            sub = replace(ctx, sections=ctx.sections & {"latency", "cpu"})
        floor[0] = measure_gateway(sub, spec, results, floor[0])


if __name__ == "__main__":
    sys.exit(main())
