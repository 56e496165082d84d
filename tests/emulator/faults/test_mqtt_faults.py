"""Faults in the MQTT session layer, seen by real TLS clients (hand-made packets where a
well-behaved client hides what happened, paho where its reaction is the point)."""

from __future__ import annotations

import json

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

PINGREQ = packet(12, 0, b"")


def _connect(emu) -> bytes:
    return connect_packet("device1", f"{emu.host}/device1/?api-version=2021-04-12", device_token(emu, "device1"))


def test_withhold_connack_holds_the_connection_answering_nothing(emulator):
    emulator.faults.add("withhold-connack", device_id="device1")
    c = RawClient(emulator)
    c.send(_connect(emulator))
    c.send(PINGREQ)  # a broken client that does not wait: still nothing comes back
    c.close()  # the client gives up
    wait_for(lambda: any(e.type == "CLOSE" for e in emulator.trace.events(device_id="device1")), what="CLOSE")
    events = emulator.trace.events(device_id="device1")
    assert [e.type for e in events if e.direction == "out"] == []
    assert events[-1].reason.startswith("CONNACK withheld")
    # Used up: the next CONNECT is answered.
    raw_sas_connect(emulator).close()


def test_withhold_suback_then_answer_the_next(emulator):
    c = raw_sas_connect(emulator)
    emulator.faults.add("withhold-suback", device_id="device1")
    c.send(subscribe_packet([("devices/device1/messages/devicebound/#", 1)], packet_id=1))
    c.send(PINGREQ)
    assert c.read_packet()[0] == 13  # PINGRESP, with no SUBACK before it
    c.send(subscribe_packet([("devices/device1/messages/devicebound/#", 1)], packet_id=1))  # the resend
    kind, _, body = c.read_packet()
    assert kind == 9 and body[:2] == b"\x00\x01"
    c.close()


def test_withhold_pingresp(emulator):
    c = raw_sas_connect(emulator)
    emulator.faults.add("withhold-pingresp", device_id="device1", count=2)
    c.send(PINGREQ)
    c.send(PINGREQ)
    c.send(subscribe_packet([("$iothub/twin/res/#", 0)], packet_id=4))
    assert c.read_packet()[0] == 9  # SUBACK first: both PINGRESPs withheld
    c.send(PINGREQ)
    assert c.read_packet()[0] == 13
    c.close()


def test_withhold_puback_until_the_resend(emulator):
    c = raw_sas_connect(emulator)
    emulator.faults.add("withhold-puback", device_id="device1")
    c.send(publish_packet("devices/device1/messages/events/", b"1", packet_id=1))
    c.send(subscribe_packet([("$iothub/twin/res/#", 0)], packet_id=2))
    assert c.read_packet()[0] == 9  # SUBACK, and no PUBACK 1 before it…
    first = publish_packet("devices/device1/messages/events/", b"1", packet_id=1)
    c.send(bytes([first[0] | 0x08]) + first[1:])
    kind, _, body = c.read_packet()  # …until the resend (DUP, same packet id)
    assert kind == 4 and body == b"\x00\x01"
    # The first message committed before the resend: had its PUBACK gone out, the trace (which
    # records at send) would show two.
    events = emulator.trace.events(device_id="device1")
    assert [e.packet_id for e in events if e.type == "PUBACK"] == [1]
    assert [e.dup for e in events if e.type == "PUBLISH"] == [False, True]
    c.close()
    status, _, got = https(emulator, "GET", "/_emulator/telemetry?deviceId=device1")
    assert len(got["messages"]) == 2  # stored both times: at least once, duplicates allowed


def test_drop_at_next_publish_with_a_graceful_close(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    fault = emulator.faults.add("drop", device_id="device1", how="close", when="publish")
    assert fault.fired == 0
    dev.publish("devices/device1/messages/events/", b"x")
    wait_for(dev.disconnected.is_set, what="paho sees the close")
    closes = [e for e in emulator.trace.events(device_id="device1") if e.type == "CLOSE"]
    assert closes[0].reason == f"fault {fault.id}: drop (close) at publish"
    dev.close()


def test_drop_at_next_subscribe(emulator):
    c = raw_sas_connect(emulator)
    emulator.faults.add("drop", device_id="device1", how="reset", when="subscribe")
    c.send(publish_packet("devices/device1/messages/events/", b"1", packet_id=1))
    assert c.read_packet()[0] == 4  # not a SUBSCRIBE: untouched
    c.send(subscribe_packet([("$iothub/twin/res/#", 0)], packet_id=2))
    assert c.read_packet() is None


def test_faults_for_another_device_leave_this_one_alone(emulator):
    emulator.faults.add("refuse-connect", device_id="someone-else", code=5)
    emulator.faults.add("refuse-connect", device_id="device1", module_id="module1", code=5)
    raw_sas_connect(emulator).close()


def test_expire_token_closes_as_the_hub_does_at_se(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    fault = emulator.faults.add("expire-token", device_id="device1")
    wait_for(dev.disconnected.is_set, what="paho sees the close")
    assert fault.fired == 1
    events = emulator.trace.events(device_id="device1")
    assert [e.reason for e in events if e.type == "CLOSE"][0] == "SAS token expired"
    assert any(e.type == "FAULT" and e.reason == f"expire-token ({fault.id})" for e in events)
    dev.close()


def test_fault_for_every_device_with_a_duration(emulator):
    status, _, fault = https(emulator, "POST", "/_emulator/faults", {"kind": "refuse-connect", "durationSeconds": 300, "params": {"code": 3}})
    assert status == 201 and fault["count"] is None and fault["expires"] == fault["created"] + 300
    for _ in range(2):
        c = RawClient(emulator)
        c.send(_connect(emulator))
        assert c.connack() == 3
        c.close()
    assert json.loads(json.dumps(https(emulator, "GET", "/_emulator/faults")[2]))[0]["fired"] == 2
