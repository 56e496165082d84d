"""`HttpsServer`: an ASGI app served by hypercorn over the TLS adapter's connections.

The TLS adapter (`emulator.tls`) accepts each connection and runs the handshake; hypercorn
speaks HTTP/1.1 and WebSocket on it. The app reads a request's client certificates with
`tls.client_chain(scope)`, and `stop` closes idle keep-alive connections at once.
"""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.config

from .tls import HttpConnections, OnListener, ServerContext, TlsConnection, TlsListener
from .tls.asgi import ASGIApp

log = logging.getLogger("azure_iot_harness.https")

# What the TLS context of an HTTPS port selects from a client's ALPN offer.
ALPN = ("http/1.1",)


def _config() -> hypercorn.config.Config:
    config = hypercorn.config.Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("azure_iot_harness.https.server")
    config.graceful_timeout = 1.0  # for requests (and WebSockets) still running at stop
    return config


class HttpsServer(OnListener):
    def __init__(self, app: ASGIApp, *, host: str, port: int, tls: ServerContext | None) -> None:
        """tls None serves plain HTTP (the edge's workload API on loopback)."""
        self.app = app
        self.config = _config()
        self.http = HttpConnections(app, self.config)
        self.listener = TlsListener(
            name="HTTPS" if tls is not None else "HTTP",
            host=host,
            port=port,
            context=tls,
            handler=self.http.serve,
            handshake_timeout=self.config.ssl_handshake_timeout,
        )

    def connection(self, scope: dict[str, Any]) -> TlsConnection | None:
        """The connection a request or WebSocket arrived on (by the scope's client address)."""
        return self.listener.connection(scope.get("client"))

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        if not self.listener.running:
            return  # never started (or already stopped)
        self.listener.stop_accepting()
        await self.http.stop()
        await self.listener.stop(grace=self.config.graceful_timeout)
