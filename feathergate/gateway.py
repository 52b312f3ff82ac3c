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
import secrets
import time
from collections.abc import Callable
from functools import partial

import trio

from feathergate import metrics, offload
from feathergate.catalog import CATALOG
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
from feathergate.keys.gate import billed, max_tokens
from feathergate.keys.service import Admission, KeyService
from feathergate.keys.wiring import build_key_service
from feathergate.lastresort import internal_error, secrets_of
from feathergate.mock import MockTransport
from feathergate.operations.base import ClientRequest, Operation
from feathergate.operations.local import LOCAL
from feathergate.providers.base import CallContext
from feathergate.relay import (
    Attempt,
    ClientDisconnected,
    Drain,
    Exchange,
    read_body,
    relay,
    send_error,
)
from feathergate.router import Router
from feathergate.state.base import SharedState
from feathergate.typing import ASGIApp, ASGIReceive, ASGISend, Scope
from feathergate.upstream import Transport, UpstreamPool

__all__ = ["Gateway", "Runtime", "check_credentials", "check_master_key"]

# Completion ids: unique per process start, without uuid4's cost per request.
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)


class Runtime:
    """What every request shares: the config, the router, the upstream pools."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.shared: SharedState | None = None
        if config.shared_state.enabled:
            from feathergate.state.redis import RedisState  # coredis only when configured

            self.shared = RedisState(config.shared_state)
        self.router = Router(config, store=self.shared)
        self.drain = Drain()
        self.pool: UpstreamPool | None = None
        self.draining = False
        self.secrets = secrets_of(config)  # masked out of every logged traceback
        self.keys: KeyService | None = build_key_service(config, self.shared)

    async def open(self, nursery: trio.Nursery | None = None) -> None:
        self.pool = UpstreamPool(self.config, _route)
        if self.keys is not None:
            assert nursery is not None, "virtual keys run background tasks"
            await self.keys.open(nursery)

    async def close(self) -> None:
        if self.keys is not None:
            await self.keys.close()
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None


def _route(dep: Deployment) -> str | Transport:
    """Where a deployment's calls go: a local mock, or its API's base URL."""
    if dep.mock_response is not None:
        return MockTransport(dep.mock_response)
    info = CATALOG.get(dep.provider)
    return dep.api_base or (info.default_api_base if info is not None else None) or ""


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


def _authenticate(config: Config, scope: Scope, endpoint: Endpoint) -> None:
    api_key = _header(scope, b"x-api-key") if endpoint.api_key_header else None
    check_credentials(config, _header(scope, b"authorization"), api_key)


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
        endpoint = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.fallback(scope, receive, send)
        elif scope["method"] == "POST":
            await self.serve(endpoint, scope, receive, send)
        else:
            err = RouteError(405, f"{scope['path']} takes POST, not {scope['method']}")
            await send_error(send, err, [(b"allow", b"POST")], endpoint.envelope)

    async def serve(
        self, endpoint: Endpoint, scope: Scope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        started = trio.current_time()
        runtime = self.runtime
        model = "unknown"
        status = 500
        keys = runtime.keys
        admission: Admission | None = None
        exchange: Exchange | None = None
        try:
            try:
                principal = None
                if keys is None:
                    _authenticate(runtime.config, scope, endpoint)
                else:
                    principal = await keys.identify(scope["headers"])
                server = runtime.config.server
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
                # About four bytes a token: rpm/tpm accounting and budget reservations.
                plan = runtime.router.plan(
                    request.model,
                    stream=request.stream,
                    prompt_tokens=len(raw) // 4 if endpoint.metered else 0,
                )
                model = plan.group
                if principal is not None and endpoint.metered:  # count_tokens costs nothing
                    assert keys is not None
                    admission = await keys.admit(
                        principal, request.model, len(raw) // 4, max_tokens(request.body)
                    )
            except GatewayError as err:
                status = await send_error(send, err, [], endpoint.envelope)
                return
            if admission is not None and keys is not None:
                request = billed(request, keys.settings)
            exchange = Exchange(
                request, started, runtime.drain, server.client_stall_timeout, endpoint.envelope
            )
            if admission is not None and keys is not None:
                exchange.meter = partial(keys.response_headers, admission)
            status = await relay(
                exchange, plan, lambda dep: self._attempt(endpoint, dep, request), receive, send
            )
            if request.size >= LARGE_BODY:  # freed here, it would be one long C call on the loop
                await offload.run(partial(dispose, request.body), size=request.size)
        except ClientDisconnected:
            status = 499
        except Exception as exc:  # the last resort: see feathergate.lastresort
            status = await self._internal_error(exc, scope, send, endpoint, exchange)
        finally:
            if admission is not None and keys is not None:
                ex = exchange
                keys.finish(
                    admission,
                    ex.deployment_id if ex else None,
                    ex.usage if ex else None,
                    ex.chunks if ex else 0,
                    status,
                )
            metrics.requests(model, status).inc()
            metrics.request_latency(model).observe(trio.current_time() - started)

    async def _internal_error(
        self, exc: Exception, scope: Scope, send: ASGISend, endpoint: Endpoint, ex: Exchange | None
    ) -> int:
        err = internal_error(exc, scope["path"], self.runtime.secrets)
        if ex is None or not ex.response_started:
            return await send_error(send, err, ex.headers if ex else [], endpoint.envelope)
        if not ex.finishing:  # a stream is open: end it with the error
            ex.finishing = True
            body = endpoint.envelope.event(err)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        return ex.status

    def _attempt(self, endpoint: Endpoint, dep: Deployment, request: ClientRequest) -> Attempt:
        if dep.unavailable:
            raise ProviderUnsupported(f"model '{request.model}': {dep.unavailable}")
        if dep.missing_var and dep.mock_response is None:
            raise MissingCredential(
                f"model '{request.model}' needs the environment variable "
                f"{dep.missing_var}, which is not set on the gateway"
            )
        pool = self.runtime.pool
        assert pool is not None, "the gateway was not started"
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
