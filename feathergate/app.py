"""The Quart-Trio application: models, health probes and metrics.

:func:`create_app` returns the ASGI callable to serve: the chat route goes to
:class:`feathergate.gateway.Gateway`, all else to the Quart app built here.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart, Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from feathergate import metrics
from feathergate.config import Config
from feathergate.early_response import wait_for_body
from feathergate.errors import GatewayError, ModelNotFound, RouteError, error_response
from feathergate.gateway import REQUEST_ID, Gateway, Runtime, check_scope
from feathergate.health.report import health_report
from feathergate.keys.admin import admin_blueprint
from feathergate.lastresort import internal_error
from feathergate.typing import ASGIApp, Scope

if TYPE_CHECKING:
    from feathergate.observability.tracing import Tracing

__all__ = ["create_app"]

_STARTED = int(time.time())


def _metrics_payload() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # --workers N: sum every worker's files
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def _request_id() -> str | None:
    found = request.scope.get(REQUEST_ID)
    return found if isinstance(found, str) else None


def _error(err: GatewayError) -> Response:
    status, headers, body = error_response(err, _request_id())
    response = Response(body, status=status, content_type="application/json")
    for name, value in headers[2:]:
        response.headers[name.decode()] = value.decode()
    return response


def _model_card(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _STARTED, "owned_by": owner}


def build_quart(runtime: Runtime) -> Quart:
    app = QuartTrio("feathergate")
    app.config.update(
        RESPONSE_TIMEOUT=None,  # the relay owns every deadline (STACK.md)
        BODY_TIMEOUT=runtime.config.server.body_timeout,
        MAX_CONTENT_LENGTH=runtime.config.server.max_request_bytes,
    )

    @app.before_serving
    async def open_pools() -> None:
        await runtime.open(app.nursery)

    @app.after_serving
    async def close_pools() -> None:
        await runtime.close()

    @app.before_request
    async def authenticate() -> Response | None:
        if request.path.startswith("/v1/") or request.path.startswith("/models"):
            try:
                if runtime.keys is not None:
                    await runtime.keys.identify(request.scope["headers"])
                else:
                    # The raw bytes, as the relayed routes see them (Quart's headers are
                    # latin-1 text); x-api-key too: Anthropic's SDKs and Claude Code send it.
                    check_scope(runtime.config, cast(Scope, request.scope), api_key_header=True)
            except GatewayError as err:
                return _error(err)
        return None

    def cards() -> list[dict[str, Any]]:
        owners: dict[str, str] = {}
        modes: dict[str, str] = {}  # model_info.mode, listed as LiteLLM lists it
        for dep in runtime.config.deployments:  # the current config's, after a reload too
            owners.setdefault(dep.model_name, dep.provider)
            mode = dep.model_info.get("mode")
            if isinstance(mode, str) and mode.strip():
                modes.setdefault(dep.model_name, mode)
        cards = [
            _model_card(name, owners.get(name, "feathergate"))
            for name in runtime.router.model_names
        ]
        for card in cards:
            if card["id"] in modes:
                card["mode"] = modes[card["id"]]
        return cards

    @app.get("/v1/models")
    @app.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": cards()}

    @app.get("/v1/models/<path:model>")
    @app.get("/models/<path:model>")
    async def get_model(model: str) -> Any:
        for card in cards():
            if card["id"] == model:
                return card
        return _error(ModelNotFound(model))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        gen = runtime.current
        return health_report(
            gen.config, gen.router.snapshot(), runtime.checks, generation=gen.number
        )

    @app.get("/health/liveliness")
    @app.get("/health/liveness")
    async def liveliness() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/readiness")
    async def readiness() -> Any:
        if runtime.draining or not runtime.opened:
            return {"status": "draining"}, 503
        return {"status": "ready", "inflight": len(runtime.drain)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        for dep_id, status in runtime.router.snapshot().items():
            cooling = 1.0 if status["cooldown_remaining"] > 0 else 0.0
            metrics.COOLDOWN.labels(status["model_name"], dep_id).set(cooling)
        return Response(_metrics_payload(), content_type=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return _error(RouteError(exc.code or 400, f"{exc.name}: {request.method} {request.path}"))

    # Quart picks the most specific handler, so HTTPException keeps the one above.
    @app.errorhandler(Exception)
    async def last_resort(exc: Exception) -> Response:
        return _error(internal_error(exc, request.path, runtime.secrets, _request_id()))

    app.register_blueprint(admin_blueprint(lambda: runtime.keys))
    return app


def create_app(config: Config, tracing: Tracing | None = None) -> Gateway:
    """``tracing``: spans go there instead of where the ``OTEL_*`` variables say."""
    runtime = Runtime(config, tracing)
    # Quart types its ASGI messages as hypercorn's TypedDicts; ours are plain dicts.
    quart = cast(ASGIApp, build_quart(runtime))
    # Quart answers some requests before their body is in: see early_response.
    return Gateway(runtime, wait_for_body(quart))
