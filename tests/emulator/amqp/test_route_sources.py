"""Routing sources besides telemetry, read with azure-eventhub from the built-in endpoint: twin
change, device lifecycle and connection state events, each switched on by its setting."""

from __future__ import annotations

import json
import threading

from azure.eventhub import EventHubConsumerClient

from azure_iot_harness.emulator.amqp.partitioning import partition_of
from azure_iot_harness.emulator.app import EmulatorThread
from tests.helpers import https, sas_device, wait_for


def _events(emu, device: str, want: int) -> list:
    got: list = []
    client = EventHubConsumerClient.from_connection_string(emu.eventhub_connection_string(emulator=True), consumer_group="$Default")
    worker = threading.Thread(
        target=client.receive,
        kwargs={"on_event": lambda c, e: got.append(e), "partition_id": str(partition_of(device, 4)), "starting_position": "-1"},
        daemon=True,
    )
    worker.start()
    try:
        wait_for(lambda: len(got) >= want, 30, what=f"{want} events", seen=lambda: [e.system_properties.get(b"iothub-message-source") for e in got])
    finally:
        client.close()
        worker.join(10)
    return got


def test_twin_lifecycle_and_connection_events() -> None:
    settings = dict(route_twin_change_events=True, route_device_lifecycle_events=True, route_device_connection_state_events=True)
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, **settings) as emu:
        device = "routed1"
        assert https(emu, "PUT", f"/devices/{device}?api-version=2021-04-12", {"deviceId": device})[0] == 200
        dev = sas_device(emu, device)
        assert dev.connect() == 0
        dev.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps({"firmware": "1.2"}))
        wait_for(lambda: emu.hub.twins.get((device, None))["reported"].get("firmware") == "1.2", what="the reported patch")
        dev.close()
        events = _events(emu, device, 4)
    mine = [e for e in events if e.properties.get(b"deviceId") == device.encode()]
    by_source = {e.system_properties[b"iothub-message-source"]: e for e in mine}
    assert set(by_source) == {b"deviceLifecycleEvents", b"deviceConnectionStateEvents", b"twinChangeEvents"}
    created = by_source[b"deviceLifecycleEvents"]
    assert created.properties[b"opType"] == b"createDeviceIdentity" and created.properties[b"hubName"] == b"localhost"
    twin = by_source[b"twinChangeEvents"]
    assert twin.properties[b"opType"] == b"updateTwin"
    body = json.loads(twin.body_as_str())
    assert body["properties"]["reported"]["firmware"] == "1.2" and body["properties"]["reported"]["$version"] == 2
    assert [e.properties[b"opType"] for e in mine if e.system_properties[b"iothub-message-source"] == b"deviceConnectionStateEvents"][:1] == [b"deviceConnected"]


def test_sources_are_off_by_default(emulator) -> None:
    device = "quiet1"
    assert https(emulator, "PUT", f"/devices/{device}?api-version=2021-04-12", {"deviceId": device})[0] == 200
    dev = sas_device(emulator, device)
    assert dev.connect() == 0
    mid = dev.publish(f"devices/{device}/messages/events/", "only telemetry")
    wait_for(lambda: mid in dev.acked, what="PUBACK")
    dev.close()
    events = _events(emulator, device, 1)
    assert [e.system_properties[b"iothub-message-source"] for e in events] == [b"Telemetry"]
