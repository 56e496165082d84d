"""A small MQTT 3.1.1 client on the same codec, for the edge's upstream connections to the hub.

It does what edgeHub needs and no more: CONNECT over TLS (clean session or not), SUBSCRIBE,
PUBLISH at QoS 0/1 with a future that completes on PUBACK, PUBACK for what the hub delivers at
QoS 1 (at once, or when the owner says so), keep-alive pings. Incoming PUBLISHes go to one
callback. A lost connection fails every pending future; the owner decides when to connect again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from amqtt.mqtt.connect import ConnectPacket, ConnectPayload, ConnectVariableHeader
from amqtt.mqtt.pingreq import PingReqPacket
from amqtt.mqtt.subscribe import SubscribePacket

from ...errors import ConnackCode, ConnectRefused, HarnessError
from . import codec

log = logging.getLogger("azure_iot_harness.mqtt.client")
# Largest packet taken from the server (a C2D message or a twin document with room to spare).
MAX_PACKET = 512 * 1024

MessageHandler = Callable[[codec.Publish], None]


class ConnectionLost(HarnessError):
    """The connection closed before the operation completed."""


class MqttClient:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        server_hostname: str,
        client_id: str,
        username: str,
        password: str | None,
        keep_alive: int = 60,
        on_message: MessageHandler | None = None,
        clean_session: bool = True,
        auto_ack: bool = True,
    ) -> None:
        """`clean_session` False keeps the server's session (subscriptions, unacknowledged QoS 1
        deliveries) across connections; `auto_ack` False leaves the PUBACK of a QoS 1 delivery
        to the owner (`ack()`), who acknowledges once it passed the message on."""
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.client_id = client_id
        self.username = username
        self.password = password
        self.keep_alive = keep_alive
        self.on_message = on_message or (lambda pub: None)
        self.clean_session = clean_session
        self.auto_ack = auto_ack
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._ping_task: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self.closed = asyncio.Event()
        self.closed.set()

    @property
    def connected(self) -> bool:
        return not self.closed.is_set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Open TLS, send CONNECT, wait for CONNACK; ConnectRefused carries a non-zero code."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the owner's cancellation.
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context, server_hostname=self.server_hostname
            )
        vh = ConnectVariableHeader(keep_alive=self.keep_alive)
        vh.username_flag = True
        vh.password_flag = self.password is not None
        vh.clean_session_flag = self.clean_session
        payload = ConnectPayload(client_id=self.client_id, username=self.username, password=self.password)
        writer.write(ConnectPacket(variable_header=vh, payload=payload).to_bytes())
        framer = codec.Framer(MAX_PACKET)
        try:
            async with asyncio.timeout(timeout):
                frame = await codec.read_frame(reader.read, framer)
        except BaseException:
            writer.close()
            raise
        if frame is None or frame.packet_type != 2 or len(frame.body) != 2:
            writer.close()
            raise ConnectionLost(f"{self.host}:{self.port} closed the connection before CONNACK")
        if frame.body[1] != ConnackCode.ACCEPTED:
            writer.close()
            raise ConnectRefused(frame.body[1], f"CONNACK {frame.body[1]} from {self.host}:{self.port}")
        self._writer = writer
        self.closed.clear()
        self._reader_task = asyncio.create_task(self._read_loop(reader, framer))
        self._ping_task = asyncio.create_task(self._ping_loop())

    async def subscribe(self, topics: list[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        packet_id = self._packet_id()
        fut = self._expect(packet_id)
        self._send(SubscribePacket.build(topics, packet_id).to_bytes())
        async with asyncio.timeout(timeout):
            body = await fut
        return list(body[2:])

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future:
        """Send a PUBLISH; the future completes on PUBACK (at once for QoS 0)."""
        loop = asyncio.get_running_loop()
        if qos == 0:
            self._send(codec.encode_publish(topic, payload, 0, None))
            done = loop.create_future()
            done.set_result(None)
            return done
        packet_id = self._packet_id()
        fut = self._expect(packet_id)
        self._send(codec.encode_publish(topic, payload, 1, packet_id))
        return fut

    def ack(self, packet_id: int) -> None:
        """PUBACK a QoS 1 delivery (auto_ack False); ConnectionLost when the connection is gone
        (the server delivers the message again)."""
        self._send(codec.encode_puback(packet_id))

    async def disconnect(self) -> None:
        if self._writer is not None and self.connected:
            self._writer.write(bytes([0xE0, 0]))
        self._close("disconnected")

    def drop(self, reason: str) -> None:
        """Close without a DISCONNECT, as when the network goes away."""
        self._close(reason)

    # ---- internals ----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._writer is None or not self.connected:
            raise ConnectionLost(f"not connected to {self.host}:{self.port}")
        self._writer.write(data)

    def _packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._pending:
                return self._next_id
        raise HarnessError("no free packet id")

    def _expect(self, packet_id: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._pending[packet_id] = fut
        return fut

    async def _read_loop(self, reader: asyncio.StreamReader, framer: codec.Framer) -> None:
        try:
            while True:
                frame = await codec.read_frame(reader.read, framer)
                if frame is None:
                    break
                kind = frame.packet_type
                if kind in (codec.PUBACK, 9):  # PUBACK, SUBACK
                    fut = self._pending.pop(int.from_bytes(frame.body[:2], "big"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame.body)
                elif kind == codec.PUBLISH:
                    pub = codec.decode_publish(frame.flags, frame.body)
                    self.on_message(pub)
                    if pub.qos == 1 and pub.packet_id is not None and self.auto_ack:
                        # Acknowledged once handed over: the owner took responsibility for it.
                        self._send(codec.encode_puback(pub.packet_id))
        except (OSError, HarnessError, asyncio.IncompleteReadError) as exc:
            log.info("connection to %s:%d lost: %s", self.host, self.port, exc)
        finally:
            self._close("connection lost")

    async def _ping_loop(self) -> None:
        while self.connected:
            await asyncio.sleep(self.keep_alive / 2)
            try:
                self._send(PingReqPacket().to_bytes())
            except ConnectionLost:
                return

    def _close(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._writer is not None:
            self._writer.close()
        for task in (self._ping_task,):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(reason))
        self._pending.clear()
