"""The Event Hubs-compatible view of the durable telemetry log: partitions, sequence numbers,
offsets, starting positions.

Every committed telemetry row belongs to the partition of its device (`partitioning`). A
partition keeps, in memory, the store sequence numbers of its rows in order, rebuilt from the
store at start: an event's sequence number is its position in that list, its offset the store's
sequence number (as a string, as Event Hubs sends offsets), so both survive restarts and a replay
reads exactly what was read before. Events older than the retention are not served.
"""

from __future__ import annotations

import bisect
import datetime as dt
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import Clock
from ..protocol.messages import Telemetry
from ..store import Store
from .partitioning import partition_of
from .positions import Position

READ_BATCH = 300  # rows per store read (SQLite's parameter limit is far above it)


@dataclass(frozen=True)
class Event:
    sequence: int  # within the partition, from 0
    offset: int  # the store's sequence number
    telemetry: Telemetry


@dataclass(frozen=True)
class PartitionInfo:
    begin_sequence: int
    last_sequence: int  # -1: empty
    last_offset: int  # -1: empty
    last_enqueued_ms: int  # 0: empty


def iso_to_ms(text: str) -> int:
    """IoT Hub's `YYYY-MM-DDTHH:MM:SS.fffZ` as milliseconds since the epoch (0 if unreadable)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - _EPOCH) // _MS  # exact (a float timestamp * 1000 can land a millisecond short)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def ms_to_iso(ms: int) -> str:
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)
    return when.isoformat(timespec="milliseconds") + "Z"


class EventLog:
    def __init__(self, store: Store, clock: Clock, *, partitions: int, retention_seconds: float) -> None:
        self.store = store
        self.clock = clock
        self.partition_count = partitions
        self.retention_seconds = retention_seconds
        self._offsets = [array("q") for _ in range(partitions)]
        self._last_ms = [0] * partitions
        self._waiters: list[set[Callable[[], None]]] = [set() for _ in range(partitions)]
        self._loading: list[list[tuple[int, Telemetry]]] | None = None

    @property
    def partition_ids(self) -> list[str]:
        return [str(p) for p in range(self.partition_count)]

    def partition(self, device_id: str) -> int:
        return partition_of(device_id, self.partition_count)

    # ---- life cycle ---------------------------------------------------------------------

    async def load(self) -> None:
        """Index what the store holds; from then on, every commit as it happens."""
        self._loading = []
        self.store.add_telemetry_listener(self._committed)
        rows = await self.store.submit(
            lambda c: c.execute("SELECT seq, device_id, enqueued_time FROM telemetry ORDER BY seq").fetchall()
        )
        for seq, device_id, enqueued in rows:
            self._append(self.partition(device_id), seq, enqueued)
        pending, self._loading = self._loading, None
        for batch in pending:
            self._committed(batch)

    def close(self) -> None:
        self.store.remove_telemetry_listener(self._committed)

    def _committed(self, batch: list[tuple[int, Telemetry]]) -> None:
        if self._loading is not None:
            self._loading.append(batch)
            return
        last: dict[int, Telemetry] = {}  # each partition's last message of the batch
        partition, offsets = self.partition, self._offsets
        for seq, t in batch:
            p = partition(t.device_id)
            part = offsets[p]
            if part and part[-1] >= seq:
                continue  # already indexed while loading
            part.append(seq)
            last[p] = t
        for p, t in last.items():  # one time per partition and commit, not one per message
            self._last_ms[p] = t.enqueued_ms or iso_to_ms(t.enqueued_time)
            for wake in list(self._waiters[p]):
                wake()

    def _append(self, p: int, seq: int, enqueued: str) -> None:
        self._offsets[p].append(seq)
        self._last_ms[p] = iso_to_ms(enqueued)

    def watch(self, partition: int, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` after each commit that adds to `partition`; returns the unsubscribe."""
        self._waiters[partition].add(wake)
        return lambda: self._waiters[partition].discard(wake)

    # ---- reading ------------------------------------------------------------------------

    def count(self, partition: int) -> int:
        return len(self._offsets[partition])

    async def begin(self, partition: int) -> int:
        """The first sequence number still retained."""
        if self.retention_seconds <= 0 or not self._offsets[partition]:
            return 0
        cutoff = ms_to_iso(int((self.clock.time() - self.retention_seconds) * 1000))
        first = await self._first_seq_at_or_after(cutoff, inclusive=True)
        return bisect.bisect_left(self._offsets[partition], first) if first is not None else self.count(partition)

    async def info(self, partition: int) -> PartitionInfo:
        offsets = self._offsets[partition]
        begin = await self.begin(partition)
        if not offsets:
            return PartitionInfo(begin, -1, -1, 0)
        return PartitionInfo(begin, len(offsets) - 1, offsets[-1], self._last_ms[partition])

    def last(self, partition: int) -> PartitionInfo:
        """The last event's numbers, without the retention's begin (the receivers' runtime data)."""
        offsets = self._offsets[partition]
        if not offsets:
            return PartitionInfo(0, -1, -1, 0)
        return PartitionInfo(0, len(offsets) - 1, offsets[-1], self._last_ms[partition])

    async def start(self, partition: int, position: Position) -> int:
        """The sequence number of the first event a receiver starting at `position` gets."""
        offsets = self._offsets[partition]
        begin = await self.begin(partition)
        if position.kind == "earliest":
            return begin
        if position.kind == "latest":
            return len(offsets)
        if position.kind == "sequence":
            return max(begin, position.value if position.inclusive else position.value + 1)
        if position.kind == "offset":
            find = bisect.bisect_left if position.inclusive else bisect.bisect_right
            return max(begin, find(offsets, position.value))
        # enqueued time, in milliseconds
        first = await self._first_seq_at_or_after(ms_to_iso(position.value), inclusive=position.inclusive)
        return max(begin, bisect.bisect_left(offsets, first) if first is not None else len(offsets))

    async def _first_seq_at_or_after(self, iso: str, *, inclusive: bool) -> int | None:
        op = ">=" if inclusive else ">"
        row = await self.store.submit(lambda c: c.execute(f"SELECT MIN(seq) FROM telemetry WHERE enqueued_time {op} ?", (iso,)).fetchone())
        return row[0] if row else None

    async def read(self, partition: int, start: int, limit: int) -> tuple[list[Event], int]:
        """Up to `limit` events from sequence number `start`, and the sequence number after them.
        Rows cleared from the store meanwhile (`DELETE /_emulator/telemetry`) are skipped."""
        wanted = list(self._offsets[partition][start : start + min(limit, READ_BATCH)])
        if not wanted:
            return [], start
        marks = ",".join("?" * len(wanted))
        sql = (
            "SELECT seq, device_id, module_id, enqueued_time, body, properties, system_properties"
            f" FROM telemetry WHERE seq IN ({marks}) ORDER BY seq"
        )
        rows = await self.store.submit(lambda c: c.execute(sql, wanted).fetchall())
        by_seq = {row[0]: row for row in rows}
        events = []
        for i, seq in enumerate(wanted):
            row = by_seq.get(seq)
            if row is not None:
                events.append(Event(start + i, seq, _telemetry(row)))
        return events, start + len(wanted)


def _telemetry(row: tuple) -> Telemetry:
    import json

    _, device_id, module_id, enqueued, body, props, sysprops = row
    return Telemetry(device_id, module_id, bytes(body), json.loads(props), json.loads(sysprops), enqueued)
