"""edgeHub's store-and-forward queues: one per endpoint ($upstream, each module input).

A message routed to several endpoints is committed once per endpoint, in one transaction, before
the device gets its PUBACK. Each endpoint hands out its messages by priority (0 first) and then
in arrival order, for all senders or for one; a message past its time-to-live is dropped, never
delivered, and counted. With `storeLimits.maxSizeBytes` set, a message that would take the
stored messages over the limit is not taken (StoreFull) until deliveries or expiry make room,
as edgeHub does; the size is that of the stored message documents.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import HarnessError
from ..clock import SYSTEM_CLOCK, Clock
from ..protocol.messages import Telemetry
from ..store import Store
from .counters import EdgeCounters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS edge_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    priority INTEGER NOT NULL,
    expiry REAL NOT NULL,
    doc TEXT NOT NULL
);
"""

UPSTREAM = "$upstream"


def module_endpoint(module_id: str, input_name: str) -> str:
    return f"/modules/{module_id}/inputs/{input_name}"


class StoreFull(HarnessError):
    """The stored messages are at `storeLimits.maxSizeBytes`: the edge takes no more for now."""


@dataclass(eq=False)
class Queued:
    seq: int
    endpoint: str
    priority: int
    expiry: float  # epoch seconds; inf = never
    telemetry: Telemetry
    size: int = 0  # bytes of its stored document
    in_flight: bool = False
    closes: int = 0  # times in a row the hub closed an accepted connection on it (not stored)

    @property
    def sender(self) -> str:
        t = self.telemetry
        return f"{t.device_id}/{t.module_id}" if t.module_id else t.device_id


def _to_json(t: Telemetry) -> str:
    return json.dumps(
        {
            "device_id": t.device_id,
            "module_id": t.module_id,
            "body": t.body.decode("latin-1"),
            "properties": t.properties,
            "system_properties": t.system_properties,
            "enqueued_time": t.enqueued_time,
        }
    )


def _from_json(text: str) -> Telemetry:
    d = json.loads(text)
    return Telemetry(d["device_id"], d["module_id"], d["body"].encode("latin-1"), d["properties"], d["system_properties"], d["enqueued_time"])


