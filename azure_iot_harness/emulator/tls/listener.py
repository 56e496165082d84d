"""`TlsListener`: accept, TLS handshake, one handler task per connection, and who is connected.

Every server socket of the emulator (MQTT 8883, HTTPS/WebSocket 443, the edge's listeners, later
AMQP 5671) is one of these. Connections are registered by the peer's address when the socket is
accepted and removed when it closes, so a service finds the connection behind a request from
its client address in O(1), and `stop` reaches every open connection without searching.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from .connection import TlsConnection
from .context import ServerContext
from .hints import ServerCertificate
from .outcome import HandshakeOutcome
from .transport import ServerProtocol

log = logging.getLogger("azure_iot_harness.tls")

Handler = Callable[[TlsConnection], Awaitable[None]]
HandshakeObserver = Callable[[TlsConnection, HandshakeOutcome], None]


@dataclass(frozen=True)
class Served:
    """What one accepted connection gets instead of the listener's own TLS settings (a fault)."""

    context: ServerContext
    certificate: str | None = None  # the fault certificate's name, for the handshake outcome
    fault: Any = None  # the FaultBook's fault that chose this, for the trace (`TlsConnection.fault`)


# Picks, for each accepted connection, what it is served; None: the listener's own settings.
Chooser = Callable[[], "Served | None"]

# Pending connections the kernel queues (capped by net.core.somaxconn). asyncio's default of
# 100 drops SYNs when a fleet reconnects at once, and each dropped SYN costs the device a
# 1 s retransmit: 500 concurrent connects had a p99 of 1.3 s with it.
BACKLOG = 1024
# Seconds a closing connection may take to flush what it still has to send.
FLUSH_SECONDS = 5.0


