"""The fault API over HTTP and from Python, with paho."""

from __future__ import annotations

from tests.helpers import https, sas_device, wait_for


def test_refuse_connect_over_http_then_back_in(emulator):
    status, _, fault = https(emulator, "POST", "/_emulator/faults", {"kind": "refuse-connect", "deviceId": "device1", "count": 1, "params": {"code": 5}})
    assert status == 201, fault
    assert fault["kind"] == "refuse-connect" and fault["params"] == {"code": 5} and fault["fired"] == 0
    assert https(emulator, "GET", "/_emulator/faults")[2] == [fault]
    dev = sas_device(emulator)
    assert dev.connect() == 5
    dev.close()
    assert https(emulator, "GET", "/_emulator/faults")[2] == []  # used up
    dev = sas_device(emulator)
    assert dev.connect() == 0
    dev.close()
    events = emulator.trace.events(device_id="device1")
    assert any(e.type == "FAULT" and e.reason.startswith("refuse-connect") for e in events)
    assert any(e.type == "CONNACK" and e.return_code == 5 for e in events)


def test_bad_fault_requests_get_400(emulator):
    for body in (
        {"kind": "no-such-kind"},
        {"kind": "refuse-connect", "params": {"code": 9}},
        {"kind": "refuse-connect", "params": {"colour": 1}},
        {"kind": "drop", "count": 0},
        {"kind": "drop", "durationSeconds": -1},
        {},
    ):
        status, _, answer = https(emulator, "POST", "/_emulator/faults", body)
        assert status == 400, (body, answer)
    assert https(emulator, "POST", "/_emulator/faults", {"kind": "drop"}, token="SharedAccessSignature sr=x&sig=y&se=1&skn=iothubowner")[0] == 401


def test_drop_now_resets_paho_which_reconnects(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    connects = []
    dev.client.on_connect = lambda c, u, f, rc: connects.append(rc)
    fault = emulator.faults.add("drop", device_id="device1", how="reset")
    wait_for(dev.disconnected.is_set, what="paho sees the drop")
    wait_for(lambda: connects == [0], what="paho back in")
    assert fault.fired == 1
    closes = [e for e in emulator.trace.events(device_id="device1") if e.type == "CLOSE"]
    assert closes[0].reason == f"fault {fault.id}: drop (reset)"
    dev.close()


def test_list_remove_clear(emulator):
    a = emulator.faults.add("withhold-puback", device_id="device1", count=3)
    b = emulator.faults.add("refuse-connect", duration=60, code=3)
    assert [f.id for f in emulator.faults.list()] == [a.id, b.id]
    assert https(emulator, "DELETE", f"/_emulator/faults/{a.id}")[0] == 204
    assert https(emulator, "DELETE", f"/_emulator/faults/{a.id}")[0] == 404
    assert [f["id"] for f in https(emulator, "GET", "/_emulator/faults")[2]] == [b.id]
    assert https(emulator, "DELETE", "/_emulator/faults")[0] == 204
    assert emulator.faults.list() == []
    kinds = {k["kind"] for k in https(emulator, "GET", "/_emulator/faults/kinds")[2]}
    assert {"drop", "refuse-connect", "withhold-puback", "dps-throttle", "hub-suspend"} <= kinds
