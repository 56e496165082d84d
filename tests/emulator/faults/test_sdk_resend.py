"""An azure-iot-device SDK device whose PUBACK is withheld resends the message with DUP and the
same packet id once it is connected again, read from the packet trace."""

from __future__ import annotations

import threading

import pytest
from azure.iot.device import IoTHubDeviceClient, Message

from tests.helpers import https, wait_for


@pytest.fixture
def hub(standard_ports_emulator, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(standard_ports_emulator.ca_file))
    return standard_ports_emulator


def test_sdk_resends_with_dup_and_the_same_packet_id(hub):
    client = IoTHubDeviceClient.create_from_connection_string(hub.connection_string(device="device1"), connection_retry_interval=1)
    client.connect()
    try:
        hub.faults.add("withhold-puback", device_id="device1")
        sender = threading.Thread(target=client.send_message, args=(Message("kept"),))
        sender.start()

        def publishes():
            return [e for e in hub.trace.events(device_id="device1") if e.type == "PUBLISH" and e.direction == "in"]

        wait_for(lambda: publishes(), what="the first PUBLISH")
        hub.faults.add("drop", device_id="device1", how="reset")  # no PUBACK came: the link goes
        sender.join(30)
        assert not sender.is_alive(), "send_message never completed"
    finally:
        client.shutdown()
    first, resent = publishes()[:2]
    assert (first.dup, resent.dup) == (False, True)
    assert first.packet_id == resent.packet_id and first.topic == resent.topic and first.conn != resent.conn
    acks = [e for e in hub.trace.events(device_id="device1") if e.type == "PUBACK" and e.direction == "out"]
    assert [(a.conn, a.packet_id) for a in acks] == [(resent.conn, resent.packet_id)]
    status, _, body = https(hub, "GET", "/_emulator/telemetry?deviceId=device1")
    assert [m["body"] for m in body["messages"]] == ["kept", "kept"]  # at least once: stored both times
