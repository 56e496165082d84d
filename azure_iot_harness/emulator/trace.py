"""The packet trace: what every MQTT connection sent and received, bounded, on by default.

The session layer records each packet on its connection's `ConnTrace` as a compact tuple (no
dict and no decoding on the path every message takes); `TraceEvent`s are built only when the
trace is read. Packets the emulator sends are kept as their first bytes (the fixed header and,
for PUBLISH, the topic and packet id) and decoded on read. Payloads are kept only when
`capture_payloads` is on.

Bounds: a ring of the last `per_connection` events per connection and `max_events` in all; past
that, the oldest closed connection is forgotten first (then the oldest live one's ring is
emptied). `follow()` streams new events live.

The TLS adapter reports a handshake's outcome with `ConnTrace.tls(...)` on the connection's
record (`Trace.open` at accept, the same record handed to the MQTT connection), or with
`Trace.tls_outcome(...)` for a connection that never reached MQTT.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, fields
from typing import Any

from ..errors import SasTokenError
from .protocol import sas as sas_tokens
from .tls.outcome import HandshakeOutcome

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
    8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT",
}  # fmt: skip

# Record layouts (tuples, first three fields common):
#   IN:    (seq, time, IN, packet type, fixed-header flags, body length, packet id, topic, payload, extra)
#          payload: its length, or the bytes when payloads are captured; extra: CONNECT fields
#          (dict) or SUBSCRIBE filters (list)
#   OUT:   (seq, time, OUT, head bytes, size, whether head is the whole packet with its payload)
#   EVENT: (seq, time, EVENT, type name, reason, extra dict or None); a TLS event's extra is
#          its HandshakeOutcome
IN, OUT, EVENT = 0, 1, 2
_DIRECTIONS = ("in", "out", "event")

_HEAD = 64  # bytes kept of a packet sent; a PUBLISH keeps up to the end of its packet id
_now = time.time


@dataclass(frozen=True)
class TraceEvent:
    """One packet or event, as read from the trace. Fields that do not apply are None."""

    seq: int
    time: float
    conn: int
    peer: str | None
    listener: str | None
    device_id: str | None
    module_id: str | None
    direction: str
    type: str
    packet_id: int | None = None
    dup: bool | None = None
    qos: int | None = None
    retain: bool | None = None
    clean_session: bool | None = None
    keep_alive: int | None = None
    client_id: str | None = None
    username: str | None = None
    sas: dict | None = None  # CONNECT: the SAS token's sr, se, skn (never sig), or why it is not one
    will: dict | None = None  # CONNECT: the will's topic, qos, retain and size
    topic: str | None = None
    topics: list | None = None
    return_code: int | list[int] | None = None
    size: int | None = None
    payload_size: int | None = None
    payload: str | None = None
    tls: dict | None = None
    reason: str | None = None

    def to_json(self) -> dict:
        """The event as JSON, fields that are None left out."""
        return {f: v for f in _FIELD_NAMES if (v := getattr(self, f)) is not None}


_FIELD_NAMES = tuple(f.name for f in fields(TraceEvent))


class ConnTrace:
    """The record of one connection. The session layer calls `packet_in`/`packet_out`."""

    __slots__ = ("_trace", "conn", "peer", "listener", "device_id", "module_id", "ring", "closed", "_maxlen")

    def __init__(self, trace: Trace, conn: int, listener: str, peer: str) -> None:
        self._trace = trace
        self.conn = conn
        self.listener = listener
        self.peer = peer
        self.device_id: str | None = None
        self.module_id: str | None = None
        self.closed = False
        self._maxlen = trace.per_connection
        # A list until it first fills, then a ring: an empty deque costs ~600 bytes, and most
        # connections (idle devices) keep a handful of events.
        self.ring: list[tuple] | deque[tuple] = []

    def identify(self, device_id: str | None, module_id: str | None, listener: str | None = None) -> None:
        """Whose connection this is (known once the CONNECT is read)."""
        self.device_id, self.module_id = device_id, module_id
        if listener is not None:
            self.listener = listener

    # packet_in and packet_out run for every packet: _add is written out in each (a call less).

    def packet_in(
        self,
        ptype: int,
        flags: int,
        length: int,
        packet_id: int | None = None,
        topic: str | None = None,
        payload: bytes | None = None,
        extra: Any = None,
    ) -> None:
        """A packet from the client; `length`: its remaining length (the body's)."""
        trace = self._trace
        kept = payload if payload is None or trace.capture_payloads else len(payload)
        record = (next(trace._seq), _now(), IN, ptype, flags, length, packet_id, topic, kept, extra)
        ring = self.ring
        if len(ring) < self._maxlen:
            trace._stored += 1
            if trace._stored > trace.max_events:
                trace._evict()
            ring.append(record)
        else:
            self._roll(record)
        if trace._followers:
            trace._publish(self, record)

    def packet_out(self, data: bytes) -> None:
        """A packet to the client, as written (one packet)."""
        trace = self._trace
        captured = trace.capture_payloads
        if captured or len(data) <= _HEAD:
            head = data
        else:
            head = data[: _publish_head_length(data)] if data[0] >> 4 == 3 else data[:_HEAD]
        record = (next(trace._seq), _now(), OUT, head, len(data), captured)
        ring = self.ring
        if len(ring) < self._maxlen:
            trace._stored += 1
            if trace._stored > trace.max_events:
                trace._evict()
            ring.append(record)
        else:
            self._roll(record)
        if trace._followers:
            trace._publish(self, record)

    def event(self, type_: str, reason: str | None = None, extra: dict | None = None) -> None:
        """A "CLOSE", "FAULT" or "TLS" event on this connection."""
        if type_ == "CLOSE":
            self.closed = True
        self._add((next(self._trace._seq), time.time(), EVENT, type_, reason, extra))

    def tls(
        self,
        outcome: str,
        *,
        alert: str | None = None,
        version: str | None = None,
        cipher: str | None = None,
        sni: str | None = None,
        server_cert: str | None = None,
    ) -> None:
        """The TLS handshake's outcome: "completed" | "alert" | "closed" | "connect-without-handshake"."""
        self.handshake(HandshakeOutcome(outcome, alert=alert, version=version, cipher=cipher, sni=sni, server_cert=server_cert))

    def handshake(self, outcome: HandshakeOutcome) -> None:
        """The TLS handshake's outcome as the TLS adapter reported it (kept as that object: the
        connection holds it already, no dict per connection)."""
        self._add((next(self._trace._seq), time.time(), EVENT, "TLS", outcome.reason, outcome))

    def _roll(self, record: tuple) -> None:
        """Append to a full ring, dropping its oldest event."""
        ring = self.ring
        if not isinstance(ring, deque):
            ring = self.ring = deque(ring, maxlen=self._maxlen)
        ring.append(record)

    def _add(self, record: tuple) -> None:
        ring, trace = self.ring, self._trace
        if len(ring) < self._maxlen:
            trace._stored += 1
            if trace._stored > trace.max_events:
                trace._evict()
            ring.append(record)
        else:
            self._roll(record)
        if trace._followers:
            trace._publish(self, record)


class Trace:
    """Every connection's recent packets. `open()` returns None when the trace is off."""

    def __init__(
        self, *, enabled: bool = True, per_connection: int = 256, max_events: int = 100_000, capture_payloads: bool = False
    ) -> None:
        self.enabled = enabled
        self.per_connection = max(1, per_connection)
        self.max_events = max(self.per_connection, max_events)
        self.capture_payloads = capture_payloads
        self._seq = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self._conns: dict[int, ConnTrace] = {}
        self._stored = 0
        self._followers: list[tuple[asyncio.Queue, Any]] = []

    # ---- recording ----------------------------------------------------------------------

    def open(self, listener: str, peer: str) -> ConnTrace | None:
        """A record for a new connection, or None when the trace is off."""
        if not self.enabled:
            return None
        rec = ConnTrace(self, next(self._conn_ids), listener, peer)
        self._conns[rec.conn] = rec
        return rec

    def tls_outcome(self, listener: str, peer: str, outcome: str, **details: str | None) -> int | None:
        """Record the handshake of a connection that never reached MQTT; its connection id."""
        rec = self.open(listener, peer)
        if rec is None:
            return None
        rec.tls(outcome, **details)
        rec.event("CLOSE", f"TLS handshake {outcome}")
        return rec.conn

    def _evict(self) -> None:
        for conn_id, rec in self._conns.items():
            if rec.closed:
                del self._conns[conn_id]
                self._stored -= len(rec.ring)
                return
        oldest = next(iter(self._conns.values()))
        self._stored -= len(oldest.ring)
        oldest.ring.clear()

    def _publish(self, rec: ConnTrace, record: tuple) -> None:
        for queue, matches in list(self._followers):
            if matches(rec):
                try:
                    queue.put_nowait((rec, record))
                except asyncio.QueueFull:  # a reader that does not keep up misses events
                    pass

    # ---- reading ------------------------------------------------------------------------

    def events(
        self,
        device_id: str | None = None,
        module_id: str | None = None,
        conn: int | None = None,
        since_seq: int | None = None,
    ) -> list[TraceEvent]:
        """The events kept, oldest first; filters combine. `since_seq`: only events after it."""
        matches = _matcher(device_id, module_id, conn)
        after = since_seq or 0
        out = [
            (record[0], rec, record)
            for rec in list(self._conns.values())
            if matches(rec)
            for record in list(rec.ring)
            if record[0] > after
        ]
        out.sort(key=lambda item: item[0])
        return [_event(rec, record) for _, rec, record in out]

    async def follow(
        self,
        device_id: str | None = None,
        module_id: str | None = None,
        conn: int | None = None,
        since_seq: int | None = None,
    ) -> AsyncIterator[TraceEvent]:
        """The events kept (after `since_seq`), then each new one as it happens."""
        async for event in self.follow_with_heartbeat(device_id, module_id, conn, since_seq):
            if event is not None:
                yield event

    async def follow_with_heartbeat(
        self,
        device_id: str | None = None,
        module_id: str | None = None,
        conn: int | None = None,
        since_seq: int | None = None,
        heartbeat: float | None = None,
    ) -> AsyncIterator[TraceEvent | None]:
        """`follow()`, yielding None after each `heartbeat` seconds without an event."""
        matches = _matcher(device_id, module_id, conn)
        queue: asyncio.Queue[tuple[ConnTrace, tuple]] = asyncio.Queue(maxsize=10_000)
        entry = (queue, matches)
        self._followers.append(entry)
        try:
            last = since_seq or 0
            for event in self.events(device_id, module_id, conn, since_seq):
                last = event.seq
                yield event
            while True:
                try:
                    rec, record = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    yield None
                    continue
                if record[0] > last:
                    last = record[0]
                    yield _event(rec, record)
        finally:
            self._followers.remove(entry)

    def connections(self) -> Iterable[ConnTrace]:
        return list(self._conns.values())

    def clear(self) -> None:
        """Forget every event (live connections keep recording)."""
        for rec in list(self._conns.values()):
            rec.ring.clear()
        self._conns = {k: r for k, r in self._conns.items() if not r.closed}
        self._stored = 0


def _matcher(device_id: str | None, module_id: str | None, conn: int | None) -> Any:
    def matches(rec: ConnTrace) -> bool:
        return (
            (device_id is None or rec.device_id == device_id)
            and (module_id is None or rec.module_id == module_id)
            and (conn is None or rec.conn == conn)
        )

    return matches


# ---- decoding on read ---------------------------------------------------------------------------


def _event(rec: ConnTrace, record: tuple) -> TraceEvent:
    seq, t, direction = record[0], record[1], record[2]
    common: dict[str, Any] = {
        "seq": seq,
        "time": t,
        "conn": rec.conn,
        "peer": rec.peer,
        "listener": rec.listener,
        "device_id": rec.device_id,
        "module_id": rec.module_id,
        "direction": _DIRECTIONS[direction],
    }
    if direction == EVENT:
        _, _, _, type_, reason, extra = record
        if type_ == "TLS":  # extra: the HandshakeOutcome; its reason is the event's
            tls = extra.to_json()
            del tls["reason"]
            return TraceEvent(type=type_, reason=reason, tls=tls, **common)
        return TraceEvent(type=type_, reason=reason, **common)
    if direction == IN:
        _, _, _, ptype, flags, length, packet_id, topic, kept, extra = record
        size = length + (2 if length < 128 else 3 if length < 16384 else 4 if length < 2097152 else 5)
        return TraceEvent(type=PACKET_NAMES.get(ptype, str(ptype)), size=size, packet_id=packet_id, topic=topic,
                          **_payload(kept), **_flags_in(ptype, flags, extra), **common)  # fmt: skip
    _, _, _, head, size, captured = record
    return TraceEvent(size=size, **_decode_out(head, captured), **common)


def _payload(kept: bytes | int | None) -> dict:
    if kept is None:
        return {}
    if isinstance(kept, int):
        return {"payload_size": kept}
    return {"payload_size": len(kept), "payload": base64.b64encode(kept).decode()}


def _flags_in(ptype: int, flags: int, extra: Any) -> dict:
    if ptype == 3:  # PUBLISH
        return {"dup": bool(flags & 8), "qos": (flags >> 1) & 3, "retain": bool(flags & 1)}
    if ptype == 1 and isinstance(extra, dict):  # CONNECT: client id, username, clean session, keep-alive
        return extra
    if ptype in (8, 10) and extra is not None:  # SUBSCRIBE / UNSUBSCRIBE filters
        return {"topics": [list(t) if isinstance(t, tuple) else [t] for t in extra]}
    return {}


def _remaining_length(data: bytes) -> tuple[int, int]:
    """(remaining length, where the variable header starts)."""
    length, shift, at = 0, 0, 1
    while at < len(data):
        byte = data[at]
        length |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            break
        shift += 7
    return length, at


def _publish_head_length(data: bytes) -> int:
    _, at = _remaining_length(data)
    if at + 2 > len(data):
        return len(data)
    (topic_len,) = struct.unpack_from("!H", data, at)
    return min(len(data), at + 2 + topic_len + 2)


def _decode_out(head: bytes, captured: bool) -> dict:
    ptype, flags = head[0] >> 4, head[0] & 0x0F
    out: dict[str, Any] = {"type": PACKET_NAMES.get(ptype, str(ptype))}
    length, at = _remaining_length(head)
    body = head[at:]
    if ptype == 3:
        qos = (flags >> 1) & 3
        out.update(dup=bool(flags & 8), qos=qos, retain=bool(flags & 1))
        if len(body) >= 2:
            (topic_len,) = struct.unpack_from("!H", body)
            out["topic"] = body[2 : 2 + topic_len].decode("utf-8", "replace")
            end = 2 + topic_len
            if qos and len(body) >= end + 2:
                (out["packet_id"],) = struct.unpack_from("!H", body, end)
                end += 2
            out["payload_size"] = length - end
            if captured:
                out["payload"] = base64.b64encode(head[at + end :]).decode()
    elif ptype == 2 and len(body) >= 2:  # CONNACK
        out["return_code"] = body[1]
    elif ptype in (4, 5, 6, 7, 11) and len(body) >= 2:
        (out["packet_id"],) = struct.unpack_from("!H", body)
    elif ptype == 9 and len(body) >= 2:  # SUBACK
        (out["packet_id"],) = struct.unpack_from("!H", body)
        out["return_code"] = list(body[2:])
    return out


def connect_details(client_id: str, username: str | None, password: str | None, clean_session: bool, keep_alive: int,
                    will_topic: str | None, will_qos: int, will_retain: bool, will_size: int) -> dict:  # fmt: skip
    """A CONNECT's fields for the trace: what a device announced and what its token claims (the
    audience, expiry and key name, so a reader can judge renewal), never the password itself."""
    details: dict[str, Any] = {"client_id": client_id, "username": username, "clean_session": clean_session, "keep_alive": keep_alive}
    if password:
        try:
            token = sas_tokens.parse(password)
            details["sas"] = {"sr": token.sr, "se": token.expiry, "skn": token.key_name}
        except SasTokenError as exc:
            details["sas"] = {"error": str(exc)}
    if will_topic is not None:
        details["will"] = {"topic": will_topic, "qos": will_qos, "retain": will_retain, "size": will_size}
    return details
