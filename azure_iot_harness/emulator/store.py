"""SQLite state: identities and the telemetry log, with group commit.

One connection lives on one thread. Work arrives as jobs; the thread runs every job that is
waiting, commits once, and only then completes the jobs' futures. A QoS 1 PUBLISH is
acknowledged when its future completes, so an acknowledged message is on disk, yet a burst
of messages costs one commit (and one fsync with durability "full"), not one each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .protocol.messages import Telemetry

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    device_id TEXT NOT NULL,
    module_id TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    PRIMARY KEY (device_id, module_id)
);
CREATE TABLE IF NOT EXISTS telemetry (
    seq INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    module_id TEXT,
    enqueued_time TEXT NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    system_properties TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_device ON telemetry (device_id, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_STOP = object()


class Store:
    def __init__(self, path: Path | None, *, durability: str = "full") -> None:
        """`path` None keeps everything in memory (tests, `--in-memory`)."""
        self.path = path
        self.durability = durability
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._telemetry_listeners: list[Callable[[list[tuple[int, Telemetry]]], None]] = []
        self._schemas: list[str] = [_SCHEMA]
        # The last telemetry sequence number given (store thread only). The store numbers the
        # rows itself rather than by AUTOINCREMENT, which rewrites sqlite_sequence with every
        # insert (a page more per commit); numbers are never reused: a clear keeps the last one
        # in `counters`, and data folders made with AUTOINCREMENT keep their sqlite_sequence.
        self._last_seq = 0

    def add_schema(self, sql: str) -> None:
        """More tables, for a subsystem that keeps its own state (`CREATE TABLE IF NOT EXISTS`).
        Must be called before start()."""
        if self._thread is not None:
            raise RuntimeError("add_schema() after the store started")
        self._schemas.append(sql)

    # ---- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="azure-iot-harness-store", daemon=True)
        self._thread.start()
        await ready

    async def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        for sql in self._schemas:
            conn.executescript(sql)
        self._last_seq = _last_telemetry_seq(conn)
        return conn

    def _run(self, ready: asyncio.Future) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            loop.call_soon_threadsafe(_settle, [(ready, None, exc)])
            return
        loop.call_soon_threadsafe(_settle, [(ready, None, None)])
        stopping = False
        while not stopping:
            batch = [self._jobs.get()]
            while True:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            done: list[tuple[asyncio.Future, Any, BaseException | None]] = []
            committed: list[tuple[int, Telemetry]] = []
            conn.execute("BEGIN")
            first_seq = self._last_seq
            inserts: list[_Insert] = []  # telemetry in a row: one executemany
            for job in batch:
                if job is _STOP:
                    stopping = True
                    continue
                if type(job) is _Insert:
                    inserts.append(job)
                    continue
                if inserts:
                    self._last_seq = _insert_telemetry(conn, inserts, done, committed, self._last_seq)
                    inserts = []
                fn, fut, savepoint = job
                if savepoint:
                    conn.execute("SAVEPOINT job")
                try:
                    result = fn(conn)
                except Exception as exc:  # the job's error goes to its caller
                    if savepoint:
                        conn.execute("ROLLBACK TO job")
                    done.append((fut, None, exc))
                else:
                    if savepoint:
                        conn.execute("RELEASE job")
                    done.append((fut, result, None))
                    if isinstance(result, _Appended):
                        committed.append((result.seq, result.telemetry))
            if inserts:
                self._last_seq = _insert_telemetry(conn, inserts, done, committed, self._last_seq)
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                log.error("store commit failed: %s", exc)
                self._last_seq = first_seq  # nothing of it was stored
                done = [(fut, None, exc) for fut, _, _ in done]
                committed = []
            loop.call_soon_threadsafe(self._complete, done, committed)
        conn.close()

    def _complete(self, done: list, committed: list[tuple[int, Telemetry]]) -> None:
        _settle(done)
        if committed:
            for listener in list(self._telemetry_listeners):
                try:
                    listener(committed)
                except Exception:
                    log.exception("telemetry listener failed")

    def submit(self, fn: Callable[[sqlite3.Connection], T], *, savepoint: bool = True) -> asyncio.Future[T]:
        """Run fn(conn) on the store thread; the future completes after the commit.

        A job that fails is rolled back on its own (a savepoint); a job of one statement, which
        cannot half-fail, may skip that (`savepoint=False`): it is the per-message path.
        """
        fut = self._future()
        self._jobs.put((fn, fut, savepoint))
        return fut

    def _future(self) -> asyncio.Future:
        if self._thread is None or self._loop is None:
            raise RuntimeError("store is not started")
        return self._loop.create_future()

    # ---- identities ---------------------------------------------------------------------

    async def load_identities(self) -> list[dict]:
        rows = await self.submit(lambda c: c.execute("SELECT doc FROM identities").fetchall())
        return [json.loads(doc) for (doc,) in rows]

    def put_identity(self, doc: dict, *, also: Callable[[sqlite3.Connection], None] | None = None) -> asyncio.Future[None]:
        """`also`: another write that commits with this one, or with neither (one job, one
        savepoint): DPS's registration record with the device it created."""
        key = (doc["deviceId"], doc.get("moduleId") or "")
        text = json.dumps(doc)
        write = _statement("INSERT OR REPLACE INTO identities (device_id, module_id, doc) VALUES (?, ?, ?)", (*key, text))
        if also is None:
            return self.submit(write)

        def both(c: sqlite3.Connection) -> None:
            write(c)
            also(c)

        return self.submit(both)

    def delete_identity(self, device_id: str, module_id: str | None = None) -> asyncio.Future[None]:
        def delete(c: sqlite3.Connection) -> None:
            if module_id is None:  # a device takes its modules with it
                c.execute("DELETE FROM identities WHERE device_id = ?", (device_id,))
            else:
                c.execute("DELETE FROM identities WHERE device_id = ? AND module_id = ?", (device_id, module_id))

        return self.submit(delete)

    # ---- telemetry ----------------------------------------------------------------------

    def append_telemetry(self, t: Telemetry, texts: tuple[str, str] | None = None) -> asyncio.Future[_Appended]:
        """Store a message; `texts`: the JSON of its properties and system properties, when
        the caller made them already (the hub's sessions do, once per topic)."""
        props, sysprops = texts or (json.dumps(t.properties), json.dumps(t.system_properties))
        fut = self._future()
        self._jobs.put(_Insert(_row(t, props, sysprops), t, fut))
        return fut

    def append_telemetry_then(self, t: Telemetry, texts: tuple[str, str], then: Callable[[BaseException | None], None]) -> None:
        """Store a message and call `then(None)` on the event loop right after its commit (or
        `then(error)`): the per-message path of a QoS 1 PUBLISH, without a future, its done
        callback and the loop pass each of those takes."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("store is not started")
        self._jobs.put(_Insert(_row(t, *texts), t, _Then(then)))

    def read_telemetry(
        self, *, after: int = 0, device_id: str | None = None, limit: int = 1000
    ) -> asyncio.Future[list[tuple[int, Telemetry]]]:
        sql = "SELECT seq, device_id, module_id, enqueued_time, body, properties, system_properties FROM telemetry WHERE seq > ?"
        args: list[Any] = [after]
        if device_id is not None:
            sql += " AND device_id = ?"
            args.append(device_id)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        return self.submit(lambda c: [_row_to_telemetry(r) for r in c.execute(sql, args).fetchall()])

    def last_telemetry_seq(self) -> asyncio.Future[int]:
        return self.submit(lambda c: c.execute("SELECT COALESCE(MAX(seq), 0) FROM telemetry").fetchone()[0])

    def clear_telemetry(self) -> asyncio.Future[None]:
        """Delete every stored message; the sequence numbers go on from the last one."""

        def clear(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM telemetry")
            conn.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('telemetry', ?)", (self._last_seq,))

        return self.submit(clear)

    def add_telemetry_listener(self, fn: Callable[[list[tuple[int, Telemetry]]], None]) -> None:
        self._telemetry_listeners.append(fn)

    def remove_telemetry_listener(self, fn: Callable[[list[tuple[int, Telemetry]]], None]) -> None:
        if fn in self._telemetry_listeners:
            self._telemetry_listeners.remove(fn)


_INSERT_TELEMETRY = (
    "INSERT INTO telemetry (seq, device_id, module_id, enqueued_time, body, properties, system_properties)"
    " VALUES (?, ?, NULLIF(?, ''), ?, ?, ?, ?)"
)


def _row(t: Telemetry, props: str, sysprops: str) -> tuple:
    """A message's parameters for `_INSERT_TELEMETRY`. Only str, int, float and bytearray go
    to SQLite as they are; None and bytes take Python's sqlite3 adapter lookup (two failed
    attribute lookups each, ~6 k instructions a message). So: '' for no module (NULLIF makes
    it NULL) and the body as a bytearray (a BLOB all the same)."""
    return (t.device_id, t.module_id or "", t.enqueued_time, bytearray(t.body), props, sysprops)


class _Then:
    """A callback that stands where a job's future would: called with the job's error or None."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[BaseException | None], None]) -> None:
        self.fn = fn


