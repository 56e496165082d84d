"""DPS state: enrollments, enrollment groups and registration records, in SQLite.

Kept in memory (every registration reads them) and written through to the store, like the
identity registry. Registration ids and group ids are case-insensitive: they are keyed in lower
case, and the documents keep the case they were given in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from ..store import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dps_enrollments (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS dps_registrations (
    registration_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
"""

INDIVIDUAL, GROUP = "individual", "group"


def enrollment_of(state: dict) -> tuple[str, str]:
    """(kind, lower-case key) of the enrollment a registration state was assigned through."""
    block = state.get("symmetricKey") or state.get("x509") or {}
    group = block.get("enrollmentGroupId")
    return (GROUP, group.lower()) if group else (INDIVIDUAL, state["registrationId"].lower())


class DpsState:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._enrollments: dict[str, dict[str, dict]] = {INDIVIDUAL: {}, GROUP: {}}
        # registration id (lower case) → {"state": the registration state, "initialHub": first hub}
        self._registrations: dict[str, dict] = {}
        store.add_schema(_SCHEMA)

    async def load(self) -> None:
        def read(c):
            return (
                c.execute("SELECT kind, id, doc FROM dps_enrollments").fetchall(),
                c.execute("SELECT registration_id, doc FROM dps_registrations").fetchall(),
            )

        enrollments, registrations = await self.store.submit(read)
        for kind, key, doc in enrollments:
            self._enrollments[kind][key] = json.loads(doc)
        for key, doc in registrations:
            self._registrations[key] = json.loads(doc)

    # ---- enrollments -------------------------------------------------------------------------

    def enrollment(self, kind: str, key: str) -> dict | None:
        return self._enrollments[kind].get(key.lower())

    def enrollments(self, kind: str) -> list[dict]:
        return [self._enrollments[kind][k] for k in sorted(self._enrollments[kind])]

    async def put_enrollment(self, kind: str, key: str, doc: dict) -> None:
        text = json.dumps(doc)
        await self.store.submit(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO dps_enrollments (kind, id, doc) VALUES (?, ?, ?)", (kind, key.lower(), text)
            )
        )
        self._enrollments[kind][key.lower()] = doc

    async def delete_enrollment(self, kind: str, key: str) -> None:
        """Delete an enrollment and, as DPS does, the registration records made through it (a new
        enrollment for the same device starts afresh: initial assignment, its own initial twin)."""
        records = [k for k, r in self._registrations.items() if enrollment_of(r["state"]) == (kind, key.lower())]

        def delete(c):
            c.execute("DELETE FROM dps_enrollments WHERE kind = ? AND id = ?", (kind, key.lower()))
            c.executemany("DELETE FROM dps_registrations WHERE registration_id = ?", [(r,) for r in records])

        await self.store.submit(delete)
        self._enrollments[kind].pop(key.lower(), None)
        for record in records:
            self._registrations.pop(record, None)

    # ---- registration records ----------------------------------------------------------------

    def registration(self, registration_id: str) -> dict | None:
        """The record: {"state": registration state, "initialHub": hub of the first assignment}."""
        return self._registrations.get(registration_id.lower())

    def registrations(self) -> list[dict]:
        return [self._registrations[k] for k in sorted(self._registrations)]

    async def put_registration(self, record: dict) -> None:
        await self.store.submit(self.registration_write(record))
        self.remember_registration(record)

    def registration_write(self, record: dict) -> Callable[[sqlite3.Connection], None]:
        """The store write of a registration record, for a job that commits it with another
        (its device); `remember_registration` once that committed."""
        key = record["state"]["registrationId"].lower()
        text = json.dumps(record)

        def write(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR REPLACE INTO dps_registrations (registration_id, doc) VALUES (?, ?)", (key, text))

        return write

    def remember_registration(self, record: dict) -> None:
        self._registrations[record["state"]["registrationId"].lower()] = record

    async def delete_registration(self, registration_id: str) -> None:
        key = registration_id.lower()
        await self.store.submit(lambda c: c.execute("DELETE FROM dps_registrations WHERE registration_id = ?", (key,)))
        self._registrations.pop(key, None)
