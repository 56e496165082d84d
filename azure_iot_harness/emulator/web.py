"""One ASGI app for every HTTPS surface, served by hypercorn on the emulator's event loop.

Routes, in order: the emulator's own `/_emulator/` API, IoT Hub's service REST API, DPS's service
API and DPS's device API (`/{idScope}/registrations/…`), MQTT over WebSocket; Azure's paths are
matched the way the services match them (azure_paths). `build_app` gets each surface's context
(`WebContext`), never the whole emulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import hypercorn.asyncio
import hypercorn.config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..errors import ServiceError
from . import azure_paths, emulator_api
from .dps import rest as dps_rest
from .dps import service_rest as dps_service_rest
from .dps.context import DpsContext
from .emulator_api import ApiContext
from .http_answers import ASGIApp, HttpAnswers
from .hub import rest as hub_rest
from .hub import twin_rest
from .hub.context import HubContext
from .mqtt import websocket as mqtt_websocket
from .mqtt.connection import Router
from .protocol.errors import error_body, hub_error, not_supported
from .tls_peers import connection_writers

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
        *hub_rest.routes(ctx.hub),
        *twin_rest.routes(ctx.hub),
        *dps_service_rest.routes(ctx.dps),
        *dps_rest.routes(ctx.dps),
        WebSocketRoute(mqtt_websocket.PATH, _MqttOverWebSocket(ctx)),
        Route("/{path:path}", _unrouted, methods=["GET", "PUT", "POST", "PATCH", "DELETE"]),
    ]
    azure_paths.match_case_insensitively(routes)
    app = Starlette(
        routes=routes,
        exception_handlers={ServiceError: service_error},
        middleware=[Middleware(azure_paths.IgnoreTrailingSlash)],
    )
    return HttpAnswers(app)  # outside Starlette: its 500 answers get a phrase too


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


class _MqttOverWebSocket:
    """The ASGI app behind `/$iothub/websocket`: MQTT connections through the same front door."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        ctx = self.ctx
        await mqtt_websocket.serve(
            scope, receive, send, ctx.mqtt_router, max_idle=ctx.max_idle_seconds, connect_timeout=ctx.connect_timeout
        )


class _HypercornConfig(hypercorn.config.Config):
    """Hands hypercorn our own TLS context instead of file names (None: plain HTTP)."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__()
        self._ssl_context = ssl_context

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    @property
    def ssl_enabled(self) -> bool:
        return self._ssl_context is not None


class HttpsServer:
    def __init__(self, app: ASGIApp, *, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        """ssl_context None serves plain HTTP (the edge's workload API on loopback)."""
        self.app = app
        self.host = host
        self.requested_port = port
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1"])
        self.config = _HypercornConfig(ssl_context)
        self.config.accesslog = None
        self.config.errorlog = logging.getLogger("azure_iot_harness.https.server")
        self.config.graceful_timeout = 1.0
        self._sock: socket.socket | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None
        return self._sock.getsockname()[1]

    async def start(self) -> None:
        # Bind here so port 0 works and the chosen port is known before hypercorn starts.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
        sock.listen(128)
        self._sock = sock
        # hypercorn closes the socket it is given: hand it a duplicate and keep ours.
        self.config.bind = [f"fd://{os.dup(sock.fileno())}"]  # plain HTTP too when TLS is off
        started = asyncio.Event()
        self._task = asyncio.create_task(self._serve(started))
        await started.wait()

    def _open_writers(self) -> list[asyncio.StreamWriter]:
        """The stream writers of hypercorn's connections on this server's port (see tls_peers;
        tests/emulator/test_web.py fails if this stops working)."""
        return list(connection_writers(self.port))

    async def _serve(self, started: asyncio.Event) -> None:
        async def trigger() -> None:
            await self._stop.wait()

        started.set()
        await hypercorn.asyncio.serve(self.app, self.config, shutdown_trigger=trigger)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self._sock is None:
            return  # never started (or already stopped)
        self._stop.set()
        await asyncio.sleep(0.05)  # let in-flight responses finish
        # On Python 3.11 hypercorn's shutdown waits for idle keep-alive connections to time out
        # (Server.wait_closed waits for every connection; close_clients() is 3.12+). Close them.
        for writer in self._open_writers():
            writer.transport.abort()  # close() would wait for the idle peer's TLS close_notify
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (asyncio.TimeoutError, Exception) as exc:  # a stuck stream must not block shutdown
                log.debug("https server stop: %r", exc)
                self._task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