class _Insert:
    """A telemetry insert waiting for the store thread (the per-message job, without a closure)."""

    __slots__ = ("row", "telemetry", "fut")

    def __init__(self, row: tuple, telemetry: Telemetry, fut: asyncio.Future | _Then) -> None:
        self.row, self.telemetry, self.fut = row, telemetry, fut


def _insert_telemetry(
    conn: sqlite3.Connection, jobs: list[_Insert], done: list, committed: list[tuple[int, Telemetry]], last_seq: int
) -> int:
    """Insert consecutive messages with one executemany (one statement prepared and stepped per
    row in C, not a Python call per message), numbered from `last_seq` + 1; the last number
    used is returned. A row that fails fails its job only (its number goes to the next one):
    what went in before it stays, what follows is tried again."""
    before = conn.total_changes
    error: sqlite3.Error | None = None
    try:
        conn.executemany(_INSERT_TELEMETRY, [(last_seq + i, *job.row) for i, job in enumerate(jobs, 1)])
    except sqlite3.Error as exc:
        error = exc
    inserted = conn.total_changes - before
    for i, job in enumerate(jobs[:inserted], 1):
        appended = _Appended(last_seq + i, job.telemetry)
        done.append((job.fut, appended, None))
        committed.append((appended.seq, job.telemetry))
    last_seq += inserted
    if error is not None:
        done.append((jobs[inserted].fut, None, error))
        if inserted + 1 < len(jobs):
            return _insert_telemetry(conn, jobs[inserted + 1 :], done, committed, last_seq)
    return last_seq


