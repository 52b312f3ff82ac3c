"""The Redis (or Valkey) backend, over coredis on Trio.

Design note
-----------
One client per process, entered by :meth:`RedisState.run` (the serving
task's nursery; coredis pools must be exited by the task that entered them).
On the request path there is at most one call per limit, and only where a
limit is configured: one ``EVALSHA`` of :data:`.scripts.ACQUIRE` (:meth:`acquire`)
or of :data:`.scripts.RESERVE` for a budget (:meth:`reserve`), each bounded
by ``timeout`` (0.25 s by default) with no retries. Everything else runs in
three background loops:

* the **board** posts this process's row as often as its most demanding
  section asks (``share(..., every=)``; 0.25 s by default, 0.1 s for
  least-busy) and reads the others' (who is alive; in flight, failures,
  cooldowns, latency);
* the **outbox** sends what requests queued (budget releases, broadcasts)
  as soon as there is something; token settlements are summed per limit and sent with the
  board's post, one call per limit per interval;
* the **listener** holds the pub/sub subscription. coredis's pub/sub was seen
  not to resume after a Redis restart on Trio, silently, so every process
  publishes a heartbeat every ``HEARTBEAT`` seconds and the listener
  resubscribes from scratch after ``SILENCE`` seconds without any message.

Failures never reach a request: after three failed calls in a row the
:class:`~feathergate.state.breaker.Breaker` opens and requests count locally
(:class:`~feathergate.state.memory.MemoryState`, at ``limit ÷ peers``, the
live processes last seen), or get a 503 with ``fail_closed``; the board's
next successful post closes it. Each transition is logged once. The local
counters see every request the shared ones do, so falling back does not
start from an empty window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import coredis
import trio
from coredis.connection import TCPLocation
from coredis.exceptions import NoScriptError
from coredis.retry import NoRetryPolicy

from feathergate import metrics
from feathergate.errors import SharedStateUnavailable
from feathergate.state.base import DEFAULT_EVERY, Grant, Hold, Limit, Merge, Row
from feathergate.state.breaker import Breaker
from feathergate.state.keys import Keys
from feathergate.state.memory import MemoryState
from feathergate.state.scripts import ACQUIRE, BOARD, RELEASE, RESERVE, SETTLE
from feathergate.state.settings import SharedStateSettings

__all__ = ["HEARTBEAT", "SILENCE", "RedisState"]

log = logging.getLogger("feathergate.state")

T = TypeVar("T")

BOARD_TTL = 2.0  # a process whose row is older is not alive
# The board repeats what a lost message said, so a slow recovery of the
# subscription costs little; a faster heartbeat would cost every process CPU.
HEARTBEAT = 1.0
SILENCE = 3.0
RECONNECT_DELAY = 0.5
_OUTBOX_LIMIT = 10_000  # while Redis is away, older queued messages are dropped

Client = coredis.Redis[bytes] | coredis.RedisCluster[bytes]

_SCRIPTS = {
    "acquire": ACQUIRE,
    "settle": SETTLE,
    "board": BOARD,
    "reserve": RESERVE,
    "release": RELEASE,
}
_SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in _SCRIPTS.items()}


def _connect(settings: SharedStateSettings) -> Client:
    # The request path bounds each call itself; a retry would only double the wait.
    common: dict[str, Any] = {
        "username": settings.username,
        "password": settings.password,
        "stream_timeout": settings.timeout * 2,
        "connect_timeout": max(settings.timeout * 2, 0.5),
        "retry_policy": NoRetryPolicy(),
        "ssl": settings.ssl,
        "ssl_cert_reqs": settings.ssl_cert_reqs,
        "ssl_check_hostname": settings.ssl_check_hostname,
        "ssl_ca_certs": settings.ssl_ca_certs,
    }
    if settings.max_connections:
        common["max_connections"] = settings.max_connections
    if settings.cluster:
        nodes = [TCPLocation(n.host, n.port) for n in settings.startup_nodes]
        return coredis.RedisCluster(startup_nodes=nodes, **common)
    return coredis.Redis(
        host=settings.host, port=settings.port, db=settings.db, client_name="feathergate", **common
    )


class _Settlement:
    """What one limit's settled requests change: estimates taken back, real tokens added."""

    __slots__ = ("estimates", "tokens", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.estimates: dict[int, int] = {}  # bucket -> tokens to take back
        self.tokens = 0

    def add(self, bucket: int, estimate: int, tokens: int) -> None:
        if estimate:
            self.estimates[bucket] = self.estimates.get(bucket, 0) + estimate
        self.tokens += tokens


def _reason(error: BaseException | None) -> str:
    # A wrong password or a TLS problem says so here (never the password itself).
    return f"{type(error).__name__}: {error}" if error else "timed out"


def _member() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisState:
    def __init__(
        self,
        settings: SharedStateSettings,
        *,
        clock: Callable[[], float] = trio.current_time,
        member: str | None = None,
    ) -> None:
        self.settings = settings
        self.member = member or _member()
        self._keys = Keys(settings.namespace)
        self._clock = clock
        self._local = MemoryState(clock)
        self._breaker = Breaker()
        self._client: Client | None = None
        self._peers = max(1, settings.processes)
        self._sections: dict[str, tuple[Row, Merge]] = {}
        self._interval = DEFAULT_EVERY
        self._handlers: dict[str, list[Callable[[Any], None]]] = {}
        self._outbox: deque[tuple[str, Any]] = deque(maxlen=_OUTBOX_LIMIT)
        self._settlements: dict[str, _Settlement] = {}
        self._releases: deque[tuple[str, float, float]] = deque(maxlen=_OUTBOX_LIMIT)
        self._wake: trio.Event | None = None
        self._heard = 0.0
        self._board_seen = -float("inf")
        self._reported = False  # the startup state was logged
        self._last_error: BaseException | None = None
        metrics.SHARED_STATE_UP.set(0)

    # -- the seam ---------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self._breaker.closed

    @property
    def peers(self) -> int:
        return self._peers

    async def acquire(self, scope: str, ident: str, limit: Limit, tokens: int) -> Grant:
        key = self._keys.limit(scope, ident)
        if self._breaker.closed and self._client is not None:
            args = [limit.requests or 0, limit.tokens or 0, int(limit.window * 1000), tokens]
            reply = await self._call("acquire", self._script("acquire", key, args))
            if reply is not None:
                admitted, wait_ms, requests, total, bucket = (int(x) for x in reply)
                if admitted:
                    # Mirror it locally: a fallback starts from what was admitted.
                    self._local.acquire_now(key, limit, tokens, force=True)
                return Grant(
                    bool(admitted),
                    wait_ms / 1000,
                    requests,
                    total,
                    key,
                    limit.window,
                    bucket,
                    tokens if admitted else 0,
                )
        if self.settings.fail_closed:
            metrics.SHARED_STATE_FALLBACKS.labels("fail_closed").inc()
            raise SharedStateUnavailable(retry_after=1.0)
        metrics.SHARED_STATE_FALLBACKS.labels("local").inc()
        return self._local.acquire_now(key, limit.split(self._peers), tokens)

    def settle(self, grant: Grant, tokens: int) -> None:
        self._local.settle(grant, tokens)
        if grant.shared and (grant.estimate or tokens):
            pending = self._settlements.get(grant.key)
            if pending is None:
                pending = self._settlements[grant.key] = _Settlement(grant.window)
            pending.add(grant.bucket, grant.estimate, tokens)

    async def reserve(
        self,
        scope: str,
        ident: str,
        period: int,
        amount: float,
        cap: float | None,
        *,
        seed: float,
        ttl: float,
    ) -> Hold:
        key = self._keys.budget(scope, ident, period)
        ttl_ms = max(1, math.ceil(ttl * 1000))
        if self._breaker.closed and self._client is not None:
            args = [repr(amount), "" if cap is None else repr(cap), repr(seed), ttl_ms]
            reply = await self._call("reserve", self._script("reserve", key, args))
            if reply is not None:
                admitted = int(reply[0])
                spent, reserved, held = (float(x) for x in reply[1:])
                # Mirror it locally: a fallback starts from the shared totals.
                self._local.hub.periods.mirror(key, spent, reserved, ttl)
                return Hold(bool(admitted), spent, reserved, held, key)
        if self.settings.fail_closed:
            metrics.SHARED_STATE_FALLBACKS.labels("fail_closed").inc()
            raise SharedStateUnavailable(retry_after=1.0)
        metrics.SHARED_STATE_FALLBACKS.labels("local").inc()
        return self._local.hub.periods.reserve(key, amount, cap, seed, ttl)

    def release(self, hold: Hold, cost: float) -> None:
        self._local.hub.periods.release(hold, cost)
        if hold.shared:
            self._releases.append((hold.key, hold.amount, cost))
            if self._wake is not None:
                self._wake.set()

    def share(self, name: str, row: Row, merge: Merge, every: float = DEFAULT_EVERY) -> None:
        self._sections[name] = (row, merge)
        self._interval = min(self._interval, every)

    def publish(self, topic: str, message: Any) -> None:
        self._outbox.append((topic, message))
        if self._wake is not None:
            self._wake.set()

    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    # -- the service ------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, post the first row (bounded by the timeout), then serve until cancelled.

        Redis being down at startup only means starting on local counts.
        """
        log.info("shared state: %s", self.settings.describe())
        self._wake = trio.Event()
        started = False
        failures = 0
        while True:
            try:
                async with _connect(self.settings) as client:
                    self._client = client
                    await self._post()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._board_loop)
                        nursery.start_soon(self._outbox_loop)
                        nursery.start_soon(self._listen_loop)
                        if not started:
                            self._report_start()
                            task_status.started()
                            started = True
            except* Exception as group:
                # A cluster client connects on entry, so an unreachable cluster
                # lands here; so does coredis's pub/sub cleanup writing to a
                # connection its pool closed first, at shutdown.
                failures += 1
                stopping = trio.current_effective_deadline() == -math.inf
                level = logging.WARNING if failures == 1 and not stopping else logging.DEBUG
                log.log(level, "shared state: client stopped: %r; reconnecting", group)
            finally:
                self._client = None
            if not started:
                self._report_start()
                task_status.started()
                started = True
            await trio.sleep(RECONNECT_DELAY)

    def _report_start(self) -> None:
        if not self._breaker.closed:
            log.warning(
                "shared state: Redis is unreachable at startup (%s); rate limits count locally "
                "(limit / %d processes) until it answers",
                _reason(self._last_error),
                self._peers,
            )
        self._reported = True

    async def _script(self, name: str, key: str, args: list[Any]) -> Any:
        """``EVALSHA``, loading the script once when Redis lacks it (a restart, a new node).

        coredis's ``Script`` does the same, at a measurable cost per call.
        """
        client = self._client
        assert client is not None
        sha = _SHAS[name]
        try:
            return await client.evalsha(sha, keys=[key], args=args)
        except NoScriptError:
            await client.script_load(_SCRIPTS[name])
            return await client.evalsha(sha, keys=[key], args=args)

    async def _call(self, op: str, command: Awaitable[T]) -> T | None:
        """Await one Redis command within the timeout; ``None`` (and a breaker count) if not."""
        error: BaseException | None = None
        with trio.move_on_after(self.settings.timeout):
            try:
                result = await command
            except (trio.Cancelled, KeyboardInterrupt):  # pragma: no cover - re-raised
                raise
            except Exception as exc:  # anything coredis or the socket raises
                error = exc
            else:
                if self._breaker.success():
                    self._transition(up=True)
                return result
        metrics.SHARED_STATE_ERRORS.labels(op).inc()
        self._last_error = error
        if self._breaker.failure():
            self._transition(up=False, error=error)
        return None

    def _transition(self, *, up: bool, error: BaseException | None = None) -> None:
        metrics.SHARED_STATE_UP.set(1 if up else 0)
        if up:
            if self._reported:
                log.info("shared state: Redis answers again; limits and cooldowns are shared")
            return
        log.warning(
            "shared state: Redis unreachable (%s); rate limits count locally "
            "(limit / %d processes), cooldowns stay local",
            _reason(error),
            self._peers,
        )

    async def _post(self) -> None:
        row = json.dumps({name: row() for name, (row, _) in self._sections.items()})
        ttl = int(BOARD_TTL * 1000)
        reply = await self._call(
            "board", self._script("board", self._keys.board(), [self.member, row, ttl])
        )
        now = self._clock()
        if reply is None:
            if now - self._board_seen > BOARD_TTL:
                self._merge([])  # what the others said is too old to act on
            return
        others: list[dict[str, Any]] = []
        for raw in reply:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                others.append(value)
        self._board_seen = now
        self._peers = 1 + len(reply)
        self._merge(others)

    def _merge(self, others: list[dict[str, Any]]) -> None:
        for name, (_, merge) in self._sections.items():
            try:
                merge([row[name] for row in others if name in row])
            except Exception:  # a peer of another version; never the loop
                log.exception("shared state: cannot merge the board's %r rows", name)

    async def _board_loop(self) -> None:
        while True:
            started = self._clock()
            try:
                await self._post()
                await self._settle_all()
            except Exception:  # a bug in a row builder must not end the service
                log.exception("shared state: posting to the board failed")
            await trio.sleep_until(started + self._interval)

    async def _settle_all(self) -> None:
        pending, self._settlements = self._settlements, {}
        if not self._breaker.closed:
            return  # lost with Redis: estimates stay counted, on the safe side
        for key, settlement in pending.items():
            args = [int(settlement.window * 1000), settlement.tokens]
            for bucket, estimate in settlement.estimates.items():
                args += [bucket, estimate]
            await self._call("settle", self._script("settle", key, args))

    async def _outbox_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._releases:
                key, amount, cost = self._releases.popleft()
                if self._breaker.closed:  # lost with Redis: the reservation expires with its key
                    await self._call(
                        "release", self._script("release", key, [repr(amount), repr(cost)])
                    )
            while self._outbox:
                topic, message = self._outbox.popleft()
                if not self._breaker.closed:
                    continue  # best effort: the board repeats what matters
                await self._send(topic, message)

    async def _send(self, topic: str, message: Any) -> None:
        client = self._client
        if client is not None:
            data = json.dumps([self.member, topic, message])
            await self._call("publish", client.publish(self._keys.channel(), data))

    async def _listen_loop(self) -> None:
        while True:
            try:
                await self._listen()
            except* Exception as group:  # reconnecting is the answer to every failure here
                log.debug("shared state: subscription ended: %r", group)
            await trio.sleep(RECONNECT_DELAY)

    async def _listen(self) -> None:
        client = self._client
        assert client is not None
        self._heard = self._clock()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watchdog, nursery.cancel_scope)
            subscription: AbstractAsyncContextManager[Any] = client.pubsub(
                channels=[self._keys.channel()],
                ignore_subscribe_messages=True,
                retry_policy=NoRetryPolicy(),
            )
            async with subscription as pubsub:
                async for message in pubsub:
                    self._heard = self._clock()
                    self._dispatch(message.get("data"))

    async def _watchdog(self, scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(HEARTBEAT)
            if self._clock() - self._heard > SILENCE:
                log.debug("shared state: no pub/sub message for %.1f s: resubscribing", SILENCE)
                scope.cancel()
                return
            await self._send("", None)

    def _dispatch(self, data: Any) -> None:
        try:
            member, topic, message = json.loads(data)
        except (TypeError, ValueError):
            return
        if member == self.member or not topic:
            return
        for handler in self._handlers.get(topic, ()):
            try:
                handler(message)
            except Exception:
                log.exception("shared state: the %r handler failed", topic)
