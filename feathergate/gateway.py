"""The ASGI entry point: relayed endpoints (:mod:`feathergate.endpoints`) first, then Quart.

Relayed endpoints are the hot path and need the raw ASGI ``receive`` to watch
for disconnects (see :mod:`feathergate.relay`), so they are dispatched here
before Quart; models, health and metrics are ordinary Quart routes. Every
endpoint goes the same way: the master key, the body, the endpoint's ingress
codec, the router's plan, then the one relay with the endpoint's operation
for each deployment tried, errors in the endpoint's envelope.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from functools import partial

import trio

from feathergate import metrics, offload
from feathergate.clientjson import LARGE_BODY, dispose
from feathergate.config import Config, Deployment
from feathergate.endpoints import ROUTES, Endpoint
from feathergate.errors import (
    AuthenticationFailed,
    GatewayError,
    MissingCredential,
    ProviderUnsupported,
    RouteError,
)
from feathergate.generation import Runtime
from feathergate.ids import REQUEST_ID, request_id_from
from feathergate.keys.seam import KeySeam
from feathergate.lastresort import internal_error
from feathergate.observability.access import (
    ACCESS,
    AccessRecord,
    error_label,
    log_access,
    outcome,
)
from feathergate.operations.base import ClientRequest, Operation
from feathergate.operations.local import LOCAL
from feathergate.providers.base import CallContext
from feathergate.relay import (
    Attempt,
    ClientDisconnected,
    Exchange,
    read_body,
    relay,
    send_error,
)
from feathergate.router import AttemptPlan
from feathergate.typing import BODY_EXTENSION, ASGIApp, ASGIReceive, ASGISend, Message, Scope
from feathergate.upstream import UpstreamPool

__all__ = [
    "REQUEST_ID",
    "Gateway",
    "Runtime",
    "check_credentials",
    "check_master_key",
    "check_scope",
]

# Completion ids: unique per process start, without uuid4's cost per request.
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)


def check_master_key(config: Config, authorization: bytes | None) -> None:
    """Every route's master-key check, in constant time.

    It compares the ``Authorization`` bytes as the client sent them with
    ``Bearer `` and the key's UTF-8.
    """
    key = config.server.master_key
    if key is None or not key.value:
        return
    if authorization is None or not hmac.compare_digest(authorization, _bearer(key.value)):
        raise AuthenticationFailed(
            "missing or invalid master key: send 'Authorization: Bearer <key>'"
        )


@functools.lru_cache(maxsize=4)
def _bearer(key: str) -> bytes:
    return b"Bearer " + key.encode()  # once per key, not once per request


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def check_credentials(config: Config, authorization: bytes | None, api_key: bytes | None) -> None:
    """The master key, as a bearer token or as an ``x-api-key`` (Anthropic's SDKs send either)."""
    if api_key is not None and authorization is not None:
        try:
            check_master_key(config, authorization)
            return
        except AuthenticationFailed:
            pass  # the SDK may send both; the x-api-key decides
    if api_key is not None:
        authorization = b"Bearer " + api_key
    check_master_key(config, authorization)


def _key_label(config: Config) -> str | None:
    """How the access log names the caller's key: never the key itself."""
    return "master" if config.server.master_key else None


def check_scope(config: Config, scope: Scope, *, api_key_header: bool) -> None:
    """The master key check on a request's raw header bytes (every route, every front door)."""
    api_key = _header(scope, b"x-api-key") if api_key_header else None
    check_credentials(config, _header(scope, b"authorization"), api_key)


# What routing learnt of a request, for its access record: the alias asked
# for, the exchange (the relay's record of it), the plan, the key's label,
# the cost (virtual keys, when priced).
_Routed = tuple[str | None, Exchange | None, AttemptPlan | None, str | None, float | None]


class Gateway:
    def __init__(
        self,
        runtime: Runtime,
        fallback: ASGIApp,
        operation_for: Callable[[Endpoint, str], Operation] = Endpoint.operation,
    ) -> None:
        self.runtime = runtime
        self.fallback = fallback
        self.operation_for = operation_for  # (endpoint, adapter) -> operation: the table

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, b"x-request-id"))
        endpoint = ROUTES.get(scope["path"])
        if endpoint is None:
            await self._fallback(scope, receive, send, request_id)
        elif scope["method"] == "POST":
            await self.serve(endpoint, scope, receive, send, request_id)
        else:
            started = trio.current_time()
            err = RouteError(405, f"{scope['path']} takes POST, not {scope['method']}")
            extra = [(b"allow", b"POST"), (b"x-request-id", request_id.encode())]
            status = await send_error(send, err, extra, endpoint.envelope, request_id)
            self._log(scope, request_id, started, status, error=err)

    async def _fallback(
        self, scope: Scope, receive: ASGIReceive, send: ASGISend, request_id: str
    ) -> None:
        """Quart's routes, with the request id on the response (and in the scope, for errors)."""
        started = trio.current_time()
        scope[REQUEST_ID] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.fallback(scope, receive, send_with_id)
        finally:
            self._log(scope, request_id, started, status)

    async def serve(
        self,
        endpoint: Endpoint,
        scope: Scope,
        receive: ASGIReceive,
        send: ASGISend,
        request_id: str | None = None,
    ) -> None:
        started = trio.current_time()
        runtime = self.runtime
        gen = runtime.current  # this request's config, router and pools, to its end
        gen.enter()
        request_id = request_id or request_id_from(_header(scope, b"x-request-id"))
        id_header = [(b"x-request-id", request_id.encode())]
        tracing = runtime.tracing
        trace = tracing.request_started(scope, endpoint.name) if tracing is not None else None
        model = "unknown"
        alias: str | None = None
        status = 500
        seam = KeySeam(runtime.keys) if runtime.keys is not None else None
        exchange: Exchange | None = None
        plan: AttemptPlan | None = None
        key: str | None = None
        ended: str | None = None
        error: GatewayError | None = None
        try:
            try:
                if seam is None:
                    check_scope(gen.config, scope, api_key_header=endpoint.api_key_header)
                    key = _key_label(gen.config)
                else:  # virtual keys: the master key is one of them
                    await seam.identify(scope["headers"])
                    key = seam.label
                server = gen.config.server
                raw = await read_body(
                    receive, server.max_request_bytes, server.body_timeout, server.body_idle_timeout
                )
                parse = partial(
                    endpoint.ingress.parse,
                    raw,
                    scope["headers"],
                    scope.get("query_string", b""),
                    server.max_messages,
                )
                request = await offload.run(parse, size=len(raw))
                alias = request.model
                # About four bytes a token: rpm/tpm accounting and budget reservations.
                plan = gen.router.plan(
                    request.model,
                    stream=request.stream,
                    prompt_tokens=len(raw) // 4 if endpoint.metered else 0,
                )
                model = plan.group
                if seam is not None:
                    request = await seam.admit(endpoint, request, len(raw))
            except GatewayError as err:
                error = err
                status = await send_error(send, err, id_header, endpoint.envelope, request_id)
                return
            exchange = Exchange(
                request,
                started,
                runtime.drain,
                server.client_stall_timeout,
                endpoint.envelope,
                request_id=request_id,
                id_header=id_header,
                observer=tracing,
                trace=trace,
            )
            if seam is not None:
                exchange.meter = seam.meter
            extensions = scope.get("extensions")
            if extensions:
                exchange.open_body = extensions.get(BODY_EXTENSION)
            status = await relay(
                exchange,
                plan,
                lambda dep: self._attempt(endpoint, dep, request, gen.pool),
                receive,
                send,
            )
            if request.size >= LARGE_BODY:  # freed here, it would be one long C call on the loop
                await offload.run(partial(dispose, request.body), size=request.size)
        except ClientDisconnected:
            status = 499
            ended = "client_left:request_body"
        except Exception as exc:  # the last resort: see feathergate.lastresort
            ended = "internal_error"
            error = internal_error(exc, scope["path"], runtime.secrets, request_id)
            status = await self._internal_error(error, send, endpoint, exchange, request_id)
        finally:
            if seam is not None:
                seam.finish(exchange, status)
            gen.leave()
            metrics.requests(model, status).inc()
            metrics.request_latency(model).observe(trio.current_time() - started)
            if exchange is not None:
                ended = ended or exchange.ended
                error = error or exchange.error
            record = self._log(
                scope,
                request_id,
                started,
                status,
                (alias, exchange, plan, key, seam.cost if seam is not None else None),
                ended,
                error,
                for_trace=trace is not None,
            )
            if trace is not None and tracing is not None and record is not None:
                tracing.request_ended(trace, record)

    def _log(
        self,
        scope: Scope,
        request_id: str,
        started: float,
        status: int,
        routed: _Routed = (None, None, None, None, None),
        ended: str | None = None,
        error: GatewayError | None = None,
        *,
        for_trace: bool = False,
    ) -> AccessRecord | None:
        """The request's access record: logged when the access log is on, built when needed."""
        logged = self.runtime.config.observability.access_log and ACCESS.isEnabledFor(logging.INFO)
        if not logged and not for_trace:
            return None
        alias, ex, plan, key, cost = routed
        client = scope.get("client")
        dep = tokens = None
        upstream_status = ttft = None
        if ex is not None:
            dep, tokens, upstream_status = ex.deployment, ex.tokens, ex.upstream_status
            if ex.request.stream and ex.first_byte is not None and ex.response_started:
                ttft = ex.first_byte - started
        record = AccessRecord(
            request_id=request_id,
            method=scope["method"],
            path=scope["path"],
            status=status,
            latency=trio.current_time() - started,
            end=outcome(status, ended, error),
            client=client[0] if client else None,
            model=alias,
            deployment=dep.id if dep is not None else None,
            upstream_status=upstream_status,
            ttft=ttft,
            retries=plan.retries if plan is not None else 0,
            fallbacks=plan.fallbacks if plan is not None else 0,
            tokens_in=tokens.input if tokens is not None else None,
            tokens_out=tokens.output if tokens is not None else None,
            cost=cost,
            key=key,
            error=error_label(error),
        )
        if logged:
            log_access(record)
        return record

    async def _internal_error(
        self,
        err: GatewayError,
        send: ASGISend,
        endpoint: Endpoint,
        ex: Exchange | None,
        request_id: str,
    ) -> int:
        if ex is None or not ex.response_started:
            headers = ex.headers if ex and ex.headers else [(b"x-request-id", request_id.encode())]
            return await send_error(send, err, headers, endpoint.envelope, request_id)
        if not ex.finishing:  # a stream is open: end it with the error
            ex.finishing = True
            body = endpoint.envelope.event(err, request_id)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        return ex.status

    def _attempt(
        self, endpoint: Endpoint, dep: Deployment, request: ClientRequest, pool: UpstreamPool
    ) -> Attempt:
        if dep.unavailable:
            raise ProviderUnsupported(f"model '{request.model}': {dep.unavailable}")
        if dep.missing_var and dep.mock_response is None:
            raise MissingCredential(
                f"model '{request.model}' needs the environment variable "
                f"{dep.missing_var}, which is not set on the gateway"
            )
        ctx = CallContext(
            alias=request.model,
            deployment=dep,
            stream=request.stream,
            include_usage=request.include_usage,
            completion_id=f"chatcmpl-{_ID_PREFIX}{next(_ids):x}",
            created=int(time.time()),
            json_mode=request.json_mode,
            large_body=request.size >= LARGE_BODY,
        )
        adapter = "mock" if dep.mock_response is not None else dep.adapter
        operation = self.operation_for(endpoint, adapter)
        transport = LOCAL if getattr(operation, "local", False) else pool.transport(dep)
        return Attempt(operation, ctx, transport, pool.assets)
