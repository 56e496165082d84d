"""C2D delivery feedback: the records IoT Hub produces when a message asked for it (`iothub-ack`)
and left its device's queue, batched and kept durably until a service reads them.

`positive` asks for `Success`, `negative` for `Expired`, `DeliveryCountExceeded` and `Rejected`,
`full` for all. Records wait up to `batch_seconds` (IoT Hub: up to 15 s) or until 64 are there,
then form one batch. A batch is read (AMQP `/messages/serviceBound/feedback` or REST
`GET /messages/serviceBound/feedback`) under a lock token, locked for 60 s, and completed,
abandoned or rejected with it; after 10 deliveries or an hour it is dropped, as IoT Hub's
feedback queue does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import Clock
from ..protocol.messages import utc_now_iso
from ..store import Store
from .c2d import C2DMessage, C2DQueues

MAX_RECORDS = 64
LOCK_SECONDS = 60.0
TTL_SECONDS = 3600.0
MAX_DELIVERIES = 10
CONTENT_TYPE = "application/vnd.microsoft.iothub.feedback.json"
_WANTED = {
    "positive": {"Success"},
    "negative": {"Expired", "DeliveryCountExceeded", "Rejected"},
    "full": {"Success", "Expired", "DeliveryCountExceeded", "Rejected"},
}
_DESCRIPTIONS = {
    "Success": "Success",
    "Expired": "Message expired",
    "DeliveryCountExceeded": "Message delivery count exceeded",
    "Rejected": "Message rejected",
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS c2d_feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL
);
"""


@dataclass
class FeedbackBatch:
    seq: int
    records: list[dict]
    enqueued: float
    lock_token: str = ""
    lock_until: float = 0.0
    deliveries: int = 0

    @property
    def body(self) -> bytes:
        return json.dumps(self.records).encode()


class Feedback:
    def __init__(self, store: Store, c2d: C2DQueues, clock: Clock, *, batch_seconds: float, sweep_seconds: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        self.batch_seconds = batch_seconds
        self.sweep_seconds = sweep_seconds
        self._records: list[dict] = []
        self._batches: list[FeedbackBatch] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.Task | None = None
        self._listeners: list[Callable[[], None]] = []
        self._c2d = c2d
        store.add_schema(_SCHEMA)
        c2d.on_settled(self._settled)

    async def start(self) -> None:
        rows = await self.store.submit(lambda c: c.execute("SELECT seq, doc FROM c2d_feedback ORDER BY seq").fetchall())
        for seq, doc in rows:
            data = json.loads(doc)
            self._batches.append(FeedbackBatch(seq, data["records"], data["enqueued"]))
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _sweep(self) -> None:
        """Messages expire while nobody looks at their queue: sweep so their feedback comes."""
        while True:
            await asyncio.sleep(self.sweep_seconds)
            self._c2d.expire_all()

    def on_available(self, fn: Callable[[], None]) -> Callable[[], None]:
        """fn() when a batch may be read; returns the unsubscribe."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    # ---- producing ----------------------------------------------------------------------

    def _settled(self, msg: C2DMessage, outcome: str) -> None:
        if outcome not in _WANTED.get(msg.ack or "none", set()):
            return
        self._records.append({
            "originalMessageId": msg.message_id,
            "enqueuedTimeUtc": utc_now_iso(),
            "statusCode": outcome,
            "description": _DESCRIPTIONS[outcome],
            "deviceId": msg.device_id,
            "deviceGenerationId": (self._c2d.registry.get(msg.device_id, None) or {}).get("generationId", ""),
        })  # fmt: skip
        if len(self._records) >= MAX_RECORDS or self.batch_seconds <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.batch_seconds, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._records:
            return
        records, self._records = self._records, []
        now = self.clock.time()
        doc = json.dumps({"records": records, "enqueued": now})
        batch = FeedbackBatch(0, records, now)
        fut = self.store.submit(lambda c: c.execute("INSERT INTO c2d_feedback (doc) VALUES (?)", (doc,)).lastrowid)

        def stored(f: asyncio.Future) -> None:
            if f.exception() is None:
                batch.seq = f.result()
                self._batches.append(batch)
                for fn in list(self._listeners):
                    fn()

        fut.add_done_callback(stored)

    # ---- reading ------------------------------------------------------------------------

    def take(self) -> FeedbackBatch | None:
        """The next batch that is not locked, now locked under a new token."""
        now = self.clock.time()
        self._drop_dead(now)
        for batch in self._batches:
            if batch.lock_until <= now:
                batch.lock_token = str(uuid.uuid4())
                batch.lock_until = now + LOCK_SECONDS
                batch.deliveries += 1
                return batch
        return None

    def complete(self, lock_token: str) -> bool:
        batch = self._find(lock_token)
        if batch is None:
            return False
        self._batches.remove(batch)
        self._delete(batch.seq)
        return True

    def _delete(self, seq: int) -> None:
        self.store.submit(lambda c: c.execute("DELETE FROM c2d_feedback WHERE seq = ?", (seq,)))

    def abandon(self, lock_token: str) -> bool:
        batch = self._find(lock_token)
        if batch is None:
            return False
        batch.lock_until = 0.0
        batch.lock_token = ""
        for fn in list(self._listeners):
            fn()
        return True

    def _find(self, lock_token: str) -> FeedbackBatch | None:
        now = self.clock.time()
        return next((b for b in self._batches if b.lock_token == lock_token and b.lock_until > now), None)

    def _drop_dead(self, now: float) -> None:
        for batch in [b for b in self._batches if b.enqueued + TTL_SECONDS <= now or (b.deliveries >= MAX_DELIVERIES and b.lock_until <= now)]:
            self._batches.remove(batch)
            self._delete(batch.seq)
