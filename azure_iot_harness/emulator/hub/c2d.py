"""Cloud-to-device queues: one durable queue per device, with TTL, lock and delivery count.

A delivered message stays in the queue, locked, until the device's PUBACK completes it; when
the lock runs out it can be delivered again (flagged DUP). At most 50 messages wait per device;
each is at most 64 KB. Queues live in memory for speed and are written through to the store.
The last few outcomes per device (acknowledged, expired, delivered too often, purged, with
Azure's feedback status names) are kept in memory for the explorer page.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..clock import SYSTEM_CLOCK, Clock
from ..protocol.errors import hub_error
from ..protocol.topics import encode_property_bag
from ..store import Store
from .registry import Registry

MAX_PENDING = 50
MAX_BYTES = 64 * 1024
DEFAULT_TTL = 3600.0
MAX_DELIVERY_COUNT = 10
ACK_VALUES = ("none", "positive", "negative", "full")
HISTORY = 20  # finished messages remembered per device (in memory only)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS c2d (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS c2d_device ON c2d (device_id, seq);
"""


@dataclass
class C2DMessage:
    device_id: str
    body: bytes
    message_id: str
    properties: dict[str, str | None] = field(default_factory=dict)
    correlation_id: str | None = None
    user_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    ack: str | None = None
    enqueued: float = 0.0  # epoch seconds
    expiry: float = 0.0  # epoch seconds
    delivery_count: int = 0
    lock_until: float = 0.0  # epoch seconds; 0 = not locked
    seq: int = 0

    def topic(self) -> str:
        """`devices/{id}/messages/devicebound/{bag}` as IoT Hub builds it: the device id inside
        `$.to` stays unescaped."""
        system: list[tuple[str, str | None]] = [("$.mid", self.message_id)]
        for key, value in (
            ("$.cid", self.correlation_id),
            ("$.uid", self.user_id),
            ("$.ct", self.content_type),
            ("$.ce", self.content_encoding),
        ):
            if value is not None:
                system.append((key, value))
        system.append(("$.exp", iso_time(self.expiry)))
        if self.ack and self.ack != "none":
            system.append(("iothub-ack", self.ack))
        to = f"%24.to=%2Fdevices%2F{self.device_id}%2Fmessages%2Fdevicebound"
        bag = "&".join(filter(None, [to, encode_property_bag(system), encode_property_bag(list(self.properties.items()))]))
        return f"devices/{self.device_id}/messages/devicebound/{bag}"

    def to_json(self) -> str:
        doc = asdict(self)
        doc["body"] = self.body.decode("latin-1")
        return json.dumps(doc)

    @classmethod
    def from_json(cls, seq: int, text: str) -> C2DMessage:
        doc = json.loads(text)
        doc["body"] = doc["body"].encode("latin-1")
        doc["seq"] = seq
        return cls(**doc)


