"""The MQTT/TLS listener: one MqttConnection for each connection the TLS adapter accepts."""

from __future__ import annotations

import logging

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter

from ..tls import ServerContext, TlsConnection, TlsListener
from .connection import MqttConnection, Router

log = logging.getLogger("azure_iot_harness.mqtt")


class MqttListener:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: ServerContext,
        router: Router,
        max_idle: float,
        connect_timeout: float,
    ) -> None:
        self.router = router
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.connections: set[MqttConnection] = set()
        self.listener = TlsListener(
            name="MQTT", host=host, port=port, context=tls, handler=self._serve, handshake_timeout=connect_timeout
        )

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

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        if not self.listener.running:
            return
        self.listener.stop_accepting()
        for conn in list(self.connections):
            conn.close("emulator stopping")
        # A moment to flush; then no waiting for peers that never answer TLS close_notify.
        await self.listener.stop(grace=0.2)

    async def _serve(self, tls: TlsConnection) -> None:
        conn = MqttConnection(
            StreamReaderAdapter(tls.reader),
            StreamWriterAdapter(tls.writer),
            close_transport=tls.close,  # flushes what is buffered (a CONNACK refusal) first
            peer=tls.peer_name,
            peer_chain=tls.peer_chain,
            router=self.router,
            max_idle=self.max_idle,
            connect_timeout=self.connect_timeout,
        )
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
