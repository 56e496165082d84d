"""One MQTT connection: framing, CONNECT, keep-alive and packet dispatch, for any transport.

What a connection means (IoT Hub device, DPS registration) is decided by a `Router` from the
CONNECT packet; the returned `Session` handles the packets that follow. Every rule break
closes the connection, which is how IoT Hub answers over MQTT.

Every packet in and out is recorded on the connection's trace record (`trace.ConnTrace`), and
the faults a test asked for (`faults.FaultBook`) are applied here at CONNECT, PUBLISH,
SUBSCRIBE and PINGREQ; both are thin calls, checked with one attribute when nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from ...errors import ConnackCode, ConnectRefused, ProtocolViolation, UsernameError
from ..faults import FaultBook
from ..faults import kinds as fault_kinds
from ..protocol.topics import DpsUsername, parse_username
from ..trace import ConnTrace, connect_details
from . import codec
from .codec import Connect, Frame, Framer, Publish

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


class Writer(Protocol):
    """Where a connection's packets go (the TLS adapter's stream, a WebSocket's frames)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def buffered(self) -> int:
        """Bytes (or frames) written and not yet taken by the network."""
        ...


class Router(Protocol):
    async def connect(self, conn: MqttConnection, connect: Connect) -> tuple[Session, bool]:
        """Authenticate; return the session and the CONNACK session-present flag, or raise
        ConnectRefused."""
        ...


