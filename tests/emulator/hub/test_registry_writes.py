"""Registry writes: one device's writes run one at a time (a precondition is checked, then the
store awaited), different devices' writes do not wait for each other's commit."""

from __future__ import annotations

import asyncio
import threading

from azure_iot_harness.emulator.hub.registry import Registry
from azure_iot_harness.emulator.store import Store


class WatchedStore(Store):
    """A real store that notes which identities reached it."""

    def __init__(self) -> None:
        super().__init__(None)
        self.submitted: list[str] = []

    def put_identity(self, doc: dict, **kw) -> asyncio.Future[None]:
        self.submitted.append(doc["deviceId"])
        return super().put_identity(doc, **kw)


def _sas(device_id: str) -> dict:
    return {"deviceId": device_id, "authentication": {"type": "sas", "symmetricKey": {"primaryKey": None, "secondaryKey": None}}}


async def _until(cond, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def test_writes_to_different_devices_reach_the_store_together_and_one_devices_one_at_a_time() -> None:
    async def main() -> None:
        store = WatchedStore()
        await store.start()
        try:
            registry = Registry(store)
            gate = threading.Event()
            blocker = store.submit(lambda c: gate.wait(10))  # no commit completes until the gate opens
            writes = [asyncio.create_task(registry.put_device(_sas(d), if_match="*")) for d in ("a", "b", "c", "a")]
            both = await _until(lambda: sorted(store.submitted) == ["a", "b", "c"])
            await asyncio.sleep(0.05)
            seen = list(store.submitted)
            gate.set()
            await blocker
            results = await asyncio.gather(*writes)
            assert both, f"only {seen} reached the store while a commit was pending"
            assert sorted(seen) == ["a", "b", "c"]  # the second write of "a" waited for the first
            assert sorted(store.submitted) == ["a", "a", "b", "c"]
            assert results[3]["etag"] != results[0]["etag"] == results[1]["etag"]  # "a" written twice, in turn
            assert not registry._write_locks  # nobody holds or waits: nothing kept per device
        finally:
            await store.close()

    asyncio.run(main())
