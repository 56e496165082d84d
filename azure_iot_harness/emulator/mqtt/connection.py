"""One MQTT connection: framing, CONNECT, keep-alive and packet dispatch, for any transport.

What a connection means (IoT Hub device, DPS registration) is decided by a `Router` from the
CONNECT packet; the returned `Session` handles the packets that follow. Every rule break
closes the connection, which is how IoT Hub answers over MQTT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from amqtt.adapters import ReaderAdapter, WriterAdapter

from ...errors import ConnackCode, ConnectRefused, ProtocolViolation
from . import codec
from .codec import Connect, Publish

log = logging.getLogger("azure_iot_harness.mqtt")

# Largest packet read at all: a 256 KB message plus a generous topic and property bag.
MAX_PACKET = 256 * 1024 + 64 * 1024
# QoS 1 messages waiting for their commit before the connection stops reading.
MAX_UNACKED = 1000


class Session(Protocol):
    async def on_publish(self, conn: MqttConnection, pub: Publish) -> None: ...
    async def on_subscribe(self, conn: MqttConnection, packet_id: int, topics: list[tuple[str, int]]) -> None: ...
    async def on_unsubscribe(self, conn: MqttConnection, packet_id: int, topics: list[str]) -> None: ...
    def on_puback(self, conn: MqttConnection, packet_id: int) -> None: ...
    def on_closed(self, conn: MqttConnection, graceful: bool, reason: str) -> None: ...

    # Optional: `on_connected(conn)` runs right after the CONNACK went out (resumed sessions
    # send what waited for them).


class Router(Protocol):
    async def connect(self, conn: MqttConnection, connect: Connect) -> tuple[Session, bool]:
        """Authenticate; return the session and the CONNACK session-present flag, or raise
        ConnectRefused."""
        ...


class MqttConnection:
    def __init__(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        *,
        close_transport: Callable[[], None],
        peer: str,
        peer_chain: Sequence[bytes] = (),
        router: Router,
        max_idle: float,
        connect_timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._close_transport = close_transport
        self.peer = peer
        # The certificates the client sent in the TLS handshake, leaf first (DER), unverified.
        self.peer_chain: tuple[bytes, ...] = tuple(peer_chain)
        self.router = router
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.client_id = ""
        self.session: Session | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.graceful = False
        self._loop = asyncio.get_running_loop()
        self._last_rx = self._loop.time()
        self._idle_limit = max_idle
        self._watchdog: asyncio.TimerHandle | None = None
        self._pending_acks = 0  # QoS 1 messages whose commit has not completed
        self._ack_room: asyncio.Future | None = None  # set while reading waits for commits
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self.context: dict[str, Any] = {}  # for sessions

    @property
    def peer_cert(self) -> bytes | None:
        """The client's own certificate (DER), or None."""
        return self.peer_chain[0] if self.peer_chain else None

    # ---- sending ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue data; everything sent in one event-loop pass goes out in one write.

        A group commit completes many QoS 1 messages at once: one TLS record and one syscall
        for all their PUBACKs instead of one each (the largest per-message cost after SQLite).
        """
        if self.closed.is_set():
            return
        self._outbox.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._outbox:
            data = self._outbox[0] if len(self._outbox) == 1 else b"".join(self._outbox)
            self._outbox.clear()
            self.writer.write(data)

    def ack_when_done(self, fut: asyncio.Future, packet_id: int) -> None:
        """Send PUBACK once fut (the store commit) succeeds; close the connection if it fails."""

        def done(f: asyncio.Future) -> None:
            self._pending_acks -= 1
            if self._ack_room is not None and not self._ack_room.done():
                self._ack_room.set_result(None)
            if f.cancelled() or f.exception() is not None:
                self.close(f"could not store message {packet_id}: {f.exception() if not f.cancelled() else 'cancelled'}")
            else:
                self.send(codec.encode_puback(packet_id))

        self._pending_acks += 1
        fut.add_done_callback(done)

    def close(self, reason: str, *, graceful: bool = False) -> None:
        """Close the connection now (idempotent). Not graceful = the will message applies."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.graceful = graceful
        self._flush()  # what was queued (a CONNACK refusal) goes out before the close
        self.closed.set()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._close_transport()

    # ---- the read loop ------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            await self._serve()
        except ProtocolViolation as exc:
            self._violation(str(exc))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            self.close("connection lost")
        except Exception:
            log.exception("%s: internal error, closing the connection", self._who())
            self.close("internal error")
        finally:
            self.close(self.close_reason or "connection lost")
            if self.session is not None:
                try:
                    self.session.on_closed(self, self.graceful, self.close_reason)
                except Exception:
                    log.exception("%s: error while closing the session", self._who())

    async def _serve(self) -> None:
        try:
            frame = await asyncio.wait_for(codec.read_frame(self.reader, MAX_PACKET), self.connect_timeout)
        except TimeoutError:
            log.info("%s: no CONNECT within %.0f s, closing", self.peer, self.connect_timeout)
            self.close("no CONNECT")
            return
        if frame is None:
            self.close("closed before CONNECT")
            return
        if frame.packet_type != codec.CONNECT:
            raise ProtocolViolation(f"first packet is {codec.PACKET_NAMES[frame.packet_type]}, not CONNECT")
        header = codec.decode_connect_header(frame.body)
        if header.proto_name != "MQTT" or header.proto_level != 4:
            log.warning(
                "%s: CONNECT refused with CONNACK 1 (unacceptable protocol version): protocol %r level %#x; "
                "IoT Hub speaks MQTT 3.1.1 only (level 4; a Mosquitto bridge needs 'try_private false')",
                self.peer,
                header.proto_name,
                header.proto_level,
            )
            self._refuse(ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION)
            return
        connect = await codec.decode_connect(frame.body)
        self.client_id = connect.client_id
        try:
            self.session, session_present = await self.router.connect(self, connect)
        except ConnectRefused as exc:
            log.warning(
                "%s: CONNECT from client id %r refused with CONNACK %d: %s",
                self.peer,
                connect.client_id,
                exc.return_code,
                exc.reason,
            )
            self._refuse(exc.return_code)
            return
        if self.closed.is_set():  # closed while authenticating (shutdown)
            return
        self.send(codec.encode_connack(ConnackCode.ACCEPTED, session_present))
        on_connected = getattr(self.session, "on_connected", None)
        if on_connected is not None:
            on_connected(self)
        keep_alive = connect.keep_alive
        self._idle_limit = min(1.5 * keep_alive, self.max_idle) if keep_alive else self.max_idle
        self._last_rx = self._loop.time()
        self._arm_watchdog()
        await self._dispatch_loop()

    async def _dispatch_loop(self) -> None:
        session = self.session
        assert session is not None
        while not self.closed.is_set():
            frame = await codec.read_frame(self.reader, MAX_PACKET)
            if frame is None:
                self.close("connection lost")
                return
            self._last_rx = self._loop.time()
            kind = frame.packet_type
            if kind == codec.PUBLISH:
                await session.on_publish(self, codec.decode_publish(frame.flags, frame.body))
                if self._pending_acks >= MAX_UNACKED:
                    self._ack_room = self._loop.create_future()
                    await self._ack_room
            elif kind == codec.PINGREQ:
                self.send(codec.encode_pingresp())
            elif kind == codec.PUBACK:
                session.on_puback(self, codec.decode_packet_id(frame.body))
            elif kind == codec.SUBSCRIBE:
                packet_id, topics = await codec.decode_subscribe(frame.body)
                await session.on_subscribe(self, packet_id, topics)
            elif kind == codec.UNSUBSCRIBE:
                packet_id, filters = await codec.decode_unsubscribe(frame.body)
                await session.on_unsubscribe(self, packet_id, filters)
            elif kind == codec.DISCONNECT:
                # Let stored-but-unacknowledged messages finish: the client is going away.
                self.close("client sent DISCONNECT", graceful=True)
                return
            elif kind == codec.CONNECT:
                raise ProtocolViolation("second CONNECT on one connection")
            else:
                raise ProtocolViolation(f"unexpected {codec.PACKET_NAMES[kind]} from a client")
            await self.writer.drain()

    def _refuse(self, return_code: int) -> None:
        self.send(codec.encode_connack(return_code))
        self.close(f"CONNACK {return_code}", graceful=True)

    def _violation(self, reason: str) -> None:
        log.warning("%s: closing the connection: %s", self._who(), reason)
        self.close(reason)

    def _who(self) -> str:
        return f"{self.peer} ({self.client_id})" if self.client_id else self.peer

    # ---- keep-alive ---------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        self._watchdog = self._loop.call_at(self._last_rx + self._idle_limit, self._check_idle)

    def _check_idle(self) -> None:
        if self.closed.is_set():
            return
        if self._loop.time() - self._last_rx >= self._idle_limit:
            log.info(
                "%s: nothing received for %.1f s (1.5 x keep-alive), closing the connection",
                self._who(),
                self._idle_limit,
            )
            self.close("keep-alive expired")
        else:
            self._arm_watchdog()
