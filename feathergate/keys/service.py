"""Who is calling, and may they: the virtual-key service the gateway asks per request.

The request path never waits on the store once a key has been seen: keys and
teams are cached in memory, budgets and rate counters live in memory (or in
the shared-state seam), and spend rows queue for a writer that flushes them
every second and at shutdown. Edits reach the cache of every process through
the store's change log (read every half second) and, when the seam is wired,
its broadcast.

The gateway calls three things (:class:`Auth`): :meth:`Auth.identify` on the
headers before the body is read, :meth:`Auth.admit` once the model is known,
and :meth:`Auth.finish` when the relay is done.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import trio

from feathergate.config import KeySettings
from feathergate.errors import (
    BudgetExceeded,
    KeyAuthError,
    KeyRateLimited,
    ModelAccessDenied,
    StoreUnavailable,
)
from feathergate.keys.budgets import BudgetLimit, MemoryLedger, Refusal, Reservation
from feathergate.keys.limits import MemoryGauges, ParallelGauges
from feathergate.keys.pricing import Price, cost
from feathergate.keys.records import KeyRecord, SpendRow, TeamRecord
from feathergate.keys.store import SpendOp, Store, open_store
from feathergate.keys.tokens import hash_key, key_name
from feathergate.providers.base import Usage
from feathergate.state.base import Grant, Hold, Limit, SharedState
from feathergate.state.memory import MemoryState

__all__ = ["Admission", "Broadcast", "KeyService", "Principal", "read_key"]

log = logging.getLogger("feathergate.keys")

TOPIC = "keys.invalidate"
_HEADERS = (b"x-litellm-api-key", b"authorization", b"api-key", b"x-api-key", b"x-goog-api-key")
_NEGATIVE_TTL = 1.0  # an unknown key is asked for again after this long
_CHANGE_WINDOW = 30.0  # change-log rows read back this far (clock skew between hosts)
_BATCH = 5000
_PERIOD_SLACK = 3600.0  # a period's shared counter outlives its reset by this much
_FOREVER_TTL = 7 * 86400.0  # a budget that never resets: its counter, while in use


class Broadcast(Protocol):
    """The seam's publish/subscribe (``SharedState`` has exactly these)."""

    def publish(self, topic: str, message: Any) -> None: ...

    def subscribe(self, topic: str, handler: Callable[[Any], None]) -> None: ...


def read_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request presents, by LiteLLM's header precedence; ``None`` if none."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _HEADERS and lowered not in found:
            found[lowered] = value
    for name in _HEADERS:
        present = found.get(name)
        if present is None:
            continue
        text = present.decode("latin-1").strip()
        if name in (b"authorization", b"x-litellm-api-key"):
            if text[:7].lower() == "bearer ":
                text = text[7:].strip()
            elif name == b"authorization":
                continue  # Basic and friends carry no key of ours
        if text:
            return text
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    master: bool
    key: KeyRecord | None = None
    team: TeamRecord | None = None

    @property
    def admin(self) -> bool:
        return self.master or (self.key is not None and self.key.admin)


MASTER = Principal(master=True)
OPEN = Principal(master=False)


