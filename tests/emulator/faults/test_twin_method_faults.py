"""Twin and direct-method faults, with a raw TLS device (twin) and a paho device (methods)."""

from __future__ import annotations

import json

from tests.emulator.hub.test_methods import Responder
from tests.helpers import https, packet, publish_packet, raw_sas_connect, subscribe_packet

PINGREQ = packet(12, 0, b"")


def _twin_device(emu):
    c = raw_sas_connect(emu)
    c.send(subscribe_packet([("$iothub/twin/res/#", 0)], packet_id=1))
    assert c.read_packet()[0] == 9
    return c


def _response(c) -> tuple[str, bytes]:
    kind, _, body = c.read_packet()
    assert kind == 3, f"expected a PUBLISH, got packet type {kind}"
    topic_len = int.from_bytes(body[:2], "big")
    return body[2 : 2 + topic_len].decode(), body[2 + topic_len :]


def test_throttle_twin_answers_429_and_does_nothing(emulator):
    c = _twin_device(emulator)
    emulator.faults.add("throttle-twin", device_id="device1")
    c.send(publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"a": 1}', qos=0))
    topic, body = _response(c)
    assert topic == "$iothub/twin/res/429/?$rid=1" and json.loads(body)["errorCode"] == 429001
    c.send(publish_packet("$iothub/twin/GET/?$rid=2", qos=0))
    topic, body = _response(c)
    assert topic == "$iothub/twin/res/200/?$rid=2" and "a" not in json.loads(body)["reported"]
    c.close()


def test_drop_twin_response_does_the_request_but_loses_its_answer(emulator):
    c = _twin_device(emulator)
    emulator.faults.add("drop-twin-response", device_id="device1")
    c.send(publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"a": 1}', qos=0))
    c.send(publish_packet("$iothub/twin/GET/?$rid=2", qos=0))
    topic, body = _response(c)  # the first answer that comes is the GET's
    assert topic == "$iothub/twin/res/200/?$rid=2" and json.loads(body)["reported"]["a"] == 1
    c.close()


def test_delay_twin_answers_late(emulator):
    c = _twin_device(emulator)
    emulator.faults.add("delay-twin", device_id="device1", seconds=1)
    c.send(publish_packet("$iothub/twin/GET/?$rid=1", qos=0))
    c.send(PINGREQ)
    assert c.read_packet()[0] == 13  # the PINGRESP overtakes the delayed answer
    topic, _ = _response(c)
    assert topic == "$iothub/twin/res/200/?$rid=1"
    c.close()


def _invoke(emu, name: str, timeout: int = 10):
    return https(emu, "POST", "/twins/device1/methods?api-version=2021-04-12", {"methodName": name, "responseTimeoutInSeconds": timeout})


def test_method_timeout_withholds_the_request_and_the_call_ends_in_504(emulator):
    r = Responder(emulator)
    emulator.faults.add("method-timeout", device_id="device1")
    status, headers, _ = _invoke(emulator, "reboot", timeout=5)
    assert status == 504 and headers["iothub-errorcode"] == "GatewayTimeout"
    assert r.requests == []  # the device never saw it
    assert _invoke(emulator, "reboot")[0] == 200  # used up
    r.dev.close()


def test_delay_method_still_answered(emulator):
    r = Responder(emulator)
    fault = emulator.faults.add("delay-method", device_id="device1", seconds=0.5)
    status, _, body = _invoke(emulator, "reboot")
    assert status == 200 and body["payload"]["method"] == "reboot"
    events = emulator.trace.events(device_id="device1")
    fired = next(e.seq for e in events if e.type == "FAULT" and e.reason == f"delay-method ({fault.id})")
    assert any(e.seq > fired and e.direction == "out" and (e.topic or "").startswith("$iothub/methods/POST/reboot/") for e in events)
    r.dev.close()
