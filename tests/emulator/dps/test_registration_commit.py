"""A registration's device and its registration record reach the store as one job, so they
commit together (one fsync per group of registrations, not two in a row each), both or neither."""

from __future__ import annotations

import os

from azure_iot_harness.emulator.app import EmulatorThread
from tests.emulator.dps.helpers import RawDps, group_key, token


def test_a_new_devices_registration_is_one_store_job_with_its_device() -> None:
    loop = os.environ.get("AZURE_IOT_HARNESS_EVENT_LOOP", "auto")
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, event_loop=loop) as emu:
        store = emu.store
        jobs: list[object] = []
        submit = store.submit

        def counting(fn, **kw):  # the real store's submit, counted
            jobs.append(fn)
            return submit(fn, **kw)

        rid = "one-commit-device"
        dps = RawDps(emu, rid, token(emu, rid, group_key(rid)))
        store.submit = counting  # type: ignore[method-assign]  # counts this registration's store jobs only
        try:
            answer = dps.provision(rid)
        finally:
            del store.submit
            dps.close()
        assert answer["status"] == "assigned", answer
        assert emu.registry.get(rid) is not None
        assert emu.dps.state.registration(rid)["state"]["deviceId"] == rid
        assert len(jobs) == 1, f"{len(jobs)} store jobs (commits one after another) for one registration"
