"""Azure's own fault-injection properties (AzIoTHub_FaultOperationType…), as the official SDKs'
end-to-end tests send them: the unmodified azure-iot-device SDK recovers and keeps its telemetry."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest
from azure.iot.device import IoTHubDeviceClient, Message
from azure.iot.device.exceptions import (
    ClientError,
    ConnectionDroppedError,
    ConnectionFailedError,
    NoConnectionError,
    OperationTimeout,
)

from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.faults import azure
from tests.helpers import https, publish_packet, raw_sas_connect, sas_device, wait_for


@pytest.fixture
def hub(standard_ports_emulator, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(standard_ports_emulator.ca_file))
    return standard_ports_emulator


def _ids(emu) -> list[str]:
    status, _, body = https(emu, "GET", "/_emulator/telemetry?limit=1000&deviceId=device1")
    assert status == 200
    return [m["systemProperties"].get("message-id") for m in body["messages"]]


def _message(**props: str) -> Message:
    msg = Message("{}", message_id=str(uuid.uuid4()))
    msg.custom_properties.update(props)
    return msg


def _send_as_an_application_does(client: IoTHubDeviceClient, msg: Message) -> None:
    """Send; when the SDK says the connection is gone or the connect the send started is refused
    (throttled), try again as an application does (duplicates are allowed). The SDK reconnects by
    itself only after a drop: a refused connect started by a send is not retried, the next send
    connects again. On a loaded machine the connect a send starts can also time out."""
    deadline = time.monotonic() + 90  # the SDK gives a connect that hangs 60 s (its watchdog)
    while True:
        try:
            client.send_message(msg)
            return
        except (ConnectionFailedError, ConnectionDroppedError, NoConnectionError, OperationTimeout) as exc:
            if time.monotonic() > deadline:
                raise AssertionError("not sent within 90 s") from exc
            time.sleep(0.5)  # the application's own retry interval


def _closes(emu) -> list[str]:
    return [e.reason or "" for e in emu.trace.events(device_id="device1") if e.type == "CLOSE"]


@pytest.mark.parametrize(
    "operation, reason",
    [("KillTcp", "boom"), ("ShutDownMqtt", "byebye"), ("InvokeThrottling", None)],
)
def test_sdk_recovers_and_keeps_its_telemetry(hub, operation, reason):
    client = IoTHubDeviceClient.create_from_connection_string(hub.connection_string(device="device1"), connection_retry_interval=1)
    client.connect()
    sent = []
    try:
        for _ in range(3):
            sent.append(_message())
            client.send_message(sent[-1])
        props = {azure.FAULT_TYPE: operation, azure.DURATION: "1"}
        if reason:
            props[azure.CLOSE_REASON] = reason
        sent.append(_message(**props))
        client.send_message(sent[-1])  # PUBACKed: the fault comes a second later
        wait_for(lambda: f"{operation} ({azure.FAULT_TYPE})" in _closes(hub), what=f"the {operation} disconnect")
        for _ in range(3):
            sent.append(_message())
            _send_as_an_application_does(client, sent[-1])
    except BaseException:  # what the hub saw, for the failure's report
        for e in hub.trace.events():
            print(f"trace {e.time:.3f} conn {e.conn} {e.direction} {e.type} {e.return_code} {e.reason or ''}")
        raise
    finally:
        # The SDK's shutdown raises when its socket is already gone (SSLEOFError on DISCONNECT):
        # its own cleanup, not what this test judges; it must not hide the body's failure.
        with contextlib.suppress(ClientError):
            client.shutdown()
    arrived = _ids(hub)
    assert {m.message_id for m in sent} <= set(arrived)  # nothing lost, duplicates allowed
    assert len({e.conn for e in hub.trace.events(device_id="device1") if e.type == "CONNACK" and e.return_code == 0}) == 2


def test_amqp_only_kind_is_answered_as_unsupported(emulator):
    c = raw_sas_connect(emulator)
    c.send(publish_packet("devices/device1/messages/events/AzIoTHub_FaultOperationType=KillAmqpConnection", b"x", packet_id=1))
    assert c.read_packet()[0] == 4
    c.send(publish_packet("devices/device1/messages/events/", b"y", packet_id=2))
    assert c.read_packet()[0] == 4  # still connected
    [fault] = [e for e in emulator.trace.events(device_id="device1") if e.type == "FAULT"]
    assert fault.reason.startswith("KillAmqpConnection: unsupported")
    c.close()


def test_a_setting_turns_them_off():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, azure_fault_properties=False) as emu:
        dev = sas_device(emu)
        assert dev.connect() == 0
        topic = f"devices/device1/messages/events/{azure.FAULT_TYPE}=KillTcp&{azure.DELAY}=0"
        first = dev.publish(topic, b"x")
        wait_for(lambda: first in dev.acked)
        second = dev.publish("devices/device1/messages/events/", b"y")
        wait_for(lambda: second in dev.acked)
        assert not dev.disconnected.is_set() and not any(e.type == "FAULT" for e in emu.trace.events())
        dev.close()


def test_parse():
    assert azure.parse({"other": "1"}) is None
    plan = azure.parse({azure.FAULT_TYPE: "KillTcp"})
    assert plan == azure.AzurePlan("KillTcp", True, "reset", None, 1.0, 5.0)
    plan = azure.parse({azure.FAULT_TYPE: "KillTcp", azure.CLOSE_REASON: "byebye", azure.DELAY: "0", azure.DURATION: "2"})
    assert (plan.how, plan.delay, plan.duration) == ("close", 0.0, 2.0)
    assert azure.parse({azure.FAULT_TYPE: "InvokeAuthError"}).refuse_code == 5
    assert azure.parse({azure.FAULT_TYPE: "InvokeMaxMessageQuota"}).refuse_code == 3
    assert azure.parse({azure.FAULT_TYPE: "invokethrottling", azure.CLOSE_REASON: "boom"}).how == "reset"
    bad = azure.parse({azure.FAULT_TYPE: "ShutDownMqtt", azure.DELAY: "soon", azure.DURATION: "-4"})
    assert (bad.delay, bad.duration) == (1.0, 5.0) and "DelayInSecs" in bad.note and "DurationInSecs" in bad.note
    assert not azure.parse({azure.FAULT_TYPE: "KillAmqpCBSLinkReq"}).supported
    assert "not a fault IoT Hub knows" in azure.parse({azure.FAULT_TYPE: "Explode"}).note
