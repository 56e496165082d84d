"""edgeHub as a transparent gateway, over real sockets: leaf devices and modules, routes,
module inputs, store-and-forward, and the relay of twins and methods."""

from __future__ import annotations

import json
import logging
import time

import pytest

from azure_iot_harness.config import WELL_KNOWN_LEAF_DEVICE_KEYS
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from tests.conftest import free_loopback_address
from tests.helpers import https, wait_for

from .edge_helpers import EdgeClient

ALERTS = {
    "schemaVersion": "1.1",
    "routes": {
        "alerts": 'FROM /messages/* WHERE $body.messageType = \'alert\' INTO BrokeredEndpoint("/modules/alerts/inputs/in1")',
        "rest": "FROM /messages/* WHERE $body.messageType != 'alert' OR NOT IS_DEFINED($body.messageType) INTO $upstream",
        "broken": "FROM /messages/* WHERE ( INTO $upstream",
    },
}


def _edge(routes=None, **settings):
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, edge=True, edge_bind=free_loopback_address(),
                            edge_mqtt_port=0, **settings)
    emu = thread.start()
    if routes is not None:
        emu.edge.router.replace(routes)
    return thread, emu


@pytest.fixture
def edge():
    thread, emu = _edge()
    yield thread, emu
    thread.stop()


def _leaf(emu, username="localhost/leaf-device1/api-version=2016-11-14", key=WELL_KNOWN_LEAF_DEVICE_KEYS[0]):
    return EdgeClient(emu, "leaf-device1", username=username, password=sas.generate("localhost/devices/leaf-device1", key))


def _module(thread, emu, module_id, auth=None):
    body = {"moduleId": module_id, **({"authentication": auth} if auth else {})}
    doc = thread.call(emu.registry.put_module("edge-device1", body, if_match=None))
    token = sas.generate(f"localhost/devices/edge-device1/modules/{module_id}", doc["authentication"]["symmetricKey"]["primaryKey"])
    return EdgeClient(emu, f"edge-device1/{module_id}", username=f"localhost/edge-device1/{module_id}/?api-version=2021-04-12", password=token)


def _hub_messages(emu):
    return https(emu, "GET", "/_emulator/telemetry?limit=1000")[2]["messages"]


def test_the_gateway_guide_script_reaches_the_hub_as_the_leaf(edge):
    thread, emu = edge
    leaf = _leaf(emu)
    assert leaf.connect() == 0
    mid = leaf.publish("devices/leaf-device1/messages/events/$.ct=application%2Fjson&$.ce=utf-8", json.dumps({"t": 21}))
    wait_for(lambda: mid in leaf.acked)
    msg = wait_for(lambda: _hub_messages(emu))[0]
    assert msg["deviceId"] == "leaf-device1" and json.loads(msg["body"]) == {"t": 21}
    assert msg["systemProperties"]["iothub-connection-device-id"] == "leaf-device1"
    assert msg["systemProperties"]["content-type"] == "application/json"
    leaf.close()


def test_sas_audience_may_name_the_edge_host(edge):
    thread, emu = edge
    token = sas.generate(f"{emu.edge.host}/devices/leaf-device1", WELL_KNOWN_LEAF_DEVICE_KEYS[0])
    leaf = EdgeClient(emu, "leaf-device1", username="localhost/leaf-device1/?api-version=2021-04-12", password=token)
    assert leaf.connect() == 0
    leaf.close()


@pytest.mark.parametrize(
    "client_id, username, why",
    [
        ("leaf-device1", "localhost/leaf-device1", "no api-version (edgeHub requires it)"),
        ("device1", "localhost/device1/?api-version=2021-04-12", "not in the edge's scope"),
    ],
)
def test_refusals(edge, client_id, username, why):
    thread, emu = edge
    key = emu.registry.get(client_id)["authentication"]["symmetricKey"]["primaryKey"]
    c = EdgeClient(emu, client_id, username=username, password=sas.generate(f"localhost/devices/{client_id}", key))
    assert c.connect() == 5, why
    c.close()


