"""hypercorn serving the adapter's connections, and the client's certificates in the ASGI scope.

`hypercorn.asyncio.serve` accepts connections itself, through asyncio's TLS: the app could not
see a request's client certificate, and idle keep-alive connections could not be reached at
stop. hypercorn's per-connection server, `hypercorn.asyncio.tcp_server.TCPServer`, takes a
reader/writer pair, so `HttpConnections.serve` hands it the streams of a connection the adapter
accepted: HTTP/1.1 and WebSocket on connections the emulator owns. `TCPServer` and
`WorkerContext` are private to hypercorn; this is the only module that touches them, `check()`
verifies at start-up that they are what this was written for (hypercorn 0.18.0, pinned in
pyproject.toml), and tests/emulator/tls/test_https.py fails if an upgrade changes how they
behave. ASGI lifespan events are not sent: the emulator's apps have no lifespan handlers.

Every request's scope carries the ASGI TLS extension (`scope["extensions"]["tls"]`, as the ASGI
specification defines it) filled from the connection: `client_cert_chain` holds what the client
sent, leaf first, as PEM. It is not verified (`client_cert_error` says so): the service checks
it. `client_chain(scope)` and `client_certificate(scope)` read it back as DER.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import hypercorn.config
from cryptography import x509

from ...errors import HarnessError
from ..protocol.http_status import with_reason_phrase
from .connection import TlsConnection

WRITTEN_FOR = "0.18.0"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_NOT_VERIFIED = "not verified by the TLS layer: the service checks it"


def check() -> None:
    """Raise HarnessError unless hypercorn's per-connection server is the one this was written for."""
    try:
        from hypercorn.asyncio.tcp_server import TCPServer
        from hypercorn.asyncio.worker_context import WorkerContext

        server = list(inspect.signature(TCPServer.__init__).parameters)
        context = list(inspect.signature(WorkerContext.__init__).parameters)
        ok = server == ["self", "app", "loop", "config", "context", "state", "reader", "writer"]
        ok = ok and context == ["self", "max_requests"] and inspect.iscoroutinefunction(TCPServer.run)
    except (ImportError, AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        try:
            installed = importlib.metadata.version("hypercorn")
        except importlib.metadata.PackageNotFoundError:
            installed = "not installed"
        raise HarnessError(
            f"hypercorn {installed}: its per-connection server (hypercorn.asyncio.tcp_server.TCPServer) is not "
            f"the one azure_iot_harness.emulator.tls was written for (hypercorn {WRITTEN_FOR}); "
            f"install hypercorn=={WRITTEN_FOR}"
        )


class HttpConnections:
    """Serves `app` over connections handed to `serve`, with hypercorn's HTTP/1.1 and WebSocket."""

    def __init__(self, app: ASGIApp, config: hypercorn.config.Config) -> None:
        check()
        from hypercorn.asyncio.worker_context import WorkerContext

        self.app = app
        self.config = config
        self._context = WorkerContext(None)
        self._state: dict[str, Any] = {}

    async def serve(self, conn: TlsConnection) -> None:
        """Serve one connection until either side closes it (a `TlsListener` handler)."""
        from hypercorn.asyncio.tcp_server import TCPServer

        await TCPServer(
            _WithTls(self.app, conn),
            asyncio.get_running_loop(),
            self.config,
            self._context,
            self._state,
            conn.reader,
            _ReasonPhrases(conn.writer),  # type: ignore[arg-type]  # a StreamWriter in all but name
        )

    async def stop(self) -> None:
        """Tell every connection the server is stopping: idle keep-alive connections close now,
        busy ones after their response."""
        await self._context.terminated.set()


class _ReasonPhrases:
    """A connection's writer that puts the standard reason phrase on each response's status line.

    h11 writes `HTTP/1.1 404 \r\n` (legal: the phrase is optional) and ASGI cannot pass one, but
    the service SDKs quote the phrase in their errors (`'Not Found'`) and users match on it.
    h11 writes each response head whole in one write, so only such writes are touched.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        self._writer.write(with_reason_phrase(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class _WithTls:
    """hypercorn's app wrapper for one connection: the ASGI app, with the TLS extension added."""

    def __init__(self, app: ASGIApp, conn: TlsConnection) -> None:
        self._app = app
        self._conn = conn
        self._tls: dict[str, Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any) -> None:
        conn = self._conn
        if conn.tls_version is not None:
            if self._tls is None:
                self._tls = _tls_extension(conn)
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions["tls"] = self._tls
        await self._app(scope, receive, send)


def _tls_extension(conn: TlsConnection) -> dict[str, Any]:
    chain = [ssl.DER_cert_to_PEM_cert(der) for der in conn.peer_chain]
    leaf = x509.load_der_x509_certificate(conn.peer_chain[0]) if conn.peer_chain else None
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": leaf.subject.rfc4514_string() if leaf is not None else None,
        "client_cert_error": _NOT_VERIFIED if leaf is not None else None,
        "tls_version": _TLS_VERSIONS.get(conn.tls_version or ""),
        "cipher_suite": None,
    }


def client_chain(scope: Scope) -> tuple[bytes, ...]:
    """Every certificate the TLS client of this request sent, leaf first (DER), unverified."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    return tuple(ssl.PEM_cert_to_DER_cert(pem) for pem in tls.get("client_cert_chain") or ())


def client_certificate(scope: Scope) -> bytes | None:
    """The TLS client's own certificate (DER) for this request, or None; unverified."""
    chain = client_chain(scope)
    return chain[0] if chain else None