class MqttConnection:
    # Slots: ten thousand idle connections each keep one (a dict of this many attributes would be
    # a kilobyte more apiece); __weakref__ for the fault book's set of live connections.
    __slots__ = (
        "_read", "_framer", "writer", "_close_transport", "peer", "peer_chain", "router", "max_idle", "connect_timeout",
        "client_id", "session", "closed", "close_reason", "graceful", "_loop", "_last_rx", "_idle_limit",
        "_watchdog", "_deadline", "_at_deadline", "_pending_acks", "_ack_room", "_outbox", "_flush_scheduled",
        "device_id", "module_id", "trace_record", "_faults", "_reset_transport", "_swallow", "_withhold_puback",
        "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: Writer,
        *,
        close_transport: Callable[[], None],
        peer: str,
        peer_chain: Sequence[bytes] = (),
        router: Router,
        max_idle: float,
        connect_timeout: float,
        trace: ConnTrace | None = None,
        faults: FaultBook | None = None,
        reset_transport: Callable[[], None] | None = None,
    ) -> None:
        """`trace`: this connection's trace record (None: not traced); `faults`: the faults to
        apply; `reset_transport`: closes with a TCP reset (drop faults; else a plain close)."""
        self._read = reader.read
        self._framer = Framer(MAX_PACKET)
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
        self.closed = False  # a flag, not an asyncio.Event: nothing waits on it, and an Event is ~850 bytes
        self.close_reason = ""
        self.graceful = False
        self._loop = asyncio.get_running_loop()
        self._last_rx = self._loop.time()
        self._idle_limit = max_idle
        self._watchdog: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # close_at's time (the loop's clock)
        self._at_deadline: Callable[[], None] | None = None
        self._pending_acks = 0  # QoS 1 messages whose commit has not completed
        self._ack_room: asyncio.Future | None = None  # set while reading waits for commits
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self.device_id: str | None = None  # from the CONNECT username (DPS: the registration id)
        self.module_id: str | None = None
        self.trace_record = trace
        self._faults = faults
        self._reset_transport = reset_transport
        self._swallow: set[int] | None = None  # packet types to withhold once (SUBACK)
        self._withhold_puback = False  # set by a withhold-puback fault for the PUBLISH being handled

    @property
    def faults(self) -> FaultBook | None:
        """The faults a test asked for (sessions apply the ones of their topics)."""
        return self._faults

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
        if self.closed:
            return
        if self._swallow and data[0] >> 4 in self._swallow:
            self._swallow.discard(data[0] >> 4)
            return
        if self.trace_record is not None:
            self.trace_record.packet_out(data)
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

    def ack_when_stored(self, packet_id: int) -> Callable[[BaseException | None], None]:
        """What the store calls once the message's commit completed (None) or failed (the
        error): send the PUBACK, or close the connection. Counts the message as waiting."""
        withhold = self._withhold_puback
        self._withhold_puback = False
        self._pending_acks += 1

        def stored(error: BaseException | None) -> None:
            self._pending_acks -= 1
            room = self._ack_room
            if room is not None and not room.done():
                room.set_result(None)
            if error is not None:
                self.close(f"could not store message {packet_id}: {error}")
            elif not withhold:
                self.send(codec.encode_puback(packet_id))

        return stored

    def ack_when_done(self, fut: asyncio.Future, packet_id: int) -> None:
        """Send PUBACK once fut (the store commit) succeeds; close the connection if it fails."""
        stored = self.ack_when_stored(packet_id)
        fut.add_done_callback(lambda f: stored(asyncio.CancelledError("cancelled") if f.cancelled() else f.exception()))

    def close(self, reason: str, *, graceful: bool = False, reset: bool = False) -> None:
        """Close the connection now (idempotent). Not graceful = the will message applies.
        `reset`: with a TCP reset, nothing queued sent (where the transport can)."""
        if self.closed:
            return
        self.close_reason = reason
        self.graceful = graceful
        reset_transport = self._reset_transport if reset else None
        if reset_transport is None:
            self._flush()  # what was queued (a CONNACK refusal) goes out before the close
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.trace_record is not None:
            self.trace_record.event("CLOSE", reason)
        if self._faults is not None:
            self._faults.detach(self)
        if reset_transport is not None:
            self._outbox.clear()
            reset_transport()
        else:
            self._close_transport()

    def fault_drop(self, how: str, reason: str) -> None:
        """Drop the connection for a fault: "reset" (TCP RST) or "close" (TLS close, then FIN)."""
        self.close(reason, reset=how == "reset")

    # ---- the read loop ------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            # The CONNECT's frame and objects go with _connect's frame: an idle connection keeps
            # only what its session holds.
            if await self._connect():
                await self._dispatch_loop()
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

    async def _connect(self) -> bool:
        """Read and answer the CONNECT; True when the connection was accepted and stays open."""
        # The watchdog (not wait_for: a task and a timer more per connection) closes a
        # connection whose CONNECT does not come within connect_timeout.
        self._idle_limit = self.connect_timeout
        self._arm_watchdog()
        frame = await self._read_frame()
        self._stop_watchdog()
        if self.closed:
            return False
        if frame is None:
            self.close("closed before CONNECT")
            return False
        if frame.packet_type != codec.CONNECT:
            raise ProtocolViolation(f"first packet is {codec.PACKET_NAMES[frame.packet_type]}, not CONNECT")
        header = codec.decode_connect_header(frame.body)
        if header.proto_name != "MQTT" or header.proto_level != 4:
            if self.trace_record is not None:
                self.trace_record.packet_in(codec.CONNECT, frame.flags, len(frame.body))
            log.warning(
                "%s: CONNECT refused with CONNACK 1 (unacceptable protocol version): protocol %r level %#x; "
                "IoT Hub speaks MQTT 3.1.1 only (level 4; a Mosquitto bridge needs 'try_private false')",
                self.peer,
                header.proto_name,
                header.proto_level,
            )
            self._refuse(ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION)
            return False
        connect = await codec.decode_connect(frame.body)
        self.client_id = connect.client_id
        self._identify(connect)
        rec = self.trace_record
        if rec is not None:
            details = connect_details(
                connect.client_id,
                connect.username,
                connect.password,
                connect.clean_session,
                connect.keep_alive,
                connect.will_topic,
                connect.will_qos,
                connect.will_retain,
                len(connect.will_message or b""),
            )  # never the password
            rec.packet_in(codec.CONNECT, frame.flags, len(frame.body), extra=details)
        faults = self._faults
        if faults is not None:
            faults.attach(self)
            if faults.armed and await self._connect_fault(faults):
                return False
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
            return False
        if self.closed:  # closed while authenticating (shutdown)
            return False
        self.send(codec.encode_connack(ConnackCode.ACCEPTED, session_present))
        on_connected = getattr(self.session, "on_connected", None)
        if on_connected is not None:
            on_connected(self)
        keep_alive = connect.keep_alive
        self._idle_limit = min(1.5 * keep_alive, self.max_idle) if keep_alive else self.max_idle
        self._last_rx = self._loop.time()
        self._arm_watchdog()
        return True

    async def _dispatch_loop(self) -> None:
        session = self.session
        assert session is not None
        rec = self.trace_record
        faults = self._faults
        framer, buffered = self._framer, self.writer.buffered
        while not self.closed:
            # A packet already read needs no await (one read often holds several PUBLISHes).
            frame = framer.next() or await self._read_frame()
            if frame is None:
                self.close("connection lost")
                return
            self._last_rx = self._loop.time()
            kind = frame.packet_type
            if kind == codec.PUBLISH:
                pub = codec.decode_publish(frame.flags, frame.body)
                if rec is not None:
                    rec.packet_in(kind, frame.flags, len(frame.body), pub.packet_id, pub.topic, pub.payload)
                if faults is not None and faults.armed:
                    fired = self._packet_fault(fault_kinds.PUBLISH)
                    if self.closed:
                        return
                    self._withhold_puback = fired == "withhold-puback" and pub.qos == 1
                await session.on_publish(self, pub)
                self._withhold_puback = False
                if self._pending_acks >= MAX_UNACKED:
                    self._ack_room = self._loop.create_future()
                    await self._ack_room
            elif kind == codec.PUBACK:
                packet_id = codec.decode_packet_id(frame.body)
                if rec is not None:
                    rec.packet_in(kind, frame.flags, 2, packet_id)
                session.on_puback(self, packet_id)
            elif kind == codec.PINGREQ:
                if rec is not None:
                    rec.packet_in(kind, frame.flags, 0)
                if faults is None or not faults.armed or self._packet_fault(fault_kinds.PING) is None:
                    self.send(codec.encode_pingresp())
            elif kind == codec.SUBSCRIBE:
                packet_id, topics = await codec.decode_subscribe(frame.body)
                if rec is not None:
                    rec.packet_in(kind, frame.flags, len(frame.body), packet_id, extra=topics)
                if faults is not None and faults.armed:
                    fired = self._packet_fault(fault_kinds.SUBSCRIBE)
                    if self.closed:
                        return
                    if fired == "withhold-suback":
                        self._swallow = (self._swallow or set()) | {9}  # SUBACK
                await session.on_subscribe(self, packet_id, topics)
            elif kind == codec.UNSUBSCRIBE:
                packet_id, filters = await codec.decode_unsubscribe(frame.body)
                if rec is not None:
                    rec.packet_in(kind, frame.flags, len(frame.body), packet_id, extra=filters)
                await session.on_unsubscribe(self, packet_id, filters)
            elif kind == codec.DISCONNECT:
                if rec is not None:
                    rec.packet_in(kind, frame.flags, 0)
                # Let stored-but-unacknowledged messages finish: the client is going away.
                self.close("client sent DISCONNECT", graceful=True)
                return
            elif kind == codec.CONNECT:
                raise ProtocolViolation("second CONNECT on one connection")
            else:
                raise ProtocolViolation(f"unexpected {codec.PACKET_NAMES[kind]} from a client")
            if buffered():  # only then can the transport have paused: wait for the client to read
                await self.writer.drain()

    async def _read_frame(self) -> Frame | None:
        return await codec.read_frame(self._read, self._framer)

    def _identify(self, connect: Connect) -> None:
        try:
            username = parse_username(connect.username)
        except UsernameError:
            return
        if isinstance(username, DpsUsername):
            self.device_id = username.registration_id
            if self.trace_record is not None:
                self.trace_record.identify(self.device_id, None, "dps")
        else:
            self.device_id, self.module_id = username.device_id, username.module_id
            if self.trace_record is not None:
                self.trace_record.identify(self.device_id, self.module_id)
            chain = username.params.get("auth-chain")
            if chain:  # an edge's link for a child carries the edge's credentials: its faults are the edge's
                self.device_id, self.module_id = chain.split(";")[-1], None

    async def _connect_fault(self, faults: FaultBook) -> bool:
        """Apply a refuse-connect or withhold-connack fault; True when one fired."""
        fault = faults.take(fault_kinds.CONNECT, self.device_id, self.module_id, self.trace_record)
        if fault is None:
            return False
        if fault.kind == "refuse-connect":
            log.warning("%s: CONNECT refused with CONNACK %d (fault %s)", self._who(), fault.params["code"], fault.id)
            self._refuse(fault.params["code"])
        else:  # withhold-connack: hold the connection, answer nothing, until the client gives up
            log.info("%s: CONNACK withheld (fault %s)", self._who(), fault.id)
            while not self.closed:
                try:
                    frame = await asyncio.wait_for(self._read_frame(), self.max_idle)
                except TimeoutError:
                    break
                if frame is None:
                    break
            self.close(f"CONNACK withheld (fault {fault.id})")
        return True

    def _packet_fault(self, point: str) -> str | None:
        """The kind of the fault that fires at `point` (a packet from the client), or None;
        a drop is done here."""
        assert self._faults is not None
        fault = self._faults.take(point, self.device_id, self.module_id, self.trace_record)
        if fault is None:
            return None
        if fault.kind == "drop":
            self.fault_drop(fault.params["how"], f"fault {fault.id}: drop ({fault.params['how']}) at {point}")
        return fault.kind

    def _refuse(self, return_code: int) -> None:
        self.send(codec.encode_connack(return_code))
        self.close(f"CONNACK {return_code}", graceful=True)

    def _violation(self, reason: str) -> None:
        log.warning("%s: closing the connection: %s", self._who(), reason)
        self.close(reason)

    def _who(self) -> str:
        return f"{self.peer} ({self.client_id})" if self.client_id else self.peer

    # ---- keep-alive ---------------------------------------------------------------------

    def close_at(self, delay: float, then: Callable[[], None]) -> None:
        """Call `then` in `delay` seconds unless the connection has closed (a SAS token's expiry).
        It shares the keep-alive's timer: a timer handle is ~550 bytes per idle connection."""
        self._deadline = self._loop.time() + delay
        self._at_deadline = then
        if self._watchdog is not None:  # armed already: fire sooner if this comes first
            self._watchdog.cancel()
            self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        when = self._last_rx + self._idle_limit
        if self._deadline is not None and self._deadline < when:
            when = self._deadline
        self._watchdog = self._loop.call_at(when, self._check_idle)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _check_idle(self) -> None:
        if self.closed:
            return
        now = self._loop.time()
        if self.session is None:  # armed by _connect: the CONNECT is late
            log.info("%s: no CONNECT within %.0f s, closing", self.peer, self.connect_timeout)
            self.close("no CONNECT")
            return
        if self._deadline is not None and now >= self._deadline:
            then, self._deadline, self._at_deadline = self._at_deadline, None, None
            if then is not None:
                then()
            if self.closed:
                return
        if now - self._last_rx >= self._idle_limit:
            log.info(
                "%s: nothing received for %.1f s (1.5 x keep-alive), closing the connection",
                self._who(),
                self._idle_limit,
            )
            self.close("keep-alive expired")
        else:
            self._arm_watchdog()