def test_modules_connect_with_sas_but_not_x509(edge, tmp_path):
    thread, emu = edge
    mod = _module(thread, emu, "filter")
    assert mod.connect() == 0
    mod.close()
    thread.call(emu.registry.put_module("edge-device1", {"moduleId": "camera", "authentication": {"type": "certificateAuthority"}}, if_match=None))
    certfile, keyfile = emu.pki.issue_device_cert("edge-device1/camera").write(tmp_path)
    cam = EdgeClient(emu, "edge-device1/camera", username="localhost/edge-device1/camera/?api-version=2021-04-12",
                     certfile=str(certfile), keyfile=str(keyfile))
    assert cam.connect() == 5


def test_alert_route_to_a_module_and_the_rest_upstream():
    thread, emu = _edge(ALERTS)
    try:
        assert set(emu.edge.router.describe()["errors"]) == {"broken"}  # the others keep working
        alerts = _module(thread, emu, "alerts")
        assert alerts.connect() == 0
        alerts.client.subscribe("devices/edge-device1/modules/alerts/inputs/#", 1)
        leaf = _leaf(emu)
        assert leaf.connect() == 0
        json_props = "$.ct=application%2Fjson&$.ce=utf-8"
        sent = [
            (json_props, {"messageType": "alert", "n": 1}),  # to the module
            ("", {"messageType": "alert", "n": 2}),  # no content type: $body is undefined, upstream
            (json_props, {"messageType": "info", "n": 3}),  # upstream
        ]
        mids = [leaf.publish(f"devices/leaf-device1/messages/events/{props}", json.dumps(body)) for props, body in sent]
        wait_for(lambda: set(mids) <= set(leaf.acked))
        got = wait_for(lambda: alerts.messages and alerts.messages[0])
        assert json.loads(got.payload)["n"] == 1
        assert got.topic.startswith("devices/edge-device1/modules/alerts/inputs/in1/") and "%24.cdid=leaf-device1" in got.topic
        upstream = wait_for(lambda: len(_hub_messages(emu)) == 2 and _hub_messages(emu))
        assert sorted(json.loads(m["body"])["n"] for m in upstream) == [2, 3]
        # Had 2 or 3 gone to the module too, they would arrive before a later alert: the module's
        # input queue hands messages out in order on one connection.
        leaf.publish("devices/leaf-device1/messages/events/" + json_props, json.dumps({"messageType": "alert", "n": 4}))
        wait_for(lambda: len(alerts.messages) >= 2, what="the second alert at the module", seen=lambda: [m.payload for m in alerts.messages])
        assert [json.loads(m.payload)["n"] for m in alerts.messages] == [1, 4]
        leaf.close()
        alerts.close()
    finally:
        thread.stop()


def test_module_input_waits_for_the_module():
    thread, emu = _edge({"schemaVersion": "1.0", "routes": {"r": 'FROM /messages/* INTO BrokeredEndpoint("/modules/late/inputs/in")'}})
    try:
        leaf = _leaf(emu)
        assert leaf.connect() == 0
        mid = leaf.publish("devices/leaf-device1/messages/events/", b"queued")
        wait_for(lambda: mid in leaf.acked)
        late = _module(thread, emu, "late")
        assert late.connect() == 0
        late.client.subscribe("devices/edge-device1/modules/late/#", 1)
        assert wait_for(lambda: late.messages)[0].payload == b"queued"
        leaf.close()
        late.close()
    finally:
        thread.stop()


