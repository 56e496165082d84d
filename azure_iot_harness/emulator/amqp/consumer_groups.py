"""`ConsumerGroups`: the consumer groups of the Event Hubs-compatible endpoint, as IoT Hub's
management plane manages them (`…/eventHubEndpoints/events/ConsumerGroups/{name}`).

`$Default` always exists and cannot be deleted; the groups the settings name exist from every
start; the others are created and deleted through the management routes and kept in the store,
so they survive a restart. A receiver may use a group the moment it is created; deleting a group
detaches its receivers (`on_deleted`).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable

from ...errors import ServiceError
from ..clock import Clock
from ..store import Store

DEFAULT_GROUP = "$Default"
MAX_GROUPS = 20  # IoT Hub's limit per hub (standard tiers), $Default included
RESOURCE_TYPE = "Microsoft.Devices/IotHubs/EventHubEndpoints/ConsumerGroups"
# Event Hubs' rule: letters, digits, periods, hyphens and underscores, starting and ending with a letter or digit.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?")

SCHEMA = """
CREATE TABLE IF NOT EXISTS eventhub_consumer_groups (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    doc TEXT NOT NULL
);
"""


def management_error(status: int, code: str, message: str) -> ServiceError:
    return ServiceError(status, code, message)


# Since api-version 2021-03-31 a PUT names the group in its body too; IoT Hub answers a body
# without it with 400007 (its management plane's codes are numbers).
BODY_NAME_FROM = "2021-03-31"
NAME_REQUIRED = "400007"


def check_body(body: dict, api_version: str) -> None:
    props = body.get("properties")
    name = props.get("name") if isinstance(props, dict) else None
    if api_version >= BODY_NAME_FROM and not (isinstance(name, str) and name):
        raise management_error(400, NAME_REQUIRED, "Consumer group name in the request body should not be null or empty.")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise management_error(
            400, "InvalidConsumerGroupName",
            f"consumer group name {name!r}: 1-50 letters, digits, '.', '-' or '_', starting and ending with a letter or digit",
        )  # fmt: skip
    return name


def describe(record: dict, parent_id: str) -> dict:
    """A group as the management plane describes it (EventHubConsumerGroupInfo)."""
    return {
        "properties": {"created": record["created"]},
        "id": f"{parent_id}/eventHubEndpoints/events/ConsumerGroups/{urllib.parse.quote(record['name'], safe='')}",
        "name": record["name"],
        "type": RESOURCE_TYPE,
        "etag": record["etag"],
    }


class ConsumerGroups:
    def __init__(self, store: Store, clock: Clock, configured: Iterable[str] = ()) -> None:
        self.store = store
        self.clock = clock
        self._configured = [DEFAULT_GROUP, *configured]
        self._records: dict[str, dict] = {}  # lower-case name → {name, created, etag, stored}
        self._deleted: list[Callable[[str], None]] = []
        self._lock = asyncio.Lock()
        store.add_schema(SCHEMA)

    async def load(self) -> None:
        rows = await self.store.submit(lambda c: c.execute("SELECT doc FROM eventhub_consumer_groups").fetchall())
        records = [json.loads(doc) for (doc,) in rows]
        for name in self._configured:
            if name.lower() not in {r["name"].lower() for r in records}:
                records.append(self._new(name, stored=False))
        self._records = {r["name"].lower(): r for r in records}

    def _new(self, name: str, *, stored: bool) -> dict:
        created = email.utils.format_datetime(self.clock.now(), usegmt=True)
        etag = base64.b64encode(int(self.clock.time() * 1000).to_bytes(8, "big")).decode()
        return {"name": name, "created": created, "etag": etag, "stored": stored}

    # ---- reading ---------------------------------------------------------------------------

    def name_of(self, name: str) -> str | None:
        """The group's name as created, matched case-insensitively; None if there is none."""
        record = self._records.get(name.lower())
        return record["name"] if record is not None else None

    def list(self) -> list[dict]:
        return sorted(self._records.values(), key=lambda r: (r["name"] != DEFAULT_GROUP, r["name"].lower()))

    def get(self, name: str) -> dict:
        record = self._records.get(name.lower())
        if record is None:
            raise management_error(404, "ConsumerGroupNotFound", f"consumer group {name!r} not found on the events endpoint")
        return record

    # ---- writing ---------------------------------------------------------------------------

    async def create(self, name: str) -> dict:
        """Create the group (a PUT of an existing one answers it unchanged)."""
        check_name(name)
        async with self._lock:
            existing = self._records.get(name.lower())
            if existing is not None:
                return existing
            if len(self._records) >= MAX_GROUPS:
                raise management_error(400, "ConsumerGroupLimitExceeded", f"the events endpoint has its maximum of {MAX_GROUPS} consumer groups")
            record = self._new(name, stored=True)
            doc = json.dumps(record)
            await self.store.submit(lambda c: c.execute("INSERT OR REPLACE INTO eventhub_consumer_groups (name, doc) VALUES (?, ?)", (name, doc)))
            self._records[name.lower()] = record
            return record

    async def delete(self, name: str) -> None:
        async with self._lock:
            record = self.get(name)
            if record["name"] == DEFAULT_GROUP:
                raise management_error(400, "ConsumerGroupDeleteNotAllowed", f"the {DEFAULT_GROUP} consumer group cannot be deleted")
            if record["stored"]:
                await self.store.submit(lambda c: c.execute("DELETE FROM eventhub_consumer_groups WHERE name = ?", (record["name"],)))
            del self._records[name.lower()]
        for callback in list(self._deleted):
            callback(record["name"])

    def on_deleted(self, callback: Callable[[str], None]) -> None:
        self._deleted.append(callback)
