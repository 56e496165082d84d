"""edgeHub's offline behaviour: twins from the edge's cache while the hub is away, reported
patches that reach the hub in order when it returns, desired changes made meanwhile delivered
after reconnection, C2D completed only on the child's PUBACK, store limits, and the status
route with queue depths per endpoint and priority."""

from __future__ import annotations

import json

import pytest

from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.edge.route_model import DEFAULT_PRIORITY
from tests.conftest import free_loopback_address
from tests.helpers import https, publish_packet, subscribe_packet, wait_for

from .edge_helpers import (
    add_leaf,
    add_module,
    connected_leaf,
    edge_status,
    hub_messages,
    leaf_client,
    module_client,
    raw_connect,
    start_edge,
    upstream_depth,
)

API = "?api-version=2021-04-12"
TWIN_RES = "$iothub/twin/res/#"
DESIRED = "$iothub/twin/PATCH/properties/desired/#"


@pytest.fixture
def edge():
    thread, emu = start_edge()
    yield thread, emu
    thread.stop()


def _twin_request(leaf, topic: str, rid: str, body: bytes = b"") -> dict | None:
    """Publish a twin request and wait for its answer: (status, body)."""
    leaf.publish(f"{topic}?$rid={rid}", body, qos=0)
    msg = wait_for(lambda: next((m for m in leaf.messages if m.topic.startswith("$iothub/twin/res/") and f"$rid={rid}" in m.topic), None))
    status = int(msg.topic.split("/")[3])
    return {"status": status, "body": json.loads(msg.payload) if msg.payload else None}


# ---- twins ----------------------------------------------------------------------------------------


def test_twin_get_is_served_from_the_cache_while_the_hub_is_away(edge):
    thread, emu = edge
    add_leaf(thread, emu, "tw-get")
    https(emu, "PATCH", "/twins/tw-get" + API, {"properties": {"desired": {"fan": 2}}})
    leaf = connected_leaf(thread, emu, "tw-get", (TWIN_RES,))
    online = _twin_request(leaf, "$iothub/twin/GET/", "1")
    assert online["status"] == 200 and online["body"]["desired"]["fan"] == 2
    thread.call(emu.suspend_hub())
    offline = _twin_request(leaf, "$iothub/twin/GET/", "2")
    assert offline == online
    leaf.close()


def test_reported_patches_are_kept_offline_and_reach_the_hub_in_order(edge):
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "tw-rep", (TWIN_RES,))
    before = https(emu, "GET", "/twins/tw-rep" + API)[2]["properties"]["reported"]["$version"]
    thread.call(emu.suspend_hub())
    patches = [{"step": 1, "a": "x"}, {"step": 2, "a": None, "b": "y"}, {"step": 3}]
    for i, patch in enumerate(patches):
        assert _twin_request(leaf, "$iothub/twin/PATCH/properties/reported/", f"p{i}", json.dumps(patch).encode())["status"] == 204
    # the cache answers with the patches merged in
    cached = _twin_request(leaf, "$iothub/twin/GET/", "g")["body"]["reported"]
    assert (cached["step"], cached["b"], "a" in cached) == (3, "y", False)
    assert edge_status(emu)["pendingReportedPatches"] == {"tw-rep": 3}
    thread.call(emu.resume_hub())
    reported = wait_for(lambda: (r := https(emu, "GET", "/twins/tw-rep" + API)[2]["properties"]["reported"])["$version"] == before + 3 and r, timeout=20)
    assert (reported["step"], reported["b"], "a" in reported) == (3, "y", False)
    wait_for(lambda: edge_status(emu)["pendingReportedPatches"] == {})
    leaf.close()


def test_a_bad_reported_patch_is_refused_by_the_edge_with_400(edge):
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "tw-bad", (TWIN_RES,))
    thread.call(emu.suspend_hub())  # the edge itself answers
    answer = _twin_request(leaf, "$iothub/twin/PATCH/properties/reported/", "b", b'{"a.b": 1}')
    assert answer["status"] == 400 and answer["body"]["errorCode"] == 400004
    leaf.close()


