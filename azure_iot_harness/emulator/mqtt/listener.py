"""The MQTT/TLS listener: one MqttConnection for each connection the TLS adapter accepts, with
its trace record (opened here, with the handshake's outcome) and the emulator's faults."""

from __future__ import annotations

import logging
import ssl

from amqtt.adapters import WriterAdapter

from ..faults import FaultBook, record_fault
from ..tls import OnListener, ServerCertificate, ServerContext, TlsConnection, TlsListener
from ..tls.outcome import COMPLETED, HandshakeOutcome
from ..trace import ConnTrace, Trace
from .connection import MqttConnection, Router

log = logging.getLogger("azure_iot_harness.mqtt")


class _Writer(WriterAdapter):
    """amqtt's writer interface on a connection: writes go straight to its transport (the TLS
    adapter), `drain` is the stream's own."""

    def __init__(self, conn: TlsConnection) -> None:
        self._conn = conn
        self.write = conn.writer.transport.write  # type: ignore[method-assign]  # the hot path
        self.drain = conn.writer.drain  # type: ignore[method-assign]  # the hot path: the stream's own drain
        self.buffered = conn.writer.transport.get_write_buffer_size  # type: ignore[method-assign]  # the hot path

    def write(self, data: bytes) -> None:
        self._conn.writer.write(data)

    async def drain(self) -> None:
        await self._conn.writer.drain()

    def buffered(self) -> int:
        """Bytes written that the socket has not taken yet."""
        return self._conn.writer.transport.get_write_buffer_size()

    def get_peer_info(self) -> tuple[str, int] | None:
        return self._conn.peer

    def get_ssl_info(self) -> ssl.SSLObject | None:
        return None  # the certificates are on the MqttConnection (peer_chain)

    async def close(self) -> None:
        self._conn.close()


class MqttListener(OnListener):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: ServerContext,
        router: Router,
        max_idle: float,
        connect_timeout: float,
        server_certificate: ServerCertificate | None = None,
        trace: Trace | None = None,
        faults: FaultBook | None = None,
        name: str = "hub",
    ) -> None:
        """`name`: the listener's name in the trace ("hub", "edge")."""
        self.router = router
        self.trace = trace
        self.faults = faults
        self.name = name
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.connections: set[MqttConnection] = set()
        self.listener = TlsListener(
            name="MQTT",
            host=host,
            port=port,
            context=tls,
            handler=self._serve,
            handshake_timeout=connect_timeout,
            server_certificate=server_certificate,
        )
        if trace is not None:
            self.listener.observers.append(self._handshake_ended)

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self, *, hold_port: bool = False) -> None:
        """`hold_port`: an outage (`Emulator.suspend_hub`): the port stays this server's and
        turns connections away until start() (TlsListener.stop)."""
        if not self.listener.running:
            await self.listener.stop()  # releases a port held by an earlier stop
            return
        if not hold_port:
            self.listener.stop_accepting()
        for conn in list(self.connections):
            conn.close("emulator stopping")
        # A moment to flush; then no waiting for peers that never answer TLS close_notify.
        await self.listener.stop(grace=0.2, hold_port=hold_port)

    async def _serve(self, tls: TlsConnection) -> None:
        rec = self.trace.open(self.name, tls.peer_name) if self.trace is not None else None
        if rec is not None:
            trace_handshake(rec, tls)
        conn = MqttConnection(
            tls.reader,
            _Writer(tls),
            close_transport=tls.close,  # flushes what is buffered (a CONNACK refusal) first
            peer=tls.peer_name,
            peer_chain=tls.peer_chain,
            router=self.router,
            max_idle=self.max_idle,
            connect_timeout=self.connect_timeout,
            trace=rec,
            faults=self.faults,
            reset_transport=tls.reset,
        )
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    def _handshake_ended(self, tls: TlsConnection, outcome: HandshakeOutcome) -> None:
        """A connection that never reaches MQTT gets a trace record of its own here (one that
        completes the handshake gets it in `_serve`, with its packets)."""
        if outcome.outcome == COMPLETED or self.trace is None:
            return
        rec = self.trace.open(self.name, tls.peer_name)
        if rec is not None:
            trace_handshake(rec, tls)
            rec.event("CLOSE", f"TLS handshake {outcome.outcome}" + (f": {outcome.alert}" if outcome.alert else ""))


def trace_handshake(rec: ConnTrace, tls: TlsConnection) -> None:
    """The fault that chose the connection's server certificate (a FAULT event), then how the
    handshake ended (a TLS event; `reason` says more for connections that are not TLS)."""
    if tls.fault is not None:
        record_fault(rec, tls.fault)
    outcome = tls.handshake
    if outcome is None:
        rec.tls(COMPLETED, version=tls.tls_version, cipher=tls.cipher)
        return
    rec.handshake(outcome)