def test_module_outputs_route_by_output_name():
    routes = {"schemaVersion": "1.1", "routes": {"out1": "FROM /messages/modules/filter/outputs/out1 INTO $upstream"}}
    thread, emu = _edge(routes)
    try:
        mod = _module(thread, emu, "filter")
        assert mod.connect() == 0
        for out in ("out1", "out2"):
            mid = mod.publish(f"devices/edge-device1/modules/filter/messages/events/%24.on={out}", out.encode())
            wait_for(lambda mid=mid: mid in mod.acked)
        msg = wait_for(lambda: _hub_messages(emu))[0]
        assert msg["body"] == "out1" and msg["moduleId"] == "filter"
        # Had out2 been routed upstream, it would reach the hub before a later out1: $upstream
        # forwards in order.
        mod.publish("devices/edge-device1/modules/filter/messages/events/%24.on=out1", b"out1 again")
        bodies = wait_for(lambda: len(_hub_messages(emu)) >= 2 and [m["body"] for m in _hub_messages(emu)],
                          what="the second out1 message at the hub", seen=lambda: _hub_messages(emu))
        assert bodies == ["out1", "out1 again"]
        mod.close()
    finally:
        thread.stop()


def test_store_and_forward_in_order_when_the_hub_returns(caplog):
    caplog.set_level(logging.WARNING, logger="azure_iot_harness.edge")
    thread, emu = _edge()
    try:
        leaf = _leaf(emu)
        assert leaf.connect() == 0
        thread.call(emu.suspend_hub())
        mids = [leaf.publish("devices/leaf-device1/messages/events/", f"m{i}") for i in range(10)]
        wait_for(lambda: set(mids) <= set(leaf.acked))  # committed at the edge, acknowledged
        # $upstream tried the first of them and found the hub gone: nothing reached it.
        wait_for(lambda: any("upstream (the hub) unreachable" in r.getMessage() for r in caplog.records),
                 what="the upstream's 'hub unreachable' log line", seen=lambda: caplog.messages[-5:])
        assert _hub_messages(emu) == []
        thread.call(emu.resume_hub())
        msgs = wait_for(lambda: len(_hub_messages(emu)) == 10 and _hub_messages(emu), timeout=20)
        assert [m["body"] for m in msgs] == [f"m{i}" for i in range(10)]
        leaf.close()
    finally:
        thread.stop()


def test_messages_past_their_ttl_are_not_forwarded():
    routes = {"schemaVersion": "1.1", "routes": {"r": {"route": "FROM /* INTO $upstream", "timeToLiveSecs": 1}}}
    thread, emu = _edge(routes)
    try:
        leaf = _leaf(emu)
        assert leaf.connect() == 0
        thread.call(emu.suspend_hub())
        mid = leaf.publish("devices/leaf-device1/messages/events/", b"stale")
        wait_for(lambda: mid in leaf.acked)
        # The scenario is time passing: the route's 1 s TTL (its smallest) ran from before the
        # PUBACK, so 1 s after it the message has expired. No state shows it before the hub returns.
        time.sleep(1.0)
        thread.call(emu.resume_hub())
        mid = leaf.publish("devices/leaf-device1/messages/events/", b"fresh")
        wait_for(lambda: [m["body"] for m in _hub_messages(emu)] == ["fresh"], timeout=20)
        leaf.close()
    finally:
        thread.stop()


def test_oversized_message_closes_the_connection(edge):
    thread, emu = edge
    leaf = _leaf(emu)
    assert leaf.connect() == 0
    leaf.publish("devices/leaf-device1/messages/events/", b"x" * (256 * 1024 + 1))
    assert leaf.disconnected.wait(10)


