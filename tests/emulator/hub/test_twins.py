"""Twins over MQTT (device side) and REST (service side), over real sockets."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.helpers import RawClient, connect_packet, device_token, https, publish_packet, sas_device, subscribe_packet, wait_for

API = "?api-version=2021-04-12"


@pytest.fixture
def device(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    dev.client.subscribe([("$iothub/twin/res/#", 1), ("$iothub/twin/PATCH/properties/desired/#", 1)])
    wait_for(lambda: "$iothub/twin/res/#" in emulator.hub.sessions[("device1", None)].state.subscriptions)
    yield dev
    dev.close()


def _next(dev, prefix, start=0):
    msg = wait_for(lambda: next((m for m in dev.messages[start:] if m.topic.startswith(prefix)), None))
    return msg


def test_get_answers_desired_and_reported_with_versions(device):
    device.publish("$iothub/twin/GET/?$rid=1", b" ", qos=0)  # the Node SDK sends one space
    msg = _next(device, "$iothub/twin/res/200/?$rid=1")
    assert json.loads(msg.payload) == {"desired": {"$version": 1}, "reported": {"$version": 1}}


def test_reported_patch_gets_204_with_version_and_is_visible_to_the_service(emulator, device):
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=7", json.dumps({"fw": "1.0", "temp": {"c": 21}}))
    msg = _next(device, "$iothub/twin/res/204/")
    assert msg.topic == "$iothub/twin/res/204/?$rid=7&$version=2" and msg.payload == b""
    status, headers, twin = https(emulator, "GET", "/twins/device1" + API)
    assert status == 200 and headers["etag"] == f'"{twin["etag"]}"'
    assert twin["properties"]["reported"]["fw"] == "1.0"
    assert twin["properties"]["reported"]["$metadata"]["temp"]["c"]["$lastUpdated"]


def test_rid_is_echoed_verbatim_and_may_repeat(device):
    for _ in range(2):
        device.publish("$iothub/twin/GET/?$rid=same", b"", qos=0)
    wait_for(lambda: sum(m.topic == "$iothub/twin/res/200/?$rid=same" for m in device.messages) == 2)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1,2]", json.dumps({"a.b": 1}).encode(), json.dumps({"$x": 1}).encode(),
     json.dumps({"a b": 1}).encode(), json.dumps({"big": "x" * 5000}).encode()],
)
def test_bad_reported_patches_get_400(emulator, device, body):
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=9", body)
    msg = _next(device, "$iothub/twin/res/400/?$rid=9")
    assert json.loads(msg.payload)["message"]
    assert emulator.hub.twins.get(("device1", None))["reportedVersion"] == 1  # nothing changed


def test_too_deep_and_too_large_reported_get_400(device):
    deep: dict = {"v": 1}
    for _ in range(10):
        deep = {"n": deep}
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=d", json.dumps(deep))
    _next(device, "$iothub/twin/res/400/?$rid=d")
    device.publish("$iothub/twin/PATCH/properties/reported/?$rid=s", json.dumps({f"k{i}": "x" * 4000 for i in range(9)}))
    _next(device, "$iothub/twin/res/400/?$rid=s")


def test_desired_patch_from_the_service_is_pushed_to_the_device(emulator, device):
    status, _, twin = https(emulator, "PATCH", "/twins/device1" + API, {"properties": {"desired": {"fan": 3}}, "tags": {"site": "a"}},
                            headers={"If-Match": '"*"'})
    assert status == 200 and twin["tags"] == {"site": "a"} and twin["properties"]["desired"]["$version"] == 2
    msg = _next(device, "$iothub/twin/PATCH/properties/desired/")
    assert msg.topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(msg.payload) == {"fan": 3, "$version": 2}


def test_null_desired_clears_them_bumps_the_version_and_tells_the_device(emulator, device):
    https(emulator, "PATCH", "/twins/device1" + API, {"properties": {"desired": {"fan": 3, "led": {"on": True}}}})
    _next(device, "$iothub/twin/PATCH/properties/desired/?$version=2")
    status, _, twin = https(emulator, "PATCH", "/twins/device1" + API, {"properties": {"desired": None}},
                            headers={"If-Match": '"*"'})
    desired = twin["properties"]["desired"]
    assert status == 200 and desired["$version"] == 3 and [k for k in desired if not k.startswith("$")] == []
    msg = _next(device, "$iothub/twin/PATCH/properties/desired/?$version=3")
    assert json.loads(msg.payload) == {"fan": None, "led": None, "$version": 3}


def test_put_tells_the_device_which_desired_properties_are_gone(emulator, device):
    https(emulator, "PATCH", "/twins/device1" + API, {"properties": {"desired": {"a": 1, "b": 2}}})
    https(emulator, "PUT", "/twins/device1" + API, {"properties": {"desired": {"a": 1, "c": 100}}})
    msg = _next(device, "$iothub/twin/PATCH/properties/desired/?$version=3")
    assert json.loads(msg.payload) == {"a": 1, "b": None, "c": 100, "$version": 3}


def test_null_tags_and_nested_nulls(emulator):
    https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": {"b": 1, "c": 2}, "d": 3}})
    twin = https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": {"b": None}}})[2]
    assert twin["tags"] == {"a": {"c": 2}, "d": 3}
    twin = https(emulator, "PATCH", "/twins/device1" + API, {"tags": None})[2]
    assert twin["tags"] == {}
    status, _, body = https(emulator, "PUT", "/twins/device1" + API, {"tags": {"a": None}})
    assert status == 400 and body["Message"].startswith("ErrorCode:ArgumentInvalid")


def test_tags_only_patch_pushes_nothing(emulator, device):
    https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": 1}})
    device.publish("$iothub/twin/GET/?$rid=x", b"", qos=0)
    _next(device, "$iothub/twin/res/200/?$rid=x")
    assert not [m for m in device.messages if m.topic.startswith("$iothub/twin/PATCH/")]


def test_desired_changes_are_not_queued_for_offline_devices(emulator):
    https(emulator, "PATCH", "/twins/device1" + API, {"properties": {"desired": {"while": "offline"}}})
    dev = sas_device(emulator, clean_session=True)
    assert dev.connect() == 0
    dev.client.subscribe([("$iothub/twin/res/#", 0), ("$iothub/twin/PATCH/properties/desired/#", 0)])
    wait_for(lambda: len(emulator.hub.sessions[("device1", None)].state.subscriptions) == 2)
    dev.publish("$iothub/twin/GET/?$rid=1", b"", qos=0)
    msg = _next(dev, "$iothub/twin/res/200/")
    assert json.loads(msg.payload)["desired"] == {"while": "offline", "$version": 2}  # reconcile by GET
    assert not [m for m in dev.messages if m.topic.startswith("$iothub/twin/PATCH/")]
    dev.close()


def test_etags_and_if_match(emulator):
    _, _, twin = https(emulator, "GET", "/twins/device1" + API)
    status, _, body = https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": 1}}, headers={"If-Match": '"AAAAAAAAAAk="'})
    assert status == 412 and body["Message"].startswith("ErrorCode:PreconditionFailed")
    status, _, new = https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": 1}}, headers={"If-Match": f'"{twin["etag"]}"'})
    assert status == 200 and new["etag"] != twin["etag"] and new["version"] == twin["version"] + 1


def test_put_replaces_tags_and_desired(emulator):
    https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": 1, "b": 2}, "properties": {"desired": {"x": 1}}})
    status, _, twin = https(emulator, "PUT", "/twins/device1" + API, {"tags": {"b": 3}, "properties": {"desired": {"y": 2}}},
                            headers={"If-Match": "*"})
    assert status == 200 and twin["tags"] == {"b": 3}
    assert {k: v for k, v in twin["properties"]["desired"].items() if not k.startswith("$")} == {"y": 2}


@pytest.mark.parametrize(
    "body, status",
    [
        ({"properties": {"reported": {"a": 1}}}, 400),
        ({"properties": {"desired": {"a.b": 1}}}, 400),
        ({"tags": "not an object"}, 400),
        ({"properties": {"desired": {"x": "y" * 40000}}}, 400),
    ],
)
def test_bad_service_patches(emulator, body, status):
    assert https(emulator, "PATCH", "/twins/device1" + API, body)[0] == status


def test_module_twins(emulator):
    status, _, twin = https(emulator, "PATCH", "/twins/device1/modules/module1" + API, {"properties": {"desired": {"m": 1}}})
    assert status == 200 and twin["moduleId"] == "module1"
    assert https(emulator, "GET", "/twins/device1" + API)[2]["properties"]["desired"]["$version"] == 1
    assert https(emulator, "GET", "/twins/device1/modules/nope" + API)[0] == 404
    assert https(emulator, "GET", "/twins/nope" + API)[2]["Message"].startswith("ErrorCode:DeviceNotFound")


def test_twin_goes_with_its_identity(emulator_thread, emulator):
    https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"a": 1}})
    emulator_thread.call(emulator.registry.delete("device1"))
    emulator_thread.call(emulator.registry.put_device({"deviceId": "device1"}, if_match=None))
    assert https(emulator, "GET", "/twins/device1" + API)[2]["tags"] == {}


def test_query_returns_real_twins(emulator):
    https(emulator, "PATCH", "/twins/device1" + API, {"tags": {"site": "b"}})
    status, _, rows = https(emulator, "POST", "/devices/query" + API, {"query": "SELECT * FROM devices WHERE deviceId = 'device1'"})
    assert status == 200 and rows[0]["tags"] == {"site": "b"}


# ---- the model id a Plug and Play device announces ------------------------------------------------

MODEL = "dtmi:com:example:Thermostat;1"


def _announce(emulator, device, module=None, model=MODEL):
    """CONNECT as the Embedded C SDK builds it: api-version 2020-09-30, DeviceClientType, model-id."""
    client_id = f"{device}/{module}" if module else device
    c = RawClient(emulator)
    user = f"localhost/{client_id}/?api-version=2020-09-30&DeviceClientType=azsdk-c%2F1.6.0&model-id={urllib.parse.quote(model, safe='')}"
    c.send(connect_packet(client_id, user, device_token(emulator, device, module)))
    assert c.connack() == 0
    return c


def test_model_id_announced_on_connect_is_the_twins_model_id(emulator):
    status, _, before = https(emulator, "GET", "/twins/device1" + API)
    assert before["modelId"] == ""
    c = _announce(emulator, "device1")
    status, _, twin = https(emulator, "GET", "/twins/device1" + API)
    assert status == 200 and twin["modelId"] == MODEL
    assert twin["etag"] == before["etag"] and twin["version"] == before["version"]  # not a twin change
    status, _, found = https(emulator, "POST", "/devices/query" + API, {"query": f"SELECT * FROM devices WHERE modelId = '{MODEL}'"})
    assert status == 200 and [t["deviceId"] for t in found] == ["device1"]
    c.close()


def test_model_id_of_a_module(emulator):
    c = _announce(emulator, "device1", "module1")
    assert https(emulator, "GET", "/twins/device1/modules/module1" + API)[2]["modelId"] == MODEL
    assert https(emulator, "GET", "/twins/device1" + API)[2]["modelId"] == ""
    status, _, found = https(emulator, "POST", "/devices/query" + API, {"query": f"SELECT * FROM devices.modules WHERE modelId = '{MODEL}'"})
    assert [(t["deviceId"], t["moduleId"]) for t in found] == [("device1", "module1")]
    c.close()


def test_a_later_connect_with_another_model_id_replaces_it(emulator):
    _announce(emulator, "device1").close()
    c = _announce(emulator, "device1", model="dtmi:com:example:Thermostat;2")
    assert https(emulator, "GET", "/twins/device1" + API)[2]["modelId"] == "dtmi:com:example:Thermostat;2"
    c.close()


# ---- a reported patch padded to its buffer with NUL bytes ------------------------------------------


def _reported(emulator, body: bytes) -> tuple[str, bytes]:
    """PUBLISH a reported patch as a C sample does (QoS 0, whole buffer); the twin response."""
    c = RawClient(emulator)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2020-09-30&DeviceClientType=azsdk-c%2F1.6.0", device_token(emulator, "device1")))
    assert c.connack() == 0
    c.send(subscribe_packet([("$iothub/twin/res/#", 1)], packet_id=1))
    assert c.read_packet()[0] == 9
    c.send(publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=1", body, qos=0))
    kind, flags, raw = c.read_packet()
    c.close()
    assert kind == 3
    n = int.from_bytes(raw[:2], "big")
    return raw[2 : 2 + n].decode(), raw[2 + n :]


def test_reported_patch_padded_with_nul_bytes_is_accepted(emulator):
    doc = b'{"manufacturer":"contoso","serialNumber":"abc"}'
    topic, body = _reported(emulator, doc + b"\0" * (512 - len(doc)))
    assert topic == "$iothub/twin/res/204/?$rid=1&$version=2" and body == b""
    reported = https(emulator, "GET", "/twins/device1" + API)[2]["properties"]["reported"]
    assert reported["manufacturer"] == "contoso" and reported["serialNumber"] == "abc"


@pytest.mark.parametrize(
    "body",
    [b'{"a":1}\0\0x\0', b'{"a":1}}\0\0', b'{"a":1} junk', b"\0\0\0"],
    ids=["garbage among NULs", "extra brace", "trailing text", "NULs only"],
)
def test_other_garbage_around_the_json_stays_400(emulator, body):
    topic, answer = _reported(emulator, body)
    assert topic == "$iothub/twin/res/400/?$rid=1" and json.loads(answer)["errorCode"] == 400004
    assert emulator.hub.twins.get(("device1", None))["reportedVersion"] == 1
