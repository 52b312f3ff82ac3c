"""The ASGI entry point: chat completions on the relay, everything else on Quart.

The chat route is the hot path and needs the raw ASGI ``receive`` to watch for
disconnects (see :mod:`feathergate.relay`), so it is dispatched here before
Quart; models, health and metrics are ordinary Quart routes.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import time
from dataclasses import replace
from functools import partial

import trio

from feathergate import metrics
from feathergate.chat import ChatRequest, parse_chat_request
from feathergate.config import Config, Deployment
from feathergate.errors import (
    AuthenticationFailed,
    GatewayError,
    MissingCredential,
    ProviderUnsupported,
    RouteError,
)
from feathergate.keys.service import Admission, KeyService
from feathergate.keys.wiring import build_key_service
from feathergate.providers import get_provider
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
from feathergate.typing import ASGIApp, ASGIReceive, ASGISend, Scope
from feathergate.upstream import UpstreamPool

__all__ = ["CHAT_PATHS", "Gateway", "Runtime", "check_master_key"]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})

# Completion ids: unique per process start, without uuid4's cost per request.
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)


class Runtime:
    """What every request shares: the config, the router, the upstream pools."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.router = Router(config)
        self.drain = Drain()
        self.pool: UpstreamPool | None = None
        self.draining = False
        self.keys: KeyService | None = build_key_service(config)

    async def open(self, nursery: trio.Nursery | None = None) -> None:
        self.pool = UpstreamPool(self.config)
        if self.keys is not None:
            assert nursery is not None, "virtual keys run background tasks"
            await self.keys.open(nursery)

    async def close(self) -> None:
        if self.keys is not None:
            await self.keys.close()
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None


def check_master_key(config: Config, authorization: bytes | None) -> None:
    key = config.server.master_key
    if key is None or not key.value:
        return
    expected = b"Bearer " + key.value.encode()
    if authorization is None or not hmac.compare_digest(authorization, expected):
        raise AuthenticationFailed(
            "missing or invalid master key: send 'Authorization: Bearer <key>'"
        )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _max_tokens(body: dict[str, object]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            n = body.get("n")
            return value * (n if isinstance(n, int) and n > 1 else 1)
    return None


class Gateway:
    def __init__(self, runtime: Runtime, fallback: ASGIApp) -> None:
        self.runtime = runtime
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http" and scope["path"] in CHAT_PATHS:
            if scope["method"] == "POST":
                await self.chat(scope, receive, send)
            else:
                err = RouteError(405, f"{scope['path']} takes POST, not {scope['method']}")
                await send_error(send, err, [(b"allow", b"POST")])
        else:
            await self.fallback(scope, receive, send)

    async def chat(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
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
                    check_master_key(runtime.config, _header(scope, b"authorization"))
                else:
                    principal = await keys.identify(scope["headers"])
                server = runtime.config.server
                raw = await read_body(receive, server.max_request_bytes, server.body_timeout)
                request = parse_chat_request(raw)
                # About four bytes a token: rpm/tpm accounting and budget reservations.
                plan = runtime.router.plan(
                    request.model, stream=request.stream, prompt_tokens=len(raw) // 4
                )
                model = plan.group
                if keys is not None and principal is not None:
                    admission = await keys.admit(
                        principal, request.model, len(raw) // 4, _max_tokens(request.body)
                    )
            except GatewayError as err:
                status = await send_error(send, err, [])
                return
            strip_usage = False
            if (
                request.stream
                and not request.include_usage
                and runtime.config.keys.always_include_stream_usage
            ):
                # Streams are billed from the upstream's own count; the client did not ask
                # for the usage chunk, so the relay strips it again.
                options = {**(request.body.get("stream_options") or {}), "include_usage": True}
                body = {**request.body, "stream_options": options}
                request = replace(request, body=body, include_usage=True)
                strip_usage = True
            exchange = Exchange(request, started, runtime.drain, server.client_stall_timeout)
            exchange.strip_usage = strip_usage
            if admission is not None and keys is not None:
                exchange.meter = partial(keys.response_headers, admission)
            status = await relay(
                exchange, plan, lambda dep: self._attempt(dep, request), receive, send
            )
        except ClientDisconnected:
            status = 499
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

    def _attempt(self, dep: Deployment, request: ChatRequest) -> Attempt:
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
        )
        adapter = "mock" if dep.mock_response is not None else dep.adapter
        return Attempt(get_provider(adapter), ctx, pool.transport(dep), pool.assets)
