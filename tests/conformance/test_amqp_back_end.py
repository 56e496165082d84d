"""The conformance targets' back end: telemetry read with azure-eventhub from the endpoint IoT
Hub's redirect names, and C2D sent over AMQP — the code the Azure target runs, here against the
emulator over real sockets and TLS."""

from __future__ import annotations

import ssl
import uuid

import pytest

from azure_iot_harness.conformance.amqp import AmqpC2D, AmqpError, ServiceCredentials, event_hubs_connection_string
from azure_iot_harness.conformance.targets import amqp_back_end
from azure_iot_harness.emulator.app import Emulator
from azure_iot_harness.errors import HarnessError
from tests.helpers import https, sas_device, wait_for


def _device(emu: Emulator) -> str:
    device = f"be-{uuid.uuid4().hex[:8]}"
    assert https(emu, "PUT", f"/devices/{device}?api-version=2021-04-12", {"deviceId": device})[0] == 200
    return device


def _publish(emu: Emulator, device: str, body: str, props: str = "") -> None:
    dev = sas_device(emu, device)
    assert dev.connect() == 0
    mid = dev.publish(f"devices/{device}/messages/events/{props}", body)
    wait_for(lambda: mid in dev.acked, what="PUBACK")
    dev.close()


def _context(emu: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emu.ca_file))


def test_the_redirect_names_the_event_hubs_compatible_endpoint(emulator: Emulator) -> None:
    creds = ServiceCredentials.parse(emulator.connection_string(policy="service"))
    text, endpoint = event_hubs_connection_string(creds, _context(emulator), port=emulator.amqp_port)
    assert f"EntityPath={emulator.eventhub_name}" in text and "SharedAccessKeyName=service" in text
    assert endpoint == f"sb://{emulator.host}:{emulator.amqp_port}"


def test_a_wrong_key_is_refused_on_the_way_to_the_redirect(emulator: Emulator) -> None:
    creds = ServiceCredentials.parse(emulator.connection_string(policy="service"))
    wrong = ServiceCredentials(creds.host, creds.policy, "A" * 43 + "=")
    with pytest.raises(AmqpError) as refused:
        event_hubs_connection_string(wrong, _context(emulator), port=emulator.amqp_port)
    assert refused.value.condition == "amqp:unauthorized-access"


def test_telemetry_and_c2d_through_the_back_end(emulator: Emulator) -> None:
    device = _device(emulator)
    _publish(emulator, device, "before")  # enqueued before the reader: not read
    telemetry, c2d = amqp_back_end(emulator.connection_string(policy="iothubowner"), str(emulator.ca_file), port=emulator.amqp_port)
    try:
        start = telemetry.position()
        _publish(emulator, device, '{"t": 1}', "unit=celsius&alert=no")
        seen: list[dict] = []
        wait_for(lambda: seen.extend(telemetry.read(start)[0]) or seen, what="the event")
        assert len(seen) == 1, seen
        event = seen[0]
        assert (event["deviceId"], event["body"], event["properties"]) == (device, '{"t": 1}', {"unit": "celsius", "alert": "no"})
        assert event["systemProperties"]["iothub-message-source"] == "Telemetry"

        receiver = sas_device(emulator, device)
        assert receiver.connect() == 0
        receiver.client.subscribe(f"devices/{device}/messages/devicebound/#", qos=1)
        wait_for(lambda: emulator.hub.sessions.get((device, None)) and emulator.hub.sessions[(device, None)].state.subscriptions, what="subscribed")
        message_id = c2d.send(device, "reboot", {"reason": "update"}, ack="full")
        wait_for(lambda: receiver.messages, what="the C2D message")
        topic = receiver.messages[0].topic
        assert receiver.messages[0].payload == b"reboot" and "reason=update" in topic and f"%24.mid={message_id}" in topic, topic
        receiver.close()

        with pytest.raises(AmqpError) as refused:
            c2d.send("no-such-device", "x")
        assert refused.value.condition == "amqp:not-found"
        c2d.send(device, "after a refusal")  # the sender carries on
    finally:
        telemetry.close()
        c2d.close()


def test_a_c2d_sender_with_a_wrong_key_is_refused(emulator: Emulator) -> None:
    creds = ServiceCredentials.parse(emulator.connection_string(policy="service"))
    sender = AmqpC2D(ServiceCredentials(creds.host, creds.policy, "A" * 43 + "="), _context(emulator), port=emulator.amqp_port)
    with pytest.raises(AmqpError):
        sender.send(_device(emulator), "x")
    sender.close()


def test_an_unreachable_amqp_endpoint_is_one_clear_error(emulator: Emulator) -> None:
    import socket

    with socket.socket() as spare:  # a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    with pytest.raises(HarnessError, match=r"AMQP endpoint \(localhost:\d+\) answered no back end"):
        amqp_back_end(emulator.connection_string(policy="service"), str(emulator.ca_file), port=port)
