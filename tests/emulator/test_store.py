"""The store's group commit: telemetry inserted in batches keeps each message's own outcome."""

from __future__ import annotations

import asyncio
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
            assert seqs == sorted(set(seqs))
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