def _last_telemetry_seq(conn: sqlite3.Connection) -> int:
    """The last sequence number a data folder gave: its newest message, the number kept when it
    was cleared, or (folders from before the store numbered rows) AUTOINCREMENT's."""
    last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM telemetry").fetchone()[0]
    row = conn.execute("SELECT value FROM counters WHERE name = 'telemetry'").fetchone()
    if row is not None:
        last = max(last, row[0])
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'").fetchone()
    except sqlite3.OperationalError:  # no table has AUTOINCREMENT
        row = None
    if row is not None:
        last = max(last, row[0])
    return last


class _Appended:
    __slots__ = ("seq", "telemetry")

    def __init__(self, seq: int, telemetry: Telemetry) -> None:
        self.seq = seq
        self.telemetry = telemetry


def _row_to_telemetry(row: Iterable[Any]) -> tuple[int, Telemetry]:
    seq, device_id, module_id, enqueued, body, props, sysprops = row
    return seq, Telemetry(device_id, module_id, bytes(body), json.loads(props), json.loads(sysprops), enqueued)


def _statement(sql: str, params: tuple = ()) -> Callable[[sqlite3.Connection], None]:
    """A store job of one statement whose result nobody reads."""

    def job(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return job


def _settle(done: Sequence[tuple[asyncio.Future | _Then, Any, BaseException | None]]) -> None:
    for fut, result, exc in done:
        if isinstance(fut, _Then):
            try:
                fut.fn(exc)
            except Exception:
                log.exception("store callback failed")
            continue
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