def test_desired_changes_made_while_the_hub_was_away_arrive_after_reconnection(edge):
    thread, emu = edge
    add_leaf(thread, emu, "tw-des")
    https(emu, "PATCH", "/twins/tw-des" + API, {"properties": {"desired": {"keep": 1, "old": True}}})
    leaf = connected_leaf(thread, emu, "tw-des", (TWIN_RES, DESIRED))
    _twin_request(leaf, "$iothub/twin/GET/", "1")
    thread.call(emu.suspend_hub())
    # the service API stays up: the change is made while the edge cannot hear of it
    status, _, twin = https(emu, "PATCH", "/twins/tw-des" + API, {"properties": {"desired": {"old": None, "new": "v"}}})
    assert status == 200
    version = twin["properties"]["desired"]["$version"]
    assert not [m for m in leaf.messages if m.topic.startswith("$iothub/twin/PATCH/properties/desired/")]
    thread.call(emu.resume_hub())
    msg = wait_for(lambda: next((m for m in leaf.messages if m.topic.startswith("$iothub/twin/PATCH/properties/desired/")), None), timeout=20)
    assert msg.topic == f"$iothub/twin/PATCH/properties/desired/?$version={version}"
    assert json.loads(msg.payload) == {"old": None, "new": "v", "$version": version}
    leaf.close()


def test_reported_patches_owed_to_the_hub_survive_an_edge_restart(tmp_path):
    settings = dict(data_dir=tmp_path, mqtt_port=0, https_port=0, edge=True, edge_bind=free_loopback_address(), edge_mqtt_port=0)
    thread = EmulatorThread(**settings)
    emu = thread.start()
    try:
        leaf = connected_leaf(thread, emu, "tw-rst", (TWIN_RES,))
        thread.call(emu.suspend_hub())
        assert _twin_request(leaf, "$iothub/twin/PATCH/properties/reported/", "1", b'{"kept": "across"}')["status"] == 204
        leaf.close()
    finally:
        thread.stop()
    thread = EmulatorThread(**settings)
    emu = thread.start()
    try:
        wait_for(lambda: https(emu, "GET", "/twins/tw-rst" + API)[2]["properties"]["reported"].get("kept") == "across", timeout=20)
    finally:
        thread.stop()


# ---- C2D --------------------------------------------------------------------------------------------


def _pending_c2d(emu, device_id) -> list:
    return https(emu, "GET", f"/_emulator/c2d/{device_id}")[2]


def test_c2d_is_completed_at_the_hub_only_when_the_child_acknowledges_it(edge):
    thread, emu = edge
    add_leaf(thread, emu, "c2d-leaf")
    first = raw_connect(emu, "c2d-leaf")
    first.send(subscribe_packet([("devices/c2d-leaf/messages/devicebound/#", 1)]))
    assert first.read_packet()[0] == 9
    wait_for(lambda: emu.edge.upstream.link("c2d-leaf") is not None)
    wait_for(lambda: "devices/c2d-leaf/messages/devicebound/#" in emu.hub.sessions.get(("c2d-leaf", None)).state.subscriptions)
    status, _, _ = https(emu, "POST", "/_emulator/c2d/c2d-leaf", {"data": "hello"})
    assert status == 201
    kind, flags, _ = first.read_packet()
    assert kind == 3 and (flags >> 1) & 3 == 1  # a QoS 1 PUBLISH, not acknowledged
    first.close()  # gone before its PUBACK
    assert [m["deliveryCount"] for m in _pending_c2d(emu, "c2d-leaf")] == [1]  # still at the hub
    again = leaf_client(emu, "c2d-leaf")
    assert again.connect() == 0
    again.client.subscribe("devices/c2d-leaf/messages/devicebound/#", 1)
    msg = wait_for(lambda: again.messages and again.messages[0])
    assert msg.payload == b"hello"
    wait_for(lambda: _pending_c2d(emu, "c2d-leaf") == [])  # completed once the child acknowledged it
    again.close()


# ---- store limits and the status route -------------------------------------------------------------