def test_twin_and_methods_are_relayed_for_a_leaf(edge):
    thread, emu = edge
    leaf = _leaf(emu)
    assert leaf.connect() == 0

    def answer(client, userdata, msg):
        leaf.messages.append(msg)
        if msg.topic.startswith("$iothub/methods/POST/"):
            client.publish(f"$iothub/methods/res/200/?$rid={msg.topic.split('$rid=')[1]}", b'{"ok": true}')

    leaf.client.on_message = answer
    leaf.client.subscribe([("$iothub/twin/res/#", 0), ("$iothub/methods/POST/#", 0)])
    wait_for(lambda: "$iothub/methods/POST/#" in getattr(emu.hub.sessions.get(("leaf-device1", None)), "state", None).subscriptions
             if emu.hub.sessions.get(("leaf-device1", None)) else False)
    leaf.publish("$iothub/twin/PATCH/properties/reported/?$rid=7", json.dumps({"via": "edge"}), qos=0)
    wait_for(lambda: any(m.topic.startswith("$iothub/twin/res/204/?$rid=7") for m in leaf.messages))
    status, _, twin = https(emu, "GET", "/twins/leaf-device1?api-version=2021-04-12")
    assert twin["properties"]["reported"]["via"] == "edge"
    status, _, body = https(emu, "POST", "/twins/leaf-device1/methods?api-version=2021-04-12", {"methodName": "ping"})
    assert status == 200 and body == {"status": 200, "payload": {"ok": True}}
    leaf.close()


def test_routes_are_replaced_at_run_time_over_rest(edge):
    thread, emu = edge
    spec = {"schemaVersion": "1.1", "routes": {"only": "FROM /messages/modules/* INTO $upstream", "bad": "nonsense"}}
    status, _, body = https(emu, "PUT", "/_emulator/edge/routes", spec)
    assert status == 200 and body["routes"] == {"only": "FROM /messages/modules/* INTO $upstream"} and "bad" in body["errors"]
    leaf = _leaf(emu)
    assert leaf.connect() == 0
    mid = leaf.publish("devices/leaf-device1/messages/events/", b"no route takes me")
    wait_for(lambda: mid in leaf.acked)
    # Had the leaf's message been routed upstream, it would reach the hub before a module's
    # later one: $upstream forwards in order.
    mod = _module(thread, emu, "filter")
    assert mod.connect() == 0
    mod.publish("devices/edge-device1/modules/filter/messages/events/", b"from a module")
    wait_for(lambda: _hub_messages(emu), what="the module's message at the hub")
    assert [m["body"] for m in _hub_messages(emu)] == ["from a module"]
    status, _, body = https(emu, "PUT", "/_emulator/edge/routes", {"schemaVersion": "9.9", "routes": {}})
    assert status == 400 and "schemaVersion" in body["Message"]
    mod.close()
    leaf.close()


def test_c2d_with_the_embedded_sdks_plus_filter_is_relayed_for_a_leaf(edge):
    thread, emu = edge
    leaf = _leaf(emu)
    assert leaf.connect() == 0
    leaf.client.subscribe("devices/+/messages/devicebound/#", 1)
    wait_for(lambda: "devices/+/messages/devicebound/#" in getattr(emu.hub.sessions.get(("leaf-device1", None)), "state", None).subscriptions
             if emu.hub.sessions.get(("leaf-device1", None)) else False)
    assert https(emu, "POST", "/_emulator/c2d/leaf-device1", {"data": "via the gateway"})[0] == 201
    msg = wait_for(lambda: leaf.messages and leaf.messages[0])
    assert msg.topic.startswith("devices/leaf-device1/messages/devicebound/") and msg.payload == b"via the gateway"
    leaf.close()


def test_a_leafs_model_id_reaches_the_hubs_twin(edge):
    thread, emu = edge
    model = "dtmi:com:example:Thermostat;1"
    leaf = _leaf(emu, username=f"localhost/leaf-device1/?api-version=2021-04-12&model-id={model.replace(':', '%3A').replace(';', '%3B')}")
    assert leaf.connect() == 0
    mid = leaf.publish("devices/leaf-device1/messages/events/", b"{}")
    wait_for(lambda: mid in leaf.acked)
    msg = wait_for(lambda: _hub_messages(emu))[0]  # forwarded upstream: the child's link is open
    assert msg["systemProperties"]["dt-dataschema"] == model
    assert https(emu, "GET", "/twins/leaf-device1?api-version=2021-04-12")[2]["modelId"] == model
    leaf.close()
