"""The unmodified Node.js back-end SDKs over AMQP: @azure/event-hubs reading the Event
Hubs-compatible endpoint, azure-iothub's `Client.send` and `getFeedbackReceiver`."""

from __future__ import annotations

import json
import uuid

import paho.mqtt.client as mqtt

from azure_iot_harness.emulator.amqp.partitioning import partition_of
from azure_iot_harness.emulator.app import Emulator
from tests.helpers import device_token, wait_for
from tests.node.test_node_sdks import node, run_script  # noqa: F401  # `node` is the fixture


def _device(emu: Emulator, device: str = "device1") -> mqtt.Client:
    client = mqtt.Client(client_id=device, clean_session=False)
    client.username_pw_set(f"{emu.host}/{device}/?api-version=2021-04-12", device_token(emu, device))
    client.tls_set(ca_certs=str(emu.ca_file))
    client.messages = []  # type: ignore[attr-defined]
    client.on_message = lambda c, u, m: client.messages.append(m)  # type: ignore[attr-defined]
    client.connect(emu.config.bind, emu.mqtt_port)
    client.loop_start()
    return client


def test_event_hubs_sdk_reads_telemetry(node, standard_ports_emulator) -> None:  # noqa: F811
    emu = standard_ports_emulator
    client = _device(emu)
    try:
        infos = [client.publish("devices/device1/messages/events/", f"node {i}", qos=1) for i in range(3)]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    out = run_script(
        node,
        "eh_receive.js",
        emu,
        EVENTHUB_CONNECTION_STRING=emu.eventhub_connection_string(emulator=True),
        PARTITION_ID=str(partition_of("device1", 4)),
    )
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(e["body"], e["deviceId"]) for e in events][-3:] == [(f"node {i}", "device1") for i in range(3)]
    assert [e["sequenceNumber"] for e in events] == list(range(len(events)))


def test_iothub_client_send_and_feedback(node, standard_ports_emulator) -> None:  # noqa: F811
    emu = standard_ports_emulator
    client = _device(emu)
    client.subscribe("devices/device1/messages/devicebound/#", qos=1)
    try:
        wait_for(lambda: (s := emu.hub.sessions.get(("device1", None))) and s.state.subscriptions, what="subscribed")
        mid = f"node-{uuid.uuid4().hex[:8]}"
        out = run_script(node, "c2d_feedback.js", emu, DEVICE_ID="device1", MESSAGE_ID=mid)
        record = json.loads(out.splitlines()[-2])
        assert record["statusCode"] == "Success" and record["deviceId"] == "device1"
        msg = client.messages[0]  # type: ignore[attr-defined]
        assert msg.payload == b"from node" and "origin=node" in msg.topic and f"%24.mid={mid}" in msg.topic
    finally:
        client.disconnect()
        client.loop_stop()


def test_iothub_feedback_for_an_expired_message(node, standard_ports_emulator) -> None:  # noqa: F811
    out = run_script(node, "c2d_feedback.js", standard_ports_emulator, DEVICE_ID="x509-device1", MESSAGE_ID="node-expired", EXPIRY_MS="1500")
    assert json.loads(out.splitlines()[-2])["statusCode"] == "Expired"


def test_iothub_client_over_websocket(node, standard_ports_emulator) -> None:  # noqa: F811
    """AmqpWs: AMQP over `/$iothub/websocket` (subprotocol AMQPWSB10) on the HTTPS port."""
    out = run_script(node, "c2d_feedback.js", standard_ports_emulator, DEVICE_ID="x509-device1", MESSAGE_ID="node-ws", EXPIRY_MS="1500", WEBSOCKET="1")
    assert json.loads(out.splitlines()[-2])["statusCode"] == "Expired"
