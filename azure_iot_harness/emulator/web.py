"""One ASGI app for every HTTPS surface, served by hypercorn on the emulator's event loop.

Routes, in order: the emulator's own `/_emulator/` API, IoT Hub's service REST API, DPS's service
API and DPS's device API (`/{idScope}/registrations/…`), MQTT over WebSocket; Azure's paths are
matched the way the services match them (azure_paths). `build_app` gets each surface's context
(`WebContext`), never the whole emulator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..config import SERVICE_CONNECT
from ..errors import ServiceError
from . import azure_paths, certification_api, emulator_api, faults_api, management_rest
from .certification import CertificationReports
from .dps import rest as dps_rest
from .dps import service_rest as dps_service_rest
from .dps.context import DpsContext
from .emulator_api import ApiContext
from .faults import FaultBook
from .http_answers import HttpAnswers
from .hub import feedback_rest, twin_rest
from .hub import rest as hub_rest
from .hub.context import HubContext
from .hub.feedback import Feedback
from .hub.service_auth import require
from .mqtt import websocket as mqtt_websocket
from .mqtt.connection import Router
from .protocol.errors import error_body, hub_error, not_supported
from .trace import Trace

log = logging.getLogger("azure_iot_harness.https")


@dataclass(frozen=True)
class WebContext:
    """What the HTTPS surfaces get: one context each, and the MQTT front door for WebSocket."""

    hub: HubContext
    dps: DpsContext
    api: ApiContext
    mqtt_router: Router  # MQTT over WebSocket goes through the same front door as 8883
    max_idle_seconds: float
    connect_timeout: float
    ca_pem: bytes  # the development root CA, served at /_emulator/ca.pem
    faults: FaultBook | None = None  # /_emulator/faults
    trace: Trace | None = None  # /_emulator/trace
    management: management_rest.ManagementContext | None = None  # the certificate routes of the management plane
    feedback: Feedback | None = None  # C2D feedback batches (REST feedback routes)
    # AMQP over WebSocket (subprotocol AMQPWSB10) on /$servicebus/websocket and /$iothub/websocket
    amqp_websocket: Callable[[dict, Any, Any], Awaitable[None]] | None = None
    certification: CertificationReports | None = None  # /_emulator/certification/reports


def build_app(ctx: WebContext) -> HttpAnswers:
    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.error_code, exc.message)
        body = error_body(exc, ctx.hub.clock.now())
        return JSONResponse(body, status_code=exc.status, headers={"iothub-errorcode": exc.error_code})

    routes: list[BaseRoute] = [
        Route("/_emulator/health", lambda request: JSONResponse({"status": "ok"})),
        Route("/_emulator/ca.pem", lambda request: Response(ctx.ca_pem, media_type="application/x-pem-file")),
        *emulator_api.routes(ctx.api),
        *_faults_routes(ctx),
        *_certification_routes(ctx),
        *hub_rest.routes(ctx.hub),
        *twin_rest.routes(ctx.hub),
        *(feedback_rest.routes(ctx.hub, ctx.feedback) if ctx.feedback is not None else []),
        *dps_service_rest.routes(ctx.dps),
        *dps_rest.routes(ctx.dps),
        *(management_rest.routes(ctx.management) if ctx.management is not None else []),
        WebSocketRoute(mqtt_websocket.PATH, _MqttOverWebSocket(ctx)),
        *([WebSocketRoute(AMQP_WEBSOCKET_PATH, _AmqpOverWebSocket(ctx.amqp_websocket))] if ctx.amqp_websocket is not None else []),
        Route("/{path:path}", _unrouted, methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
    ]
    azure_paths.match_case_insensitively(routes)
    app = Starlette(
        routes=routes,
        exception_handlers={ServiceError: service_error},
        middleware=[Middleware(azure_paths.IgnoreTrailingSlash)],
    )
    return HttpAnswers(app)  # outside Starlette: its 500 answers get a phrase too


def _faults_routes(ctx: WebContext) -> list[BaseRoute]:
    if ctx.faults is None or ctx.trace is None:
        return []
    return faults_api.routes(ctx.faults, ctx.trace, _service_connect(ctx.hub))


def _certification_routes(ctx: WebContext) -> list[BaseRoute]:
    if ctx.certification is None:
        return []
    return certification_api.routes(ctx.certification, _service_connect(ctx.hub))


def _service_connect(hub: HubContext) -> Callable[[Request], None]:
    """The check of the `/_emulator` routes: a service token with ServiceConnect, as Azure's."""

    def authorize(request: Request) -> None:
        require(request, hub_host=hub.host, policies=hub.policies, permission=SERVICE_CONNECT, now=hub.clock.time())

    return authorize


# Path prefixes of Azure REST APIs (IoT Hub service, DPS) the emulator does not answer yet.
_AZURE_PREFIXES = (
    "twins/", "devices/", "messages/", "jobs", "configurations", "digitaltwins", "statistics",
    "enrollments", "enrollmentgroups", "registrations", "$iothub/websocket",
)  # fmt: skip; lower case, as Azure's routes match in any case


async def _unrouted(request: Request) -> Response:
    path = request.path_params["path"]
    lowered = path.lower()
    if lowered.startswith(_AZURE_PREFIXES) or "/registrations/" in lowered:
        raise not_supported(f"{request.method} /{path}")
    raise hub_error("NotFound", f"no such resource: {request.method} /{path}")


AMQP_WEBSOCKET_PATH = "/$servicebus/websocket"
AMQP_SUBPROTOCOL = "AMQPWSB10"


class _AmqpOverWebSocket:
    """The ASGI app behind `/$servicebus/websocket` (a class: Starlette calls a function with a
    WebSocket object instead)."""

    def __init__(self, serve: Callable[[dict, Any, Any], Awaitable[None]]) -> None:
        self.serve = serve

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.serve(scope, receive, send)


class _MqttOverWebSocket:
    """The ASGI app behind `/$iothub/websocket`: MQTT connections through the same front door,
    or AMQP for a client asking for subprotocol AMQPWSB10 (the Node service SDK)."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        ctx = self.ctx
        if ctx.amqp_websocket is not None and AMQP_SUBPROTOCOL in scope.get("subprotocols", []):
            await ctx.amqp_websocket(scope, receive, send)
            return
        await mqtt_websocket.serve(
            scope,
            receive,
            send,
            ctx.mqtt_router,
            max_idle=ctx.max_idle_seconds,
            connect_timeout=ctx.connect_timeout,
            trace=ctx.trace,
            faults=ctx.faults,
        )
