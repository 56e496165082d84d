"""The MQTT/TLS listener: accept, TCP_NODELAY, TLS handshake, then one MqttConnection each."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import socket
import ssl

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter

from ..handshake_hint import ServerCertificate, explain
from .connection import MqttConnection, Router

log = logging.getLogger("azure_iot_harness.mqtt")

# Seconds a closing connection may take to flush what it still has to send.
_FLUSH_SECONDS = 5.0
# Pending connections the kernel queues (capped by net.core.somaxconn). asyncio's default of
# 100 drops SYNs when a fleet reconnects at once, and each dropped SYN costs the device a
# 1 s retransmit: 500 concurrent connects had a p99 of 1.3 s with it.
_BACKLOG = 1024
# asyncio gives every TLS connection a 256 KiB read buffer, allocated and zero-filled when the
# handshake starts: measured with 1,000 idle devices, 288 KB of resident memory per device
# (40 KB with 8 KiB) and about 15% of the CPU of a connect. asyncio has no per-connection
# knob, so the class default is lowered while a listener runs (TLS records larger than the
# buffer are read in several calls; nothing else changes).
_TLS_READ_BUFFER = 8 * 1024
_small_buffers_users = 0
_asyncio_tls_buffer = getattr(asyncio.sslproto.SSLProtocol, "max_size", None)


def _use_small_tls_buffers(on: bool) -> None:
    global _small_buffers_users
    if _asyncio_tls_buffer is None or _asyncio_tls_buffer <= _TLS_READ_BUFFER:
        return
    _small_buffers_users += 1 if on else -1
    asyncio.sslproto.SSLProtocol.max_size = _TLS_READ_BUFFER if _small_buffers_users > 0 else _asyncio_tls_buffer


class MqttListener:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        router: Router,
        max_idle: float,
        connect_timeout: float,
        server_certificate: ServerCertificate | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self.router = router
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.server_certificate = server_certificate  # for the hint when a client refuses it
        self.connections: set[MqttConnection] = set()
        self._server: asyncio.base_events.Server | None = None
        # Each connection's handler and, once TLS is up, its transport: stop() aborts those and
        # cancels the handlers still in their handshake.
        self._handlers: dict[asyncio.Task, asyncio.WriteTransport | None] = {}

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.requested_port, reuse_address=True, backlog=_BACKLOG
        )
        _use_small_tls_buffers(True)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.connections):
            conn.close("emulator stopping")
        if self._handlers:
            # A moment to flush; then no waiting for peers that never answer TLS close_notify
            # or never finish their handshake.
            await asyncio.wait(list(self._handlers), timeout=0.2)
            for task, transport in list(self._handlers.items()):
                if transport is None:
                    task.cancel()  # ends its handshake (see _handle_tls)
                else:
                    transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=_FLUSH_SECONDS)
        await self._server.wait_closed()
        self._server = None
        _use_small_tls_buffers(False)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = None
        try:
            await self._handle_tls(reader, writer, task)
        finally:
            self._handlers.pop(task, None)

    async def _handle_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task) -> None:
        peer = _peer(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await writer.start_tls(self.ssl_context, ssl_handshake_timeout=self.connect_timeout)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            level, why = explain(exc, self.server_certificate)
            log.log(level, "%s: TLS handshake failed: %s", peer, why)
            writer.transport.abort()
            return
        except asyncio.CancelledError:
            # stop() during the handshake. Ending normally matters: asyncio logs a traceback for
            # a connection callback that ends cancelled, and aborting the TCP transport under
            # start_tls fails inside asyncio instead.
            log.info("%s: TLS handshake ended: the emulator is stopping", peer)
            writer.transport.abort()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        transport = writer.transport
        self._handlers[task] = transport

        def close_transport() -> None:
            transport.close()  # flushes what is buffered (a CONNACK refusal) first
            asyncio.get_running_loop().call_later(_FLUSH_SECONDS, transport.abort)

        conn = MqttConnection(
            StreamReaderAdapter(reader),
            StreamWriterAdapter(writer),
            close_transport=close_transport,
            peer=peer,
            peer_cert=cert,
            router=self.router,
            max_idle=self.max_idle,
            connect_timeout=self.connect_timeout,
        )
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)


def _peer(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        host, port = info[0], info[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "unknown peer"
