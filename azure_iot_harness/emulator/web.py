"""One ASGI app for every HTTPS surface, served by hypercorn on the emulator's event loop.

Routes, in order: the emulator's own `/_emulator/` API, IoT Hub's service REST API, DPS's service
API and DPS's device API (`/{idScope}/registrations/…`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..errors import ServiceError
from .hub import rest as hub_rest
from .mqtt import websocket as mqtt_websocket
from .hub import twin_rest
from .protocol.errors import error_body, not_supported
from . import emulator_api
from .dps import rest as dps_rest
from .dps import service_rest as dps_service_rest

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger("azure_iot_harness.https")


def build_app(emulator: "Emulator") -> Starlette:
    routes: list[BaseRoute] = [
        Route("/_emulator/health", lambda request: JSONResponse({"status": "ok"})),
        Route("/_emulator/ca.pem", lambda request: Response(emulator.pki.root_pem, media_type="application/x-pem-file")),
        *emulator_api.routes(emulator),
        *hub_rest.routes(emulator),
        *twin_rest.routes(emulator),
        *dps_service_rest.routes(emulator),
        *dps_rest.routes(emulator),
        WebSocketRoute(mqtt_websocket.PATH, _MqttOverWebSocket(emulator)),
        Route("/{path:path}", _unrouted, methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={ServiceError: _service_error})
    app.state.emulator = emulator
    return app


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.error_code, exc.message)
    return JSONResponse(error_body(exc), status_code=exc.status, headers={"iothub-errorcode": exc.error_code})


# Path prefixes of Azure REST APIs (IoT Hub service, DPS) the emulator does not answer yet.
_AZURE_PREFIXES = (
    "twins/", "devices/", "messages/", "jobs", "configurations", "digitaltwins", "statistics",
    "enrollments", "enrollmentGroups", "registrations", "$iothub/websocket",
)  # fmt: skip


async def _unrouted(request: Request) -> Response:
    path = request.path_params["path"]
    if path.startswith(_AZURE_PREFIXES) or "/registrations/" in path:
        raise not_supported(f"{request.method} /{path}")
    raise ServiceError(404, "NotFound", f"no such resource: {request.method} /{path}")


class _MqttOverWebSocket:
    """The ASGI app behind `/$iothub/websocket`: MQTT connections through the same front door."""

    def __init__(self, emulator: "Emulator") -> None:
        self.emulator = emulator

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        cfg = self.emulator.config
        await mqtt_websocket.serve(
            scope, receive, send, self.emulator.front_door, max_idle=cfg.max_idle_seconds, connect_timeout=cfg.connect_timeout
        )