def test_a_full_store_takes_no_more_until_the_queue_drains():
    routes = {
        "schemaVersion": "1.1",
        "routes": {"up": "FROM /* INTO $upstream"},
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200, "storeLimits": {"maxSizeBytes": 3000}},
    }
    thread, emu = start_edge(routes)
    try:
        add_leaf(thread, emu, "full")
        thread.call(emu.suspend_hub())
        taken = 0
        leaf = raw_connect(emu, "full")
        for n in range(100):
            leaf.send(publish_packet("devices/full/messages/events/", json.dumps({"n": n, "pad": "x" * 200}).encode(), packet_id=n + 1))
            if leaf.puback_or_close() == "closed":
                break
            taken += 1
        assert 0 < taken < 100
        status = edge_status(emu)
        assert status["messagesRefused"] == {"store_full": {"full": 1}}
        assert status["store"]["maxSizeBytes"] == 3000 and status["store"]["usedBytes"] <= 3000
        assert status["queues"]["$upstream"]["messages"] == taken
        thread.call(emu.resume_hub())
        wait_for(lambda: upstream_depth(emu) == 0, timeout=20)
        leaf = raw_connect(emu, "full")  # room again
        leaf.send(publish_packet("devices/full/messages/events/", b'{"n": "after"}', packet_id=1))
        assert leaf.puback_or_close() == "puback"
        wait_for(lambda: len(hub_messages(emu, "full")) == taken + 1)
        leaf.close()
    finally:
        thread.stop()


def test_the_status_route_shows_queues_per_endpoint_and_priority():
    routes = {
        "schemaVersion": "1.1",
        "routes": {
            "urgent": {"route": "FROM /messages/* WHERE $body.level = 'alarm' INTO $upstream", "priority": 0},
            "normal": {"route": "FROM /messages/* WHERE $body.level != 'alarm' INTO $upstream", "priority": 5},
            "local": 'FROM /messages/* INTO BrokeredEndpoint("/modules/late/inputs/in")',
        },
    }
    thread, emu = start_edge(routes)
    try:
        add_leaf(thread, emu, "prio")
        add_module(thread, emu, "late")
        thread.call(emu.suspend_hub())
        leaf = leaf_client(emu, "prio")
        assert leaf.connect() == 0
        props = "$.ct=application%2Fjson&$.ce=utf-8"
        mids = [leaf.publish(f"devices/prio/messages/events/{props}", json.dumps({"level": level})) for level in ("alarm", "info", "info")]
        wait_for(lambda: set(mids) <= set(leaf.acked))
        status = wait_for(lambda: (s := edge_status(emu))["upstream"]["state"] == "unreachable" and s, timeout=20)
        assert status["queues"] == {
            "$upstream": {"messages": 3, "byPriority": {"0": 1, "5": 2}},
            "/modules/late/inputs/in": {"messages": 3, "byPriority": {str(DEFAULT_PRIORITY): 3}},  # a string route: lowest
        }
        assert status["store"]["usedBytes"] > 0 and status["clients"] == ["prio"]
        assert status["upstream"]["lastError"]
        mod = module_client(emu, "late")
        assert mod.connect() == 0
        mod.client.subscribe(f"devices/{emu.edge.device_id}/modules/late/inputs/#", 1)
        wait_for(lambda: len(mod.messages) == 3)
        wait_for(lambda: "/modules/late/inputs/in" not in edge_status(emu)["queues"] or edge_status(emu)["queues"]["/modules/late/inputs/in"]["messages"] == 0)
        leaf.close()
        mod.close()
    finally:
        thread.stop()


def test_the_status_route_needs_an_edge_and_a_service_token(emulator):
    status, _, body = https(emulator, "GET", "/_emulator/edge")
    assert status == 501
    status, _, _ = https(emulator, "GET", "/_emulator/edge", token="SharedAccessSignature sr=x&sig=y&se=1")
    assert status == 401


def test_a_nul_padded_reported_patch_is_taken_offline_as_the_hub_takes_it(edge):
    """Firmware that publishes its whole buffer pads the JSON with NUL bytes."""
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "tw-nul", (TWIN_RES,))
    thread.call(emu.suspend_hub())
    assert _twin_request(leaf, "$iothub/twin/PATCH/properties/reported/", "n", b'{"padded": true}' + b"\0" * 40)["status"] == 204
    thread.call(emu.resume_hub())
    wait_for(lambda: https(emu, "GET", "/twins/tw-nul" + API)[2]["properties"]["reported"].get("padded") is True, timeout=20)
    leaf.close()