class EdgeQueues:
    def __init__(
        self,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        *,
        counters: EdgeCounters | None = None,
        max_size_bytes: Callable[[], int | None] = lambda: None,
    ) -> None:
        """`max_size_bytes()`: the current store limit (None: no limit), read at each enqueue."""
        self.store = store
        self.clock = clock
        self.counters = counters or EdgeCounters()
        self.max_size_bytes = max_size_bytes
        self.used_bytes = 0
        self._queues: dict[str, dict[int, Queued]] = {}  # endpoint -> seq -> message, in seq order
        # endpoint -> sender -> priority -> seq -> message: a sender's next message without a scan
        self._lanes: dict[str, dict[str, dict[int, dict[int, Queued]]]] = {}
        self._earliest: dict[str, float] = {}  # endpoint -> no message expires before this
        self._listeners: list[Callable[[str], None]] = []
        store.add_schema(_SCHEMA)

    def on_enqueued(self, fn: Callable[[str], None]) -> None:
        """fn(endpoint) after a message for it was committed."""
        self._listeners.append(fn)

    def endpoints(self, prefix: str) -> list[str]:
        return sorted(e for e, q in self._queues.items() if e.startswith(prefix) and q)

    async def load(self) -> None:
        rows = await self.store.submit(
            lambda c: c.execute("SELECT seq, endpoint, priority, expiry, doc FROM edge_messages ORDER BY seq").fetchall()
        )
        self._queues.clear()
        self._lanes.clear()
        self.used_bytes = 0
        for seq, endpoint, priority, expiry, doc in rows:
            size = len(doc.encode())
            self._add(Queued(seq, endpoint, priority, expiry, _from_json(doc), size))
            self.used_bytes += size

    def enqueue(self, telemetry: Telemetry, targets: list[tuple[str, int, float]]) -> asyncio.Future:
        """Commit one message for each (endpoint, priority, ttl seconds); ttl < 0 never expires.
        StoreFull, before anything is written, when the message does not fit under the limit."""
        now = self.clock.time()
        doc = _to_json(telemetry)
        size = len(doc.encode())
        limit = self.max_size_bytes()
        if limit is not None and self.used_bytes + size * len(targets) > limit:
            raise StoreFull(
                f"the edge's store holds {self.used_bytes} bytes of messages; {size * len(targets)} more would pass "
                f"storeLimits.maxSizeBytes = {limit}"
            )
        rows = [(endpoint, priority, now + ttl if ttl >= 0 else float("inf")) for endpoint, priority, ttl in targets]
        self.used_bytes += size * len(rows)  # reserved now, so concurrent senders cannot overshoot

        def insert(c) -> list[int]:
            return [
                c.execute(
                    "INSERT INTO edge_messages (endpoint, priority, expiry, doc) VALUES (?, ?, ?, ?)", (*row, doc)
                ).lastrowid
                for row in rows
            ]

        fut = self.store.submit(insert)

        def committed(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                self.used_bytes -= size * len(rows)
                return
            for seq, (endpoint, priority, expiry) in zip(f.result(), rows):
                self._add(Queued(seq, endpoint, priority, expiry, telemetry, size))
                self._wake(endpoint)

        fut.add_done_callback(committed)
        return fut

    def next(self, endpoint: str, sender: str | None = None) -> Queued | None:
        """The message to deliver next (of one sender, or of any): highest priority, oldest;
        expired ones are dropped."""
        self._expire(endpoint)
        lanes = self._lanes.get(endpoint, {})
        if sender is not None:
            return _head(lanes.get(sender, {}))
        heads = [h for h in map(_head, lanes.values()) if h is not None]
        return min(heads, key=lambda q: (q.priority, q.seq)) if heads else None

    def senders(self, endpoint: str) -> list[str]:
        """Senders with messages ready for the endpoint, the one whose next message goes first
        first."""
        self._expire(endpoint)
        heads = [(h, s) for s, lane in self._lanes.get(endpoint, {}).items() if (h := _head(lane)) is not None]
        return [s for h, s in sorted(heads, key=lambda hs: (hs[0].priority, hs[0].seq))]

    def pending(self, endpoint: str) -> list[Queued]:
        self._expire(endpoint)
        return sorted(self._queues.get(endpoint, {}).values(), key=lambda q: (q.priority, q.seq))

    def depth(self) -> dict[str, dict]:
        """Per endpoint: its messages, in all and by priority (what the status route shows)."""
        out: dict[str, dict] = {}
        for endpoint in sorted(self._queues):
            items = self.pending(endpoint)
            by_priority: dict[str, int] = {}
            for q in items:
                by_priority[str(q.priority)] = by_priority.get(str(q.priority), 0) + 1
            out[endpoint] = {"messages": len(items), "byPriority": by_priority}
        return out

    def done(self, item: Queued) -> asyncio.Future:
        if self._remove(item):
            self.used_bytes -= item.size
        return self.store.submit(lambda c: c.execute("DELETE FROM edge_messages WHERE seq = ?", (item.seq,)))

    def _wake(self, endpoint: str) -> None:
        for fn in self._listeners:
            fn(endpoint)

    def _add(self, item: Queued) -> None:
        self._queues.setdefault(item.endpoint, {})[item.seq] = item
        lane = self._lanes.setdefault(item.endpoint, {}).setdefault(item.sender, {})
        lane.setdefault(item.priority, {})[item.seq] = item
        self._earliest[item.endpoint] = min(self._earliest.get(item.endpoint, item.expiry), item.expiry)

    def _remove(self, item: Queued) -> bool:
        if self._queues.get(item.endpoint, {}).pop(item.seq, None) is None:
            return False
        lanes = self._lanes[item.endpoint]
        by_priority = lanes[item.sender]
        del by_priority[item.priority][item.seq]
        if not by_priority[item.priority]:
            del by_priority[item.priority]
            if not by_priority:
                del lanes[item.sender]
        return True

    def _expire(self, endpoint: str) -> None:
        now = self.clock.time()
        if now < self._earliest.get(endpoint, now):
            return  # nothing can have expired yet
        queue = self._queues.get(endpoint, {})
        for item in [q for q in queue.values() if q.expiry <= now and not q.in_flight]:
            self.counters.dropped("ttl_expiry", item.sender)
            self.done(item)
        self._earliest[endpoint] = min((q.expiry for q in queue.values()), default=float("inf"))


def _head(lane: dict[int, dict[int, Queued]]) -> Queued | None:
    """A sender's next message: its highest priority's oldest not on its way."""
    for priority in sorted(lane):
        for item in lane[priority].values():
            if not item.in_flight:
                return item
    return None
