"""The relay: the one place that owns cancellation and deadlines.

Design note
-----------
Each request (any endpoint of :mod:`feathergate.endpoints`) runs in one Trio
nursery with two children:

* a **disconnect watcher** that awaits ASGI ``receive()``; Hypercorn answers
  it with ``http.disconnect`` when the client's socket closes (FIN or RST),
  and the watcher cancels the nursery. Whatever the relay was awaiting at that
  moment (the connect, the upstream's headers, a body read, a retry's
  backoff) is cancelled, and closing the half-read upstream response closes
  its socket: nobody pays for tokens nobody reads.
* the **relay** itself: a loop over the router's attempts. Each attempt
  (:mod:`feathergate.relay.exchange`) is one upstream call. For a stream it
  is one loop, the *pump*: upstream bytes -> the operation's stream pipe ->
  the client's socket. A piece the client's socket cannot take at once is
  awaited for at most ``client_stall_timeout``; a client that stops reading
  for that long has its connection reset, and the upstream is let go.
  (Hypercorn's own writes are shielded and have no timeout, so the pieces
  after the first skip them: :mod:`feathergate.connection`.
  ``TCP_USER_TIMEOUT`` on accepted sockets, set in :mod:`feathergate.server`,
  still bounds the writes that go through Hypercorn.)

Every ``await`` that waits on someone else has its own deadline, and a cancel
scope never spans a ``yield``:

=============  ==============================================================
connect        TCP/TLS connect to the upstream
first_token    request sent -> first upstream body bytes (headers included)
idle           gap between two upstream reads of a stream (LiteLLM's
               ``stream_timeout``)
total          one upstream attempt, start to end (LiteLLM's ``timeout``)
=============  ==============================================================

While nothing has reached the client, a failure is an exception: the router
decides whether to retry (after a backoff, here), fail over or fall back, and
the last failure becomes an HTTP error in the endpoint's envelope (504 for a
deadline; :mod:`feathergate.envelopes`). Once bytes were sent, a failure is
the envelope's SSE error event and a clean end of the stream (PROTOCOLS.md
§1.3 rule 6, INGRESS.md §4.4). Shutdown works the same way: each relay
registers a *drain* scope that the server cancels when the grace period is
over, and the client gets a 503 or an SSE error event.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from feathergate import metrics
from feathergate.config import Deployment
from feathergate.errors import GatewayError, ShuttingDown, UpstreamTimeout
from feathergate.relay.exchange import Attempt, finish_stream, run_attempt
from feathergate.relay.lifecycle import (
    AttemptObserver,
    ClientDisconnected,
    ClientGone,
    Drain,
    Exchange,
    client_left,
    deadline_passed,
    read_body,
    send_error,
)
from feathergate.router import AttemptPlan, Decision, GiveUp
from feathergate.typing import ASGIReceive, ASGISend

__all__ = [
    "Attempt",
    "AttemptObserver",
    "ClientDisconnected",
    "ClientGone",
    "Drain",
    "Exchange",
    "read_body",
    "relay",
    "send_error",
]

AttemptFactory = Callable[[Deployment], Attempt]


async def relay(
    ex: Exchange,
    plan: AttemptPlan,
    make_attempt: AttemptFactory,
    receive: ASGIReceive,
    send: ASGISend,
) -> int:
    """Serve the request to the client; returns the HTTP status sent (499: client left)."""
    metrics.INFLIGHT.inc()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, ex)
            try:
                with ex.drain.scope() as drain:
                    await _attempts(ex, plan, make_attempt, send)
                if drain.cancelled_caught:
                    ex.ended = "shutdown"
                    await _end(ex, send, ShuttingDown())
            except GatewayError as err:
                if isinstance(err, UpstreamTimeout):
                    deadline_passed(ex, err.kind)
                await _end(ex, send, err)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        metrics.INFLIGHT.dec()
    return ex.status


def _route_headers(ex: Exchange, dep: Deployment, plan: AttemptPlan) -> list[tuple[bytes, bytes]]:
    return [
        *ex.id_header,
        (b"x-feathergate-model-id", dep.id.encode()),
        (b"x-feathergate-attempted-retries", str(plan.retries).encode()),
        (b"x-feathergate-attempted-fallbacks", str(plan.fallbacks).encode()),
    ]


async def _attempts(
    ex: Exchange, plan: AttemptPlan, make_attempt: AttemptFactory, send: ASGISend
) -> None:
    dep = plan.next()
    while True:
        refused = await plan.admit(dep)  # shared rpm/tpm; returns at once for the rest
        if refused is not None:
            if isinstance(refused, GiveUp):
                raise refused.err
            dep = refused.dep
            continue
        ex.headers = _route_headers(ex, dep, plan)
        ex.deployment = dep
        ex.first_byte = ex.tokens = ex.stream_error = ex.upstream_status = ex.traceparent = None
        ex.chunks = 0
        metrics.deployment_requests(dep.model_name, dep.id).inc()
        attempt_started = trio.current_time()
        try:
            attempt = make_attempt(dep)
        except GatewayError as err:  # a deployment that cannot be called at all
            decision = plan.failed(dep, err)
        else:
            plan.started(dep)
            try:
                await _observed(ex, attempt, dep, send)
            except GatewayError as err:
                decision = _failed(plan, dep, err)
            except BaseException:
                plan.cancelled(dep, tokens=_total(ex))
                raise
            else:
                if ex.stream_error is not None:
                    # Counts towards cooldown; with bytes sent there is nothing to retry.
                    _failed(plan, dep, ex.stream_error)
                elif _client_gone(ex) is not None:
                    plan.cancelled(dep, tokens=_total(ex))
                else:
                    first = ex.first_byte if ex.first_byte is not None else trio.current_time()
                    plan.succeeded(
                        dep,
                        latency=trio.current_time() - attempt_started,
                        ttft=first - attempt_started if ex.request.stream else None,
                        tokens=_total(ex),
                    )
                return
        if isinstance(decision, GiveUp):
            ex.headers = _route_headers(ex, dep, plan)
            raise decision.err
        kind = "fallback" if decision.is_fallback else "retry"
        metrics.RETRIES.labels(plan.group, kind).inc()
        if decision.delay > 0:
            ex.phase = "backoff"
            await trio.sleep(decision.delay)
        dep = decision.dep


async def _observed(ex: Exchange, attempt: Attempt, dep: Deployment, send: ASGISend) -> None:
    """One attempt, between the observer's two calls when there is one."""
    observer = ex.observer
    if observer is None:
        await run_attempt(ex, attempt, send)
        return
    observer.attempt_started(ex, dep)
    try:
        await run_attempt(ex, attempt, send)
    except BaseException as exc:
        observer.attempt_ended(ex, dep, exc)
        raise
    observer.attempt_ended(ex, dep, ex.stream_error or _client_gone(ex))


def _client_gone(ex: Exchange) -> ClientGone | None:
    """The pump saw the client leave or stall before the watcher did: a cancel, as for it."""
    if ex.status == 499 or ex.ended == "deadline:client_stall":
        return ClientGone(ex.ended)
    return None


def _total(ex: Exchange) -> int | None:
    return ex.tokens.total if ex.tokens is not None else None


def _failed(plan: AttemptPlan, dep: Deployment, err: GatewayError) -> Decision:
    metrics.deployment_failures(dep.model_name, dep.id, err.http_status).inc()
    return plan.failed(dep, err)


async def _end(ex: Exchange, send: ASGISend, err: GatewayError) -> None:
    """Answer ``err``: as an HTTP error while nothing was sent, else as the last SSE event."""
    ex.finishing = True
    ex.error = err
    if ex.response_started:
        await finish_stream(ex, send, ex.envelope.event(err, ex.request_id))
    else:
        ex.status = await send_error(send, err, ex.headers, ex.envelope, ex.request_id)


async def _watch_disconnect(receive: ASGIReceive, scope: trio.CancelScope, ex: Exchange) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not ex.finishing:
                client_left(ex)
                scope.cancel()
            return
