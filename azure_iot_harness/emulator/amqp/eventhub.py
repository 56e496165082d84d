"""The Event Hubs-compatible endpoint: `$management` answers and partition receivers.

A receiver attaches to `{hub}/ConsumerGroups/{group}/Partitions/{n}` with a starting position
(`positions`) and, optionally, an epoch (`com.microsoft:epoch`): a receiver with a higher epoch
takes the partition of its consumer group from every older one, which is detached with
`amqp:link:stolen`; a lower one, or one without an epoch while an epoch receiver reads, is
refused the same way. Events go out only while the link has credit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from proton import Endpoint, Link, Message, int32, timestamp

from ..clock import Clock
from .addresses import Node
from .connection import ARGUMENT_ERROR, NOT_FOUND, OUT_OF_RANGE, STOLEN, AmqpConnection, status_message, string_array
from .consumer_groups import ConsumerGroups
from .eventlog import EventLog
from .events import event_message
from .positions import Position, PositionError

log = logging.getLogger("azure_iot_harness.amqp")

@dataclass
class _Reader:
    conn: AmqpConnection
    link: Link
    partition: int
    epoch: int | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class EventHubEndpoint:
    def __init__(self, log_: EventLog, clock: Clock, *, name: str, consumer_groups: ConsumerGroups, created_ms: int) -> None:
        self.events = log_
        self.clock = clock
        self.name = name
        self.groups = consumer_groups
        self.created_ms = created_ms
        self._readers: dict[tuple[str, int], list[_Reader]] = {}
        consumer_groups.on_deleted(self._group_deleted)

    def _group_deleted(self, group: str) -> None:
        """A deleted group's receivers are detached, as its entity is gone."""
        for (key, _), readers in list(self._readers.items()):
            if key != group.lower():
                continue
            for reader in list(readers):
                reader.conn.detach(reader.link, NOT_FOUND, f"The messaging entity '{self.name}/ConsumerGroups/{group}' could not be found: the consumer group was deleted.")

    # ---- $management ---------------------------------------------------------------------

    async def management(self, req: Message, node: Node) -> Message:
        props = req.properties or {}
        operation, kind = props.get("operation"), props.get("type")
        name = str(props.get("name") or "")
        if operation != "READ":
            return status_message(400, f"unsupported operation {operation!r}")
        if name.lower() != self.name.lower():
            return status_message(404, f"The messaging entity '{name}' could not be found.")
        if kind == "com.microsoft:eventhub":
            ids = self.events.partition_ids
            return status_message(200, "OK", {
                "name": self.name,
                "type": "com.microsoft:eventhub",
                "created_at": timestamp(self.created_ms),
                "partition_count": int32(len(ids)),
                "partition_ids": string_array(ids),
            })  # fmt: skip
        if kind == "com.microsoft:partition":
            pid = str(props.get("partition"))
            if pid not in self.events.partition_ids:
                return status_message(404, f"The partition '{pid}' could not be found; the partitions are 0 to {len(self.events.partition_ids) - 1}.")
            info = await self.events.info(int(pid))
            return status_message(200, "OK", {
                "name": self.name,
                "type": "com.microsoft:partition",
                "partition": pid,
                "begin_sequence_number": info.begin_sequence,
                "last_enqueued_sequence_number": info.last_sequence,
                "last_enqueued_offset": str(info.last_offset),
                "last_enqueued_time_utc": timestamp(info.last_enqueued_ms),
                "is_partition_empty": info.last_sequence < info.begin_sequence,
                "runtime_info_retrieval_time_utc": timestamp(int(self.clock.time() * 1000)),
            })  # fmt: skip
        return status_message(400, f"unsupported type {kind!r}")

    # ---- receivers -----------------------------------------------------------------------

    def attach_receiver(self, conn: AmqpConnection, link: Link, node: Node, position: Position | PositionError, epoch: int | None) -> None:
        if node.entity.lower() != self.name.lower():
            conn.refuse(link, NOT_FOUND, f"The messaging entity '{node.entity}' could not be found.")
            return
        group = self.groups.name_of(node.consumer_group)
        if group is None:
            conn.refuse(link, NOT_FOUND, f"The messaging entity '{node.path}' could not be found (no consumer group '{node.consumer_group}').")
            return
        if node.partition not in self.events.partition_ids:
            conn.refuse(
                link,
                OUT_OF_RANGE,
                f"The specified partition '{node.partition}' is invalid for the event hub '{self.name}'; "
                f"the partitions are 0 to {self.events.partition_count - 1}.",
            )
            return
        if isinstance(position, PositionError):
            conn.refuse(link, ARGUMENT_ERROR, str(position))
            return
        partition = int(node.partition)
        if position.kind == "latest":  # fixed now: an event committed from here on is the receiver's
            position = Position("sequence", self.events.count(partition), inclusive=True)
        key = (group.lower(), partition)
        readers = self._readers.setdefault(key, [])
        top = max((r.epoch for r in readers if r.epoch is not None), default=None)
        if top is not None and (epoch is None or epoch < top):
            conn.refuse(
                link,
                STOLEN,
                f"Receiver with epoch '{top}' already exists on partition {partition} of consumer group '{group}'; "
                f"the new receiver's epoch {'is not set' if epoch is None else f'{epoch} is lower'}.",
            )
            return
        if epoch is not None:
            for older in [r for r in readers if r.epoch is None or r.epoch < epoch]:
                older.conn.detach(
                    older.link,
                    STOLEN,
                    f"New receiver with higher epoch of '{epoch}' is created hence current receiver with epoch "
                    f"'{older.epoch if older.epoch is not None else 0}' is getting disconnected.",
                )
                self._drop(key, older)
        reader = _Reader(conn, link, partition, epoch)
        readers.append(reader)
        link.open()
        unwatch = self.events.watch(partition, reader.wake.set)
        conn.on_flow(link, reader.wake.set)

        def closed() -> None:
            unwatch()
            self._drop(key, reader)

        conn.on_link_closed(link, closed)
        reader.task = conn.spawn(self._pump(reader, position))
        log.info("AMQP %s: receiver on %s (%s)", conn.peer, node.path, position.kind + (f", epoch {epoch}" if epoch is not None else ""))

    def _drop(self, key: tuple[str, int], reader: _Reader) -> None:
        readers = self._readers.get(key, [])
        if reader in readers:
            readers.remove(reader)
        if reader.task is not None and reader.task is not asyncio.current_task():
            reader.task.cancel()

    async def _pump(self, reader: _Reader, position: Position) -> None:
        """Send events while the link has credit; wait for credit or new events otherwise."""
        link, conn, events = reader.link, reader.conn, self.events
        nxt = await events.start(reader.partition, position)
        while not conn.closed and link.state & Endpoint.LOCAL_ACTIVE:
            if link.credit <= 0 or nxt >= events.count(reader.partition):
                await reader.wake.wait()
                reader.wake.clear()
                continue
            batch, nxt = await events.read(reader.partition, nxt, link.credit)
            if conn.closed or not link.state & Endpoint.LOCAL_ACTIVE:
                return
            info = events.last(reader.partition)
            now_ms = int(self.clock.time() * 1000)
            for event in batch:
                conn.send(link, event_message(event, info, now_ms))
            conn.flush()
