"""Direct methods: service REST call -> device request -> device answer -> service response."""

from __future__ import annotations

import json
import threading

import pytest

from tests.helpers import RawClient, connect_packet, device_token, https, publish_packet, sas_device, subscribe_packet, wait_for

PATH = "/twins/device1/methods?api-version=2021-04-12"


class Responder:
    """A paho device that answers every method with `status` and an echo of the request."""

    def __init__(self, emu, status=200, module=None, answer=True):
        self.dev = sas_device(emu, "device1", module)
        self.requests = []
        self.status, self.answer = status, answer
        self.dev.client.on_message = self._on_message
        assert self.dev.connect() == 0
        self.dev.client.subscribe("$iothub/methods/POST/#", 0)
        wait_for(lambda: "$iothub/methods/POST/#" in emu.hub.sessions[("device1", module)].state.subscriptions)

    def _on_message(self, client, userdata, msg):
        self.requests.append(msg)
        if self.answer:
            name = msg.topic.split("/")[3]
            rid = msg.topic.split("$rid=")[1]
            body = json.dumps({"method": name, "got": json.loads(msg.payload or b"null")})
            client.publish(f"$iothub/methods/res/{self.status}/?$rid={rid}", body)


def _invoke(emu, body, path=PATH):
    return https(emu, "POST", path, body)


def test_method_round_trip(emulator):
    r = Responder(emulator, status=201)
    status, _, body = _invoke(emulator, {"methodName": "reboot", "payload": {"delay": 5}, "responseTimeoutInSeconds": 10})
    assert status == 200
    assert body == {"status": 201, "payload": {"method": "reboot", "got": {"delay": 5}}}
    [request] = r.requests
    assert request.topic.startswith("$iothub/methods/POST/reboot/?$rid=") and request.qos == 0
    r.dev.close()


def test_module_method(emulator):
    r = Responder(emulator, module="module1")
    status, _, body = _invoke(emulator, {"methodName": "ping"}, "/twins/device1/modules/module1/methods?api-version=2021-04-12")
    assert status == 200 and body["payload"]["method"] == "ping"
    r.dev.close()


def test_offline_device_gets_404_device_not_online(emulator):
    status, headers, body = _invoke(emulator, {"methodName": "reboot"})
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotOnline"


def test_connected_but_not_subscribed_is_not_online(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    assert _invoke(emulator, {"methodName": "reboot"})[0] == 404
    dev.close()


def test_connect_timeout_waits_for_the_device(emulator):
    result = {}
    call = threading.Thread(target=lambda: result.update(r=_invoke(emulator, {"methodName": "late", "connectTimeoutInSeconds": 20})))
    call.start()
    r = Responder(emulator)
    call.join(30)
    assert result["r"][0] == 200 and result["r"][2]["payload"]["method"] == "late"
    r.dev.close()


def test_no_answer_within_the_timeout_is_504(emulator):
    r = Responder(emulator, answer=False)
    status, headers, body = _invoke(emulator, {"methodName": "slow", "responseTimeoutInSeconds": 5})
    assert status == 504 and headers["iothub-errorcode"] == "GatewayTimeout"
    assert len(r.requests) == 1
    r.dev.close()


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 400),
        ({"methodName": "has space"}, 400),
        ({"methodName": "x", "responseTimeoutInSeconds": 4}, 400),
        ({"methodName": "x", "responseTimeoutInSeconds": 301}, 400),
        ({"methodName": "x", "connectTimeoutInSeconds": "soon"}, 400),
        ({"methodName": "x", "payload": "y" * (128 * 1024 + 1)}, 413),
    ],
)
def test_bad_calls(emulator, body, status):
    Responder(emulator)
    assert _invoke(emulator, body)[0] == status


def test_unknown_device(emulator):
    assert _invoke(emulator, {"methodName": "x"}, "/twins/ghost/methods?api-version=2021-04-12")[0] == 404


def _raw_method_device(emu):
    c = RawClient(emu)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", device_token(emu, "device1")))
    assert c.connack() == 0
    c.send(subscribe_packet([("$iothub/methods/POST/#", 0)]))
    assert c.read_packet()[0] == 9
    return c


def test_non_integer_status_closes_the_connection(emulator):
    c = _raw_method_device(emulator)
    c.send(publish_packet("$iothub/methods/res/ok/?$rid=1", b"{}", qos=0))
    assert c.closed_by_server()


def test_answer_for_an_unknown_rid_is_ignored(emulator, caplog):
    c = _raw_method_device(emulator)
    c.send(publish_packet("$iothub/methods/res/200/?$rid=nope", b"{}", packet_id=3))
    kind, _, body = c.read_packet()
    assert kind == 4 and body == b"\x00\x03"  # still connected, message acknowledged
    assert any("unknown request id" in r.getMessage() for r in caplog.records)


def test_method_needs_service_connect(emulator):
    assert https(emulator, "POST", PATH, {"methodName": "x"}, token=emulator.service_token("registryReadWrite"))[0] == 401