@dataclass(slots=True)
class Admission:
    """What one request holds: its reservation, its rate tickets, its parallel slots."""

    principal: Principal
    model: str
    prompt_estimate: int
    request_id: str
    started: float
    reservation: Reservation | None = None
    tickets: list[Grant] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)  # shared budget reservations
    slots: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    cost: float | None = None
    finished: bool = False
    # The prices when admitted: a reload (new deployments) does not reprice a running call.
    prices: Mapping[str, Price | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Cached:
    record: KeyRecord | None  # None: not in the store (a negative entry)
    fetched: float


class KeyService:
    def __init__(
        self,
        settings: KeySettings,
        master_key: str | None,
        prices: Mapping[str, Price | None],
        groups: Mapping[str, tuple[str, ...]],
        *,
        store: Store | None = None,
        state: SharedState | None = None,
        gauges: ParallelGauges | None = None,
        broadcast: Broadcast | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        assert settings.database_url is not None
        self.settings = settings
        self.master_key = master_key
        self.prices = prices  # deployment id -> price
        self.groups = groups  # model_name -> deployment ids
        self.store = store or open_store(settings.database_url)
        self.wall = wall
        # rpm/tpm through the state seam: Redis when configured, else this process's memory.
        self.state: SharedState = state or MemoryState(trio.current_time)
        # Budgets: this process's ledger decides alone without Redis; with it,
        # the seam's period counters are the truth every process checks too.
        self.shared_budgets = state is not None
        # Parallel requests are counted per process (see README, Virtual keys).
        self.gauges: ParallelGauges = gauges or MemoryGauges()
        self.ledger = MemoryLedger(settings.timezone)
        self.broadcast = broadcast if broadcast is not None else state
        self._keys: dict[str, _Cached] = {}
        self._teams: dict[str, TeamRecord | None] = {}
        self._loading: dict[str, trio.Event] = {}
        self._ops: deque[SpendOp] = deque()
        self._seen: dict[str, float] = {}
        self.dropped = 0  # spend rows lost to a full buffer
        self.flushed_at = 0.0
        self._flush_lock = trio.Lock()
        self._loops = trio.CancelScope()
        self.store_up = True

    # -- lifecycle -------------------------------------------------------------------
    async def open(self, nursery: trio.Nursery) -> None:
        await self.store.migrate()
        for change in await self.store.changes_since(self.wall() - _CHANGE_WINDOW):
            self._seen[change.id] = self.wall()
        if self.broadcast is not None:
            self.broadcast.subscribe(TOPIC, self._on_message)
        nursery.start_soon(self._background)

    async def _background(self) -> None:
        with self._loops:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._poll_loop)
                nursery.start_soon(self._flush_loop)

    async def close(self) -> None:
        # The loops stop before the store closes: one of them reconnecting
        # after it would leave a connection open (psycopg warns at exit).
        self._loops.cancel()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(10), contextlib.suppress(StoreUnavailable):
                await self.flush()
            if self._ops:
                log.warning(
                    "key store unreachable at shutdown: %d spend rows not written", len(self._ops)
                )
            await self.store.aclose()

    # -- identify --------------------------------------------------------------------
    async def identify(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        raw = read_key(headers)
        if raw is None:
            raise KeyAuthError("auth_error", "Authentication Error, No api key passed in.")
        master = self.master_key
        if master and hmac.compare_digest(raw.encode(), master.encode()):
            return MASTER
        if not raw.startswith("sk-"):
            raise KeyAuthError(
                "auth_error",
                "Authentication Error, LiteLLM Virtual Key expected: "
                "the key must start with 'sk-'.",
            )
        token = hash_key(raw)
        record = await self._key(token)
        now = self.wall()
        if record is None:
            raise KeyAuthError(
                "token_not_found_in_db",
                f"Authentication Error, Invalid proxy server token passed. Received API Key = "
                f"{key_name(raw)}, Key Hash (Token) ={token}. Unable to find token in cache or "
                "the key store.",
            )
        if record.blocked:
            raise KeyAuthError(
                "auth_error",
                "Authentication Error, Key is blocked. "
                "Update via `/key/unblock` if you're an admin.",
            )
        if record.expires is not None and record.expires <= now:
            raise KeyAuthError(
                "expired_key",
                f"Authentication Error - Expired Key. Key Expiry time {_iso(record.expires)} "
                f"and current time {_iso(now)}",
                param=record.key_name,
            )
        team = await self._team(record.team_id) if record.team_id else None
        if team is not None and team.blocked:
            raise KeyAuthError(
                "auth_error",
                f"Authentication Error, Team={team.team_id} is blocked. Update via "
                "`/team/unblock` if you're an admin.",
            )
        return Principal(master=False, key=record, team=team)

    async def _key(self, token: str) -> KeyRecord | None:
        now = self.wall()
        cached = self._keys.get(token)
        if cached is not None:
            fresh = now - cached.fetched < (
                self.settings.cache_ttl if cached.record is not None else _NEGATIVE_TTL
            )
            if fresh or (cached.record is not None and not self.store_up):
                return cached.record
        waiting = self._loading.get(token)
        if waiting is not None:
            await waiting.wait()
            again = self._keys.get(token)
            return again.record if again is not None else None
        event = self._loading[token] = trio.Event()
        try:
            try:
                record = await self.store.get_key(token, now)
            except StoreUnavailable:
                if cached is not None and cached.record is not None:
                    return cached.record  # known before the outage: keep serving it
                raise StoreUnavailable(
                    "the key store is unreachable and this key is not cached; try again shortly"
                ) from None
            self._keys[token] = _Cached(record, self.wall())
            return record
        finally:
            del self._loading[token]
            event.set()

    async def _team(self, team_id: str) -> TeamRecord | None:
        if team_id in self._teams:
            return self._teams[team_id]
        team = await self.store.get_team(team_id)
        self._teams[team_id] = team
        return team

    # -- admit -----------------------------------------------------------------------
    def group_worst_case(
        self, model: str, prompt: int, max_tokens: int | None
    ) -> tuple[float, bool]:
        """The worst case over the group's deployments; and whether every one is free."""
        worst = 0.0
        prices = [self.prices.get(d) for d in self.groups.get(model, ())]
        priced = [p for p in prices if p is not None]
        for price in priced:
            worst = max(worst, price.worst_case(prompt, max_tokens))
        free = bool(priced) and len(priced) == len(prices) and all(p.free for p in priced)
        return worst, free

    async def admit(
        self, principal: Principal, model: str, prompt_estimate: int, max_tokens: int | None
    ) -> Admission | None:
        """Check models, budgets and limits; raise the first that refuses."""
        key = principal.key
        if key is None:
            return None
        team = principal.team
        _check_models(key, team, model)
        now = self.wall()
        admission = Admission(
            principal, model, prompt_estimate, secrets.token_hex(12), now, prices=self.prices
        )
        worst, free = self.group_worst_case(model, prompt_estimate, max_tokens)
        if not free:
            limits = [_key_limit(key)]
            if team is not None:
                limits.append(_team_limit(team))
            result = self.ledger.reserve(limits, worst, now)
            if isinstance(result, Refusal):
                raise BudgetExceeded(
                    self.settings.budget_exceeded_status, _budget_message(result, key)
                )
            admission.reservation = result
            for limit, reset_at, before in result.resets:
                self._queue(SpendOp(None, limit.kind, limit.ident, reset_at, before))
        try:
            if admission.reservation is not None and self.shared_budgets:
                await self._hold(admission, admission.reservation, key, now)
            await self._limits(admission, key, team)
        except BaseException:
            self._release(admission, 0.0, 0)
            raise
        return admission

    async def _hold(
        self, admission: Admission, reservation: Reservation, key: KeyRecord, now: float
    ) -> None:
        """The same reservation on the shared period counters, which every process checks."""
        for limit, bucket in reservation.buckets:
            if limit.max_budget is None:
                continue
            period = int(bucket.reset_at or 0)
            ttl = bucket.reset_at - now + _PERIOD_SLACK if bucket.reset_at else _FOREVER_TTL
            hold = await self.state.reserve(
                limit.kind,
                limit.ident,
                period,
                reservation.amount,
                limit.max_budget,
                seed=bucket.spend,
                ttl=max(ttl, 1.0),
            )
            if not hold.admitted:
                raise BudgetExceeded(
                    self.settings.budget_exceeded_status,
                    _budget_message(Refusal(limit, hold.spent), key),
                )
            admission.holds.append(hold)

    async def _limits(self, admission: Admission, key: KeyRecord, team: TeamRecord | None) -> None:
        scopes: list[tuple[str, str, str, int | None, int | None, int | None]] = [
            (
                "api_key",
                key.token,
                "api_key",
                key.rpm_limit,
                key.tpm_limit,
                key.max_parallel_requests,
            )
        ]
        if team is not None:
            scopes.append(
                (
                    "team",
                    team.team_id,
                    "team",
                    team.rpm_limit,
                    team.tpm_limit,
                    team.max_parallel_requests,
                )
            )
        for scope, ident, label, _, _, parallel in scopes:
            if parallel is not None:
                if not self.gauges.enter(scope, ident, parallel):
                    raise KeyRateLimited(
                        f"Rate limit exceeded for {label}: {_who(scope, ident)}. Limit type: "
                        f"max_parallel_requests. Current limit: {parallel}, Remaining: 0.",
                        1.0,
                        [(b"x-ratelimit-limit-type", b"max_parallel_requests")],
                    )
                admission.slots.append((scope, ident))
        for scope, ident, label, rpm, tpm, _ in scopes:
            if rpm is None and tpm is None:
                continue
            ticket = await self.state.acquire(
                scope, ident, Limit(rpm, tpm), admission.prompt_estimate
            )
            headers = _limit_headers(label, rpm, tpm, ticket)
            if not ticket.admitted:
                kind = "requests" if rpm is not None and ticket.requests + 1 > rpm else "tokens"
                limit = rpm if kind == "requests" else tpm
                used = ticket.requests if kind == "requests" else ticket.tokens
                reset = datetime.fromtimestamp(self.wall() + ticket.wait, UTC)
                raise KeyRateLimited(
                    f"Rate limit exceeded for {label}: {_who(scope, ident)}. Limit type: {kind}. "
                    f"Current limit: {limit}, Remaining: {max(0, (limit or 0) - used)}. "
                    f"Limit resets at: {reset:%Y-%m-%d %H:%M:%S} UTC",
                    ticket.wait,
                    headers,
                )
            admission.tickets.append(ticket)
            admission.headers.extend(headers)

    # -- finish ----------------------------------------------------------------------
    def response_headers(
        self, admission: Admission, deployment_id: str, usage: Usage | None
    ) -> list[tuple[bytes, bytes]]:
        """x-litellm-* headers; with ``usage`` (a JSON answer) also the response cost."""
        key = admission.principal.key
        assert key is not None
        spend = self.ledger.spend("key", key.token) or 0.0
        headers = [(b"x-litellm-call-id", admission.request_id.encode()), *admission.headers]
        if usage is not None:
            price = admission.prices.get(deployment_id)
            admission.cost = cost(price, usage) if price is not None else 0.0
            headers.append((b"x-litellm-response-cost", _num(admission.cost)))
            spend += admission.cost
        headers.append((b"x-litellm-key-spend", _num(spend)))
        if key.max_budget is not None:
            headers.append((b"x-litellm-key-max-budget", _num(key.max_budget)))
        return headers

    def finish(
        self,
        admission: Admission,
        deployment_id: str | None,
        usage: Usage | None,
        chunks: int,
        status: int,
    ) -> None:
        """Settle what the call really cost; queue its spend row. Call exactly once."""
        if admission.finished:
            return
        price = admission.prices.get(deployment_id) if deployment_id is not None else None
        parsed = usage
        if parsed is None and chunks > 0:
            # No usage reached us (the client left mid-stream): the prompt estimate, and
            # about a token a chunk for what was generated.
            parsed = Usage(admission.prompt_estimate, chunks)
        known = price is not None and parsed is not None
        amount = cost(price, parsed) if price is not None and parsed is not None else 0.0
        admission.cost = amount if known else None  # the access log's cost
        tokens = parsed.total if parsed is not None else 0
        self._release(admission, amount, tokens)
        key = admission.principal.key
        assert key is not None
        outcome = "success" if status < 400 else ("cancelled" if status == 499 else "failure")
        self._queue(
            SpendOp(
                SpendRow(
                    request_id=admission.request_id,
                    api_key=key.token,
                    team_id=key.team_id,
                    model=admission.model,
                    spend=amount,
                    prompt_tokens=parsed.input if parsed is not None else 0,
                    completion_tokens=parsed.output if parsed is not None else 0,
                    start_time=admission.started,
                    end_time=self.wall(),
                    status=outcome,
                )
            )
        )

    def _release(self, admission: Admission, amount: float, tokens: int) -> None:
        admission.finished = True
        if admission.reservation is not None:
            self.ledger.settle(admission.reservation, amount)
        for hold in admission.holds:
            self.state.release(hold, amount)
        for ticket in admission.tickets:
            self.state.settle(ticket, tokens)
        for scope, ident in admission.slots:
            self.gauges.leave(scope, ident)

    # -- the write-behind buffer -------------------------------------------------------
    def _queue(self, op: SpendOp) -> None:
        if len(self._ops) >= self.settings.buffer_limit:
            self._ops.popleft()
            self.dropped += 1
        self._ops.append(op)

    async def flush(self) -> None:
        """Write every queued op; on failure they stay queued (oldest first)."""
        async with self._flush_lock:
            while self._ops:
                batch = [self._ops.popleft() for _ in range(min(_BATCH, len(self._ops)))]
                try:
                    await self.store.write_spend(batch)
                except BaseException:
                    self._ops.extendleft(reversed(batch))
                    self.store_up = False
                    raise
                self.store_up = True
                for op in batch:
                    row = op.row
                    if row is not None and row.spend:
                        self.ledger.flushed("key", row.api_key, row.spend)
                        if row.team_id is not None:
                            self.ledger.flushed("team", row.team_id, row.spend)
            self.flushed_at = self.wall()

    async def _flush_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.flush_interval)
            with contextlib.suppress(StoreUnavailable):  # kept queued for the next tick
                await self.flush()

    # -- invalidation ------------------------------------------------------------------
    def invalidate(self, kind: str, ident: str, *, publish: bool = True) -> None:
        """Drop a key or team from this process's cache (and tell the others)."""
        if kind == "key":
            self._keys.pop(ident, None)
        else:
            self._teams.pop(ident, None)
        if publish and self.broadcast is not None:
            self.broadcast.publish(TOPIC, {"kind": kind, "ident": ident})

    def put_key(self, record: KeyRecord) -> None:
        """A record this process just wrote; its ledger follows an admin's spend edit."""
        self._keys[record.token] = _Cached(record, self.wall())
        self.ledger.reseed("key", record.token, record.spend)

    def put_team(self, record: TeamRecord) -> None:
        self._teams[record.team_id] = record
        self.ledger.reseed("team", record.team_id, record.spend)

    def _on_message(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("kind") in ("key", "team"):
            self.invalidate(str(message["kind"]), str(message.get("ident")), publish=False)

    async def _poll_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.poll_interval)
            try:
                await self.poll()
                self.store_up = True
            except StoreUnavailable:
                self.store_up = False

    async def poll(self) -> None:
        """Apply the store's change log: reload what changed, drop what is gone."""
        now = self.wall()
        for change in await self.store.changes_since(now - _CHANGE_WINDOW):
            if change.id in self._seen:
                continue
            self._seen[change.id] = now
            if change.kind == "key":
                cached = self._keys.pop(change.ident, None)
                if cached is not None and cached.record is not None:
                    record = await self.store.get_key(change.ident, now)
                    if record is not None and record.token == change.ident:
                        self.put_key(record)
            elif change.ident in self._teams:
                team = await self.store.get_team(change.ident)
                self._teams.pop(change.ident, None)
                if team is not None:
                    self.put_team(team)
        for ident, seen in list(self._seen.items()):
            if seen < now - 2 * _CHANGE_WINDOW:
                del self._seen[ident]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _num(value: float) -> bytes:
    return repr(round(value, 10)).encode()


def _who(scope: str, ident: str) -> str:
    return ident if scope != "api_key" else f"{ident[:12]}..."


def _allowed(models: tuple[str, ...], model: str) -> bool:
    return not models or model in models or "*" in models


def _check_models(key: KeyRecord, team: TeamRecord | None, model: str) -> None:
    key_models = key.models
    if "all-team-models" in key_models:
        key_models = ()
    if _allowed(key_models, model) and (team is None or _allowed(team.models, model)):
        return
    raise ModelAccessDenied(
        f"The requested model '{model}' is not available for this API key, or the model name "
        "is invalid. Ask your admin for access, or use one of the key's models."
    )


def _key_limit(key: KeyRecord) -> BudgetLimit:
    return BudgetLimit(
        "key", key.token, key.max_budget, key.budget_duration, key.spend, key.budget_reset_at
    )


def _team_limit(team: TeamRecord) -> BudgetLimit:
    return BudgetLimit(
        "team",
        team.team_id,
        team.max_budget,
        team.budget_duration,
        team.spend,
        team.budget_reset_at,
    )


def _budget_message(refusal: Refusal, key: KeyRecord) -> str:
    limit = refusal.limit
    if limit.kind == "team":
        who = f"Team={limit.ident}"
    else:
        who = f"Key={key.key_alias} ({key.key_name})" if key.key_alias else f"Key={key.key_name}"
    period = f" over its {limit.duration} budget" if limit.duration else ""
    return (
        f"Budget has been exceeded! {who}{period} Current cost: {refusal.spend:.6g}, "
        f"Max budget: {limit.max_budget:g}"
    )


def _limit_headers(
    label: str, rpm: int | None, tpm: int | None, ticket: Grant
) -> list[tuple[bytes, bytes]]:
    headers = []
    if rpm is not None:
        headers.append((f"x-ratelimit-{label}-limit-requests".encode(), str(rpm).encode()))
        left = max(0, rpm - ticket.requests)
        headers.append((f"x-ratelimit-{label}-remaining-requests".encode(), str(left).encode()))
    if tpm is not None:
        headers.append((f"x-ratelimit-{label}-limit-tokens".encode(), str(tpm).encode()))
        left = max(0, tpm - ticket.tokens)
        headers.append((f"x-ratelimit-{label}-remaining-tokens".encode(), str(left).encode()))
    return headers
