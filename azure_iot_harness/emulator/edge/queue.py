"""edgeHub's store-and-forward queues: one per endpoint ($upstream, each module input).

A message routed to several endpoints is committed once per endpoint, in one transaction, before
the device gets its PUBACK. Each endpoint hands out its messages by priority (0 first) and then
in arrival order; a message past its time-to-live is dropped, never delivered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import SYSTEM_CLOCK, Clock
from ..protocol.messages import Telemetry
from ..store import Store

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


@dataclass
class Queued:
    seq: int
    endpoint: str
    priority: int
    expiry: float  # epoch seconds; inf = never
    telemetry: Telemetry
    in_flight: bool = False


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
    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock
        self._queues: dict[str, list[Queued]] = {}
        self._waiters: dict[str, asyncio.Event] = {}
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
        for seq, endpoint, priority, expiry, doc in rows:
            self._queues.setdefault(endpoint, []).append(Queued(seq, endpoint, priority, expiry, _from_json(doc)))

    def enqueue(self, telemetry: Telemetry, targets: list[tuple[str, int, float]]) -> asyncio.Future:
        """Commit one message for each (endpoint, priority, ttl seconds); ttl < 0 never expires."""
        now = self.clock.time()
        doc = _to_json(telemetry)
        rows = [(endpoint, priority, now + ttl if ttl >= 0 else float("inf")) for endpoint, priority, ttl in targets]

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
                return
            for seq, (endpoint, priority, expiry) in zip(f.result(), rows):
                self._queues.setdefault(endpoint, []).append(Queued(seq, endpoint, priority, expiry, telemetry))
                self._wake(endpoint)

        fut.add_done_callback(committed)
        return fut

    def next(self, endpoint: str) -> Queued | None:
        """The message to deliver next: highest priority, oldest; expired ones are dropped."""
        self._expire(endpoint)
        ready = [q for q in self._queues.get(endpoint, []) if not q.in_flight]
        return min(ready, key=lambda q: (q.priority, q.seq)) if ready else None

    def pending(self, endpoint: str) -> list[Queued]:
        self._expire(endpoint)
        return sorted(self._queues.get(endpoint, []), key=lambda q: (q.priority, q.seq))

    def done(self, item: Queued) -> asyncio.Future:
        queue = self._queues.get(item.endpoint, [])
        if item in queue:
            queue.remove(item)
        return self.store.submit(lambda c: c.execute("DELETE FROM edge_messages WHERE seq = ?", (item.seq,)))

    async def wait(self, endpoint: str, timeout: float | None = None) -> None:
        """Until something is enqueued for the endpoint (or the timeout passes)."""
        event = self._waiters.setdefault(endpoint, asyncio.Event())
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _wake(self, endpoint: str) -> None:
        event = self._waiters.get(endpoint)
        if event is not None:
            event.set()
        for fn in self._listeners:
            fn(endpoint)

    def _expire(self, endpoint: str) -> None:
        now = self.clock.time()
        for item in [q for q in self._queues.get(endpoint, []) if q.expiry <= now and not q.in_flight]:
            self.done(item)