class TlsListener:
    """Listens on `host:port`; `context` None serves plain TCP (the edge's loopback workload API).

    `handler(conn)` runs in its own task once the handshake is done; the connection is closed
    when it returns. `observers` are called with each TLS connection's `HandshakeOutcome`;
    `choose`, when set, may serve an accepted connection other TLS settings (`Served`).
    """

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        context: ServerContext | None,
        handler: Handler,
        handshake_timeout: float = 10.0,
        flush_timeout: float = FLUSH_SECONDS,
        backlog: int = BACKLOG,
        server_certificate: ServerCertificate | None = None,
    ) -> None:
        self.name = name
        self.server_certificate = server_certificate
        self.host = host
        self.requested_port = port
        self.context = context
        self._handler = handler
        self._handshake_timeout = handshake_timeout
        self._flush_timeout = flush_timeout
        self._backlog = backlog
        self._server: asyncio.base_events.Server | None = None
        self._by_peer: dict[tuple[str, int], TlsConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sock: socket.socket | None = None  # bound by bind() before start()
        self._held: list[asyncio.base_events.Server] = []
        self._extra: list[asyncio.base_events.Server] = []  # a restarted listener's other address families  # the port kept while stopped (stop(hold_port=True))
        self.observers: list[HandshakeObserver] = []
        self.choose: Chooser | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def bind(self) -> int:
        """Bind and listen now, without a running loop (the port is known at once; clients
        wait in the backlog until start()); returns the port."""
        infos = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self._backlog)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._held:  # listen again on the very sockets held while stopped: no other socket took the port
            socks = _take_sockets(self._held)
            self._held = []
            servers = [await loop.create_server(self._protocol, sock=sock, backlog=self._backlog) for sock in socks]
            self._server = servers[0]
            self._extra = servers[1:]
            return
        if self._sock is not None:
            sock, self._sock = self._sock, None
            self._server = await loop.create_server(self._protocol, sock=sock, backlog=self._backlog)
            return
        self._server = await loop.create_server(
            self._protocol, self.host, self.requested_port, reuse_address=True, backlog=self._backlog
        )

    def sibling(self, *, name: str, port: int = 0, context: ServerContext | None = None) -> TlsListener:
        """Another listener on this one's host with the same handler and timeouts (a dedicated
        port for a fault), not started."""
        other = TlsListener(
            name=name,
            host=self.host,
            port=port,
            context=context or self.context,
            handler=self._handler,
            handshake_timeout=self._handshake_timeout,
            flush_timeout=self._flush_timeout,
            backlog=self._backlog,
            server_certificate=self.server_certificate,
        )
        other.observers = self.observers  # the same list: observers added later see it too
        return other

    def _protocol(self) -> ServerProtocol:
        served = self.choose() if self.choose is not None and self.context is not None else None
        kw = {} if served is None else {"certificate": served.certificate, "fault": served.fault}
        context = self.context if served is None else served.context
        return ServerProtocol(self, context, handshake_timeout=self._handshake_timeout, flush_timeout=self._flush_timeout, **kw)

    # ---- who is connected ---------------------------------------------------------------

    def connection(self, peer: tuple[str, int] | list[object] | None) -> TlsConnection | None:
        """The open connection from `peer` (an ASGI scope's `client`, a socket's peername)."""
        if not peer or len(peer) < 2:
            return None
        return self._by_peer.get((str(peer[0]), int(peer[1])))  # type: ignore[call-overload]  # ASGI gives a list or tuple

    @property
    def connections(self) -> list[TlsConnection]:
        """Every open connection, handshakes in progress included."""
        return list(self._by_peer.values())

    # ---- reported by the connections' protocols ------------------------------------------

    def accepted(self, conn: TlsConnection) -> None:
        self._by_peer[conn.peer] = conn

    def opened(self, conn: TlsConnection) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lost(self, conn: TlsConnection) -> None:
        if self._by_peer.get(conn.peer) is conn:
            del self._by_peer[conn.peer]

    def handshake(self, conn: TlsConnection, outcome: HandshakeOutcome) -> None:
        for observer in self.observers:
            try:
                observer(conn, outcome)
            except Exception:
                log.exception("%s %s: error in a handshake observer", self.name, conn.peer_name)

    async def _serve(self, conn: TlsConnection) -> None:
        try:
            await self._handler(conn)
        except Exception:
            log.exception("%s %s: error in the connection handler", self.name, conn.peer_name)
        finally:
            conn.close()

    # ---- stopping -----------------------------------------------------------------------

    def stop_accepting(self) -> None:
        for server in [self._server, *self._extra] if self._server is not None else []:
            server.close()
        if self._sock is not None:  # bound, never started
            self._sock.close()
            self._sock = None

    async def stop(self, grace: float = 0.2, *, hold_port: bool = False) -> None:
        """Stop accepting; give handlers `grace` seconds to finish (whoever asked them to), then
        close every connection at once: idle peers are not waited for.

        `hold_port`: keep the listening sockets and reset every connection made to them until
        start() serves them again, as a hub in an outage: no other program (a parallel test) can
        take the port meanwhile, and clients are turned away at once instead of waiting."""
        if self._server is None:
            self.stop_accepting()  # a socket bound and never started
            await self._release_held()
            return
        servers = [self._server, *self._extra]
        held = _take_sockets(servers) if hold_port else []
        for server in servers:
            server.close()
        if held:
            loop = asyncio.get_running_loop()
            self._held = [await loop.create_server(_TurnAway, sock=sock, backlog=self._backlog) for sock in held]
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for conn in list(self._by_peer.values()):
            conn.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._flush_timeout)
        for server in servers:
            await server.wait_closed()
        self._server = None
        self._extra = []

    async def _release_held(self) -> None:
        held, self._held = self._held, []
        for server in held:
            server.close()
        for server in held:
            await server.wait_closed()


def _take_sockets(servers: list[asyncio.base_events.Server]) -> list[socket.socket]:
    """Duplicates of the servers' listening sockets, so the kernel keeps them listening after
    the servers close theirs (one socket moved from one server to the next)."""
    return [socket.fromfd(s.fileno(), s.family, s.type) for server in servers for s in server.sockets]


class _TurnAway(asyncio.Protocol):
    """A held port's answer to every connection: a reset, as a host that is down for the
    service gives (an RST, not a FIN the client could read as a clean close)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cast(asyncio.Transport, transport).abort()  # uvloop's transports are not asyncio.Transport subclasses


class OnListener:
    """Where a server built on one `TlsListener` (its `listener`) listens: for the MQTT and
    HTTPS servers, which the emulator moves between ports (`suspend_hub`, `reset`)."""

    listener: TlsListener

    @property
    def requested_port(self) -> int:
        return self.listener.requested_port

    @requested_port.setter
    def requested_port(self, port: int) -> None:  # where start() listens next (0: any free port)
        self.listener.requested_port = port

    @property
    def running(self) -> bool:
        return self.listener.running

    @property
    def port(self) -> int:
        return self.listener.port
