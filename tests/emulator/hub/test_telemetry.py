"""Telemetry and every way to break IoT Hub's MQTT rules, over real TLS sockets."""

from __future__ import annotations

import json
import os
import ssl

import pytest

from azure_iot_harness.emulator.protocol.messages import MAX_D2C_BYTES
from tests.helpers import (
    RawClient,
    connect_packet,
    device_token,
    https,
    packet,
    publish_packet,
    raw_sas_connect,
    sas_device,
    subscribe_packet,
    wait_for,
)


def _messages(emu, device=None):
    path = "/_emulator/telemetry?limit=1000" + (f"&deviceId={device}" if device else "")
    status, _, body = https(emu, "GET", path)
    assert status == 200, body
    return body["messages"]


def _puback(client, packet_id):
    pkt = client.read_packet()
    assert pkt is not None, "connection closed instead of PUBACK"
    assert pkt[0] == 4 and pkt[2] == packet_id.to_bytes(2, "big")


def test_telemetry_with_properties_is_stored_before_puback(emulator):
    c = raw_sas_connect(emulator)
    topic = "devices/device1/messages/events/%24.mid=id-1&$.cid=c1&%24.ct=application%2Fjson&%24.ce=utf-8&temp=21.5&note=a%20b%2Bc&flag"
    c.send(publish_packet(topic, b'{"t": 21.5}', packet_id=3))
    _puback(c, 3)
    # PUBACK means committed: the message is readable now, no waiting.
    [msg] = _messages(emulator)
    assert msg["deviceId"] == "device1" and msg["moduleId"] is None
    assert json.loads(msg["body"]) == {"t": 21.5}
    assert msg["properties"] == {"temp": "21.5", "note": "a b+c", "flag": None}
    sp = msg["systemProperties"]
    assert sp["message-id"] == "id-1" and sp["correlation-id"] == "c1"
    assert sp["content-type"] == "application/json" and sp["content-encoding"] == "utf-8"
    assert sp["iothub-connection-device-id"] == "device1"
    assert json.loads(sp["iothub-connection-auth-method"])["type"] == "sas"
    assert sp["iothub-enqueuedtime"] == msg["enqueuedTime"]


def test_module_telemetry(emulator):
    c = RawClient(emulator)
    c.send(connect_packet("device1/module1", "localhost/device1/module1/?api-version=2021-04-12", device_token(emulator, "device1", "module1")))
    assert c.connack() == 0
    c.send(publish_packet("devices/device1/modules/module1/messages/events/", b"m", packet_id=1))
    _puback(c, 1)
    [msg] = _messages(emulator)
    assert msg["moduleId"] == "module1" and msg["systemProperties"]["iothub-connection-module-id"] == "module1"


def test_qos0_telemetry_is_stored_without_puback(emulator):
    c = raw_sas_connect(emulator)
    c.send(publish_packet("devices/device1/messages/events/", b"q0", qos=0))
    c.send(bytes([0xC0, 0]))  # PINGREQ: the answer comes after the QoS 0 message was handled
    assert c.read_packet()[0] == 13
    wait_for(lambda: _messages(emulator))


def test_retain_becomes_a_property(emulator):
    c = raw_sas_connect(emulator)
    c.send(publish_packet("devices/device1/messages/events/", b"r", packet_id=2, retain=True))
    _puback(c, 2)
    assert _messages(emulator)[0]["properties"] == {"mqtt-retain": "true"}


def test_no_trailing_slash_and_binary_body(emulator):
    c = raw_sas_connect(emulator)
    c.send(publish_packet("devices/device1/messages/events", b"\xff\x00", packet_id=2))
    _puback(c, 2)
    msg = _messages(emulator)[0]
    assert msg["bodyEncoding"] == "base64" and msg["body"] == "/wA="


def test_model_id_from_username_is_stamped(emulator):
    c = RawClient(emulator)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aex%3Bx%3B1", device_token(emulator, "device1")))
    assert c.connack() == 0
    c.send(publish_packet("devices/device1/messages/events/", b"{}", packet_id=1))
    _puback(c, 1)
    assert _messages(emulator)[0]["systemProperties"]["dt-dataschema"] == "dtmi:com:ex;x;1"