def iso_time(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


class C2DQueues:
    def __init__(self, store: Store, registry: Registry, clock: Clock = SYSTEM_CLOCK, *, lock_seconds: float = 60.0) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.lock_seconds = lock_seconds
        self._queues: dict[str, list[C2DMessage]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._history: dict[str, collections.deque[dict]] = {}
        self._settled: list[Callable[[C2DMessage, str], None]] = []
        self.last_seq = 0  # the newest message's sequence number, ever
        store.add_schema(_SCHEMA)
        registry.on_change(self._identity_changed)
        registry.pending_c2d = self.pending_count  # cloudToDeviceMessageCount in identity views

    async def load(self) -> None:
        rows = await self.store.submit(lambda c: c.execute("SELECT seq, doc FROM c2d ORDER BY seq").fetchall())
        self.last_seq = await self.store.submit(
            lambda c: (c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'c2d'").fetchone() or (0,))[0]
        )
        for seq, doc in rows:
            msg = C2DMessage.from_json(seq, doc)
            self._queues.setdefault(msg.device_id, []).append(msg)

    def on_enqueued(self, fn: Callable[[str], None]) -> None:
        """fn(device_id) after a message was committed to a device's queue."""
        self._listeners.append(fn)

    def on_settled(self, fn: Callable[[C2DMessage, str], None]) -> None:
        """fn(message, outcome) when a message leaves its queue: outcome is IoT Hub's feedback
        status (`Success`, `Expired`, `DeliveryCountExceeded`, `Rejected`)."""
        self._settled.append(fn)

    # ---- sending -----------------------------------------------------------------------------

    async def send(
        self,
        device_id: str,
        body: bytes,
        *,
        properties: dict[str, str | None] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        user_id: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        ack: str | None = None,
        ttl: float | None = None,
    ) -> C2DMessage:
        if self.registry.get(device_id) is None:
            raise hub_error("DeviceNotFound", f"device {device_id} not found")
        props = dict(properties or {})
        size = len(body) + sum(len(k.encode()) + len((v or "").encode()) for k, v in props.items())
        if size > MAX_BYTES:
            raise hub_error("RequestEntityTooLarge", f"message of {size} bytes exceeds the {MAX_BYTES}-byte C2D limit")
        if ack is not None and ack not in ACK_VALUES:
            raise hub_error("ArgumentInvalid", f"ack must be one of {', '.join(ACK_VALUES)}")
        if ttl is not None and not 0 < ttl <= 48 * 3600:
            raise hub_error("ArgumentInvalid", "ttl must be between 1 second and 48 hours")
        now = self.clock.time()
        self._expire(device_id, now)
        if len(self._queues.get(device_id, [])) >= MAX_PENDING:
            raise hub_error(
                "DeviceMaximumQueueDepthExceeded", f"device {device_id} already has {MAX_PENDING} pending messages"
            )
        msg = C2DMessage(
            device_id=device_id,
            body=body,
            message_id=message_id or str(uuid.uuid4()),
            properties=props,
            correlation_id=correlation_id,
            user_id=user_id,
            content_type=content_type,
            content_encoding=content_encoding,
            ack=ack,
            enqueued=now,
            expiry=now + (ttl if ttl is not None else DEFAULT_TTL),
        )
        text = msg.to_json()
        msg.seq = await self.store.submit(lambda c: _inserted(c.execute("INSERT INTO c2d (device_id, doc) VALUES (?, ?)", (device_id, text))))
        self.last_seq = max(self.last_seq, msg.seq)
        self._queues.setdefault(device_id, []).append(msg)
        for fn in self._listeners:
            fn(device_id)
        return msg

    # ---- delivering --------------------------------------------------------------------------

    def pending_count(self, device_id: str) -> int:
        return len(self.pending(device_id))

    def pending(self, device_id: str) -> list[C2DMessage]:
        """Every live message of a device, delivered-and-locked ones included."""
        self._expire(device_id, self.clock.time())
        return list(self._queues.get(device_id, []))

    def deliverable(self, device_id: str, after_seq: int, now: float | None = None) -> list[C2DMessage]:
        """Messages that may go out now: enqueued after `after_seq` and not locked."""
        now = self.clock.time() if now is None else now
        self._expire(device_id, now)
        return [m for m in self._queues.get(device_id, []) if m.seq > after_seq and m.lock_until <= now]

    def next_unlock(self, device_id: str) -> float | None:
        locks = [m.lock_until for m in self._queues.get(device_id, []) if m.lock_until]
        return min(locks) if locks else None

    def lock(self, msg: C2DMessage, now: float | None = None) -> None:
        """Mark a message delivered: locked for the lock duration, delivery count up."""
        now = self.clock.time() if now is None else now
        msg.delivery_count += 1
        msg.lock_until = now + self.lock_seconds
        text, seq = msg.to_json(), msg.seq
        self.store.submit(lambda c: c.execute("UPDATE c2d SET doc = ? WHERE seq = ?", (text, seq)))

    def complete(self, device_id: str, seq: int, outcome: str = "Success") -> asyncio.Future:
        """Remove a message; `outcome` is Azure's feedback status for it (Success: acknowledged)."""
        queue = self._queues.get(device_id, [])
        self._queues[device_id] = [m for m in queue if m.seq != seq]
        for m in queue:
            if m.seq == seq:
                self._remember(m, outcome)
                for fn in self._settled:
                    fn(m, outcome)
        return self.store.submit(lambda c: c.execute("DELETE FROM c2d WHERE seq = ?", (seq,)))

    def reject(self, device_id: str, seq: int) -> asyncio.Future:
        """The device refused the message (HTTPS and AMQP devices can; MQTT has no way to)."""
        return self.complete(device_id, seq, "Rejected")

    def expire_all(self) -> None:
        """Drop expired and dead-lettered messages of every device now (their feedback is due)."""
        now = self.clock.time()
        for device_id in list(self._queues):
            self._expire(device_id, now)

    async def purge(self, device_id: str) -> int:
        if self.registry.get(device_id) is None:
            raise hub_error("DeviceNotFound", f"device {device_id} not found")
        purged = self._queues.pop(device_id, [])
        for m in purged:
            self._remember(m, "Purged")  # in the history; purged messages get no feedback
        await self.store.submit(lambda c: c.execute("DELETE FROM c2d WHERE device_id = ?", (device_id,)))
        return len(purged)

    def history(self, device_id: str) -> list[dict]:
        """The device's last finished messages, oldest first (kept in memory, HISTORY of them)."""
        return list(self._history.get(device_id, ()))

    def _remember(self, msg: C2DMessage, outcome: str) -> None:
        entry = {
            "messageId": msg.message_id,
            "sequenceNumber": msg.seq,
            "outcome": outcome,
            "deliveryCount": msg.delivery_count,
            "ack": msg.ack,
            "enqueuedTime": iso_time(msg.enqueued),
            "finishedTime": iso_time(self.clock.time()),
        }
        self._history.setdefault(msg.device_id, collections.deque(maxlen=HISTORY)).append(entry)

    def _expire(self, device_id: str, now: float) -> None:
        """Drop expired messages and those delivered too often (IoT Hub dead-letters them)."""
        queue = self._queues.get(device_id)
        if not queue:
            return
        doomed = [
            m for m in queue if m.expiry <= now or (m.delivery_count >= MAX_DELIVERY_COUNT and m.lock_until <= now)
        ]
        for m in doomed:
            self.complete(device_id, m.seq, "Expired" if m.expiry <= now else "DeliveryCountExceeded")

    def _identity_changed(self, key: tuple[str, str | None], doc: dict | None) -> None:
        if doc is None and key[1] is None:
            self._history.pop(key[0], None)
        if doc is None and key[1] is None and self._queues.pop(key[0], None) is not None:
            device_id = key[0]
            self.store.submit(lambda c: c.execute("DELETE FROM c2d WHERE device_id = ?", (device_id,)))


def _inserted(cursor: sqlite3.Cursor) -> int:
    """The rowid of an INSERT (always set after one; sqlite3 types it as optional)."""
    assert cursor.lastrowid is not None
    return cursor.lastrowid
