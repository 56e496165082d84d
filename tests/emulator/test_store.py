"""The store's group commit: telemetry inserted in batches keeps each message's own outcome."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from azure_iot_harness.emulator.protocol.messages import Telemetry
from azure_iot_harness.emulator.store import Store


def _message(device_id: str | None, n: int) -> Telemetry:
    # device_id None breaks the table's NOT NULL: the one way to make a single insert fail.
    return Telemetry(device_id, None, f"m{n}".encode(), {}, {}, "2026-01-01T00:00:00.000Z")  # type: ignore[arg-type]


def test_a_failing_message_in_a_batch_fails_alone(tmp_path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "state.sqlite3")
        await store.start()
        try:
            gate = threading.Event()
            blocker = store.submit(lambda c: gate.wait(10))  # holds the store thread: what follows is one batch
            futs = [store.append_telemetry(_message(d, n)) for n, d in enumerate(["a", "b", None, "c", None, "d"])]
            gate.set()
            await blocker
            results = await asyncio.gather(*futs, return_exceptions=True)
            failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
            assert failed == [2, 4], results
            seqs = [r.seq for r in results if not isinstance(r, BaseException)]  # type: ignore[union-attr]
            stored = await store.read_telemetry()
            assert [(s, t.device_id, t.body) for s, t in stored] == list(zip(seqs, "abcd", [b"m0", b"m1", b"m3", b"m5"]))
            assert seqs == [1, 2, 3, 4]  # a failed row's number goes to the next one
        finally:
            await store.close()

    asyncio.run(main())


def test_listeners_see_each_committed_message_with_its_sequence_number(tmp_path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "state.sqlite3")
        seen: list[tuple[int, bytes]] = []
        store.add_telemetry_listener(lambda batch: seen.extend((s, t.body) for s, t in batch))
        await store.start()
        try:
            gate = threading.Event()
            blocker = store.submit(lambda c: gate.wait(10))
            futs = [store.append_telemetry(_message("dev", n)) for n in range(5)]
            gate.set()
            await blocker
            results = await asyncio.gather(*futs)
            assert seen == [(r.seq, f"m{n}".encode()) for n, r in enumerate(results)]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_callback_insert_is_called_after_its_commit_with_its_own_outcome(tmp_path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "state.sqlite3")
        await store.start()
        try:
            loop_thread = threading.get_ident()
            outcomes: dict[int, tuple[BaseException | None, int, int]] = {}
            done = asyncio.Event()

            def then(n: int):
                def stored(error: BaseException | None) -> None:
                    # On the loop, once committed: another connection sees the batch's three rows.
                    outcomes[n] = (error, threading.get_ident(), _rows(tmp_path / "state.sqlite3"))
                    if len(outcomes) == 4:
                        done.set()

                return stored

            gate = threading.Event()
            blocker = store.submit(lambda c: gate.wait(10))  # one batch: a failing row among good ones
            for n, (d, m) in enumerate([("a", None), (None, None), ("b", "mod"), ("c", None)]):
                t = Telemetry(d, m, f"m{n}".encode(), {}, {}, "2026-01-01T00:00:00.000Z")  # type: ignore[arg-type]
                store.append_telemetry_then(t, ("{}", "{}"), then(n))
            gate.set()
            await blocker
            await asyncio.wait_for(done.wait(), 10)
            assert [n for n, (e, _, _) in sorted(outcomes.items()) if e is not None] == [1]
            assert {tid for _, tid, _ in outcomes.values()} == {loop_thread}
            assert {rows for _, _, rows in outcomes.values()} == {3}
            stored = await store.read_telemetry()
            assert [(t.device_id, t.module_id, t.body) for _, t in stored] == [("a", None, b"m0"), ("b", "mod", b"m2"), ("c", None, b"m3")]
        finally:
            await store.close()

    asyncio.run(main())


def _rows(path) -> int:
    import sqlite3

    with sqlite3.connect(path) as c:
        return c.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]


def test_sequence_numbers_go_on_after_a_clear_and_a_restart(tmp_path) -> None:
    # Event Hubs readers keep offsets and sequence numbers: the store never gives one twice.
    path = tmp_path / "state.sqlite3"

    async def append(store: Store, n: int) -> list[int]:
        return [(await store.append_telemetry(_message("a", i))).seq for i in range(n)]

    async def main() -> None:
        store = Store(path)
        await store.start()
        try:
            assert await append(store, 3) == [1, 2, 3]
            await store.clear_telemetry()
            assert await append(store, 1) == [4]
            await store.clear_telemetry()
        finally:
            await store.close()
        store = Store(path)  # a restart: the folder is empty, its last number is kept
        await store.start()
        try:
            assert await store.read_telemetry() == []
            assert await append(store, 2) == [5, 6]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_data_folder_made_with_autoincrement_goes_on_from_its_last_number(tmp_path) -> None:
    # Folders from before the store numbered the rows itself: their table has AUTOINCREMENT,
    # and sqlite_sequence remembers numbers whose rows were cleared.
    path = tmp_path / "state.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE telemetry (seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, module_id TEXT,"
        " enqueued_time TEXT NOT NULL, body BLOB NOT NULL, properties TEXT NOT NULL, system_properties TEXT NOT NULL);"
    )
    conn.executemany(
        "INSERT INTO telemetry (device_id, enqueued_time, body, properties, system_properties) VALUES ('a', 't', x'00', '{}', '{}')",
        [()] * 7,
    )
    conn.execute("DELETE FROM telemetry")
    conn.commit()
    conn.close()

    async def main() -> None:
        store = Store(path)
        await store.start()
        try:
            assert (await store.append_telemetry(_message("a", 0))).seq == 8
        finally:
            await store.close()

    asyncio.run(main())