def test_paho_publishes_many_and_all_are_acknowledged_and_stored(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    mids = [dev.publish("devices/device1/messages/events/$.ct=application%2Fjson", json.dumps({"i": i})) for i in range(500)]
    wait_for(lambda: set(mids) <= set(dev.acked))
    dev.close()
    bodies = [json.loads(m["body"])["i"] for m in _messages(emulator)]
    assert bodies == list(range(500))


# ---- violations: each closes the connection, logs why, and leaves other devices alone ------------


VIOLATIONS = {
    "qos 2": publish_packet("devices/device1/messages/events/", b"x", qos=2),
    "foreign device topic": publish_packet("devices/device2/messages/events/", b"x"),
    "foreign module topic": publish_packet("devices/device1/modules/module1/messages/events/", b"x"),
    "not an iot hub topic": publish_packet("zigbee2mqtt/sensor", b"x"),
    "sys topic": publish_packet("$SYS/broker/connection/state", b"1"),
    "unknown iothub topic": publish_packet("$iothub/unknown", b"x"),
    "wildcard #": publish_packet("devices/device1/messages/events/#", b"x"),
    "wildcard +": publish_packet("devices/+/messages/events/", b"x"),
    "oversized payload": publish_packet("devices/device1/messages/events/", b"x" * (MAX_D2C_BYTES + 1)),
    "oversized packet": publish_packet("devices/device1/messages/events/", b"x" * (400 * 1024)),
    "malformed bag": publish_packet("devices/device1/messages/events/a=b:c", b"x"),
    "bad escape": publish_packet("devices/device1/messages/events/a=%zz", b"x"),
    "topic not utf-8": publish_packet(b"devices/device1/messages/events/\xff", b"x"),
    "second connect": connect_packet("device1", "localhost/device1/?api-version=2021-04-12", "x"),
    "subscribe to #": subscribe_packet([("#", 0)]),
    "subscribe to another device": subscribe_packet([("devices/device2/messages/devicebound/#", 1)]),
    "six subscriptions": subscribe_packet(
        [
            ("devices/device1/messages/devicebound/#", 1),
            ("$iothub/twin/res/#", 1),
            ("$iothub/twin/PATCH/properties/desired/#", 1),
            ("$iothub/methods/POST/#", 1),
        ]
    )
    + subscribe_packet([("$iothub/twin/res/#", 1), ("devices/device1/modules/x/#", 1)], packet_id=2),
    "reserved packet type": packet(15, 0, b""),
    "bad subscribe flags": packet(8, 0, b"\x00\x01\x00\x01#\x00"),
    "server-only packet": packet(2, 0, b"\x00\x00"),
    "garbage": bytes([0x30]) + b"\xff\xff\xff\xff\xff" + os.urandom(32),
    "packet id 0": publish_packet("devices/device1/messages/events/", b"x", packet_id=0),
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
def test_violation_closes_connection_only(emulator, name, caplog):
    bystander = sas_device(emulator, "device1", "module1")
    assert bystander.connect() == 0
    c = raw_sas_connect(emulator)
    try:
        c.send(VIOLATIONS[name])
    except (ssl.SSLEOFError, ConnectionError):
        pass  # the server closed while the rest was still going out (it judges a PUBLISH by its header)
    else:
        assert c.closed_by_server(), name
    assert any("closing the connection" in r.getMessage() for r in caplog.records), name
    # The emulator and the other connection are unharmed.
    mid = bystander.publish("devices/device1/modules/module1/messages/events/", b"still here")
    wait_for(lambda: mid in bystander.acked)
    bystander.close()
    again = raw_sas_connect(emulator)
    again.close()


def test_messages_before_a_violation_are_kept(emulator):
    c = raw_sas_connect(emulator)
    c.send(publish_packet("devices/device1/messages/events/", b"good", packet_id=1))
    _puback(c, 1)
    c.send(publish_packet("devices/device1/messages/events/", b"bad", qos=2, packet_id=2))
    assert c.closed_by_server()
    assert [m["body"] for m in _messages(emulator)] == ["good"]


@pytest.mark.parametrize(
    "first",
    [
        publish_packet("devices/device1/messages/events/", b"x"),
        bytes([0xC0, 0]),
        subscribe_packet([("#", 0)]),
        b"\x00\x00\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_anything_but_connect_first_is_closed_without_connack(emulator, first):
    c = RawClient(emulator)
    c.send(first)
    assert c.read_packet() is None


def test_subscriptions_granted_qos_at_most_1(emulator):
    c = raw_sas_connect(emulator)
    c.send(subscribe_packet([("devices/device1/messages/devicebound/#", 2), ("$iothub/methods/POST/#", 0)], packet_id=9))
    kind, _, body = c.read_packet()
    assert kind == 9 and body == b"\x00\x09\x01\x00"
    # UNSUBSCRIBE of anything is acknowledged (a Mosquitto bridge unsubscribes its out pattern).
    c.send(packet(10, 2, b"\x00\x0a\x00\x01#"))
    kind, _, body = c.read_packet()
    assert kind == 11 and body == b"\x00\x0a"


def test_module_input_subscriptions_in_both_forms(emulator):
    c = RawClient(emulator)
    c.send(connect_packet("device1/module1", "localhost/device1/module1/?api-version=2021-04-12", device_token(emulator, "device1", "module1")))
    assert c.connack() == 0
    c.send(subscribe_packet([("devices/device1/modules/module1/inputs/#", 1), ("devices/device1/modules/module1/#", 1)], packet_id=4))
    kind, _, body = c.read_packet()
    assert kind == 9 and body == b"\x00\x04\x01\x01"


def test_will_is_published_on_ungraceful_loss_only(emulator):
    will = ("devices/device1/messages/events/kind=will", b"gone")
    c = RawClient(emulator)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", device_token(emulator, "device1"), will=will))
    assert c.connack() == 0
    c.close()  # no DISCONNECT
    msgs = wait_for(lambda: _messages(emulator))
    assert msgs[0]["body"] == "gone"
    assert msgs[0]["properties"] == {"kind": "will", "iothub-MessageType": "Will"}

    c = RawClient(emulator)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", device_token(emulator, "device1"), will=will))
    assert c.connack() == 0
    c.send(bytes([0xE0, 0]))
    assert c.closed_by_server()
    assert len(_messages(emulator)) == 1


def test_will_on_another_topic_is_refused(emulator):
    c = RawClient(emulator)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", device_token(emulator, "device1"), will=("status/device1", b"x")))
    assert c.read_packet() is None
