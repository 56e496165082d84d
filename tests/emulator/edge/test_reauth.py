"""The edge keeps checking who is connected through it: a child deleted, disabled, moved out of
the edge's scope, whose keys changed or whose SAS token expired is disconnected at once, and what
it publishes afterwards is not taken. Subscriptions follow the hub's rules. All over the edge's
MQTT port."""

from __future__ import annotations

import pytest

from tests.helpers import publish_packet, subscribe_packet, wait_for

from .edge_helpers import (
    ShiftedClock,
    add_leaf,
    add_module,
    connected_leaf,
    edge_status,
    hub_messages,
    module_client,
    raw_connect,
    start_edge,
    token,
    upstream_depth,
)


def wait_forwarded(emu, device_id: str) -> None:
    """Until the hub holds the device's messages and the edge's queue is empty again: the hub
    shows a message at its commit, and the edge drops its copy only when the hub's PUBACK
    arrives, a moment later (a queue depth read in between still counts it)."""
    wait_for(lambda: hub_messages(emu, device_id) and upstream_depth(emu) == 0)


@pytest.fixture
def edge():
    thread, emu = start_edge()
    yield thread, emu
    thread.stop()


def _put_device(thread, emu, device_id, **changes):
    body = {**emu.registry.get(device_id), **changes}
    for runtime in ("connectionState", "connectionStateUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount"):
        body.pop(runtime, None)
    return thread.call(emu.registry.put_device(body, if_match="*", device_id=device_id))


LEAF_CHANGES = {
    "deleted": lambda thread, emu: thread.call(emu.registry.delete("leaf-a")),
    "disabled": lambda thread, emu: _put_device(thread, emu, "leaf-a", status="disabled"),
    "moved out of the edge's scope": lambda thread, emu: _put_device(thread, emu, "leaf-a", deviceScope=""),
    "keys regenerated": lambda thread, emu: _put_device(
        thread, emu, "leaf-a", authentication={"type": "sas", "symmetricKey": {"primaryKey": None, "secondaryKey": None}}
    ),
}


@pytest.mark.parametrize("change", list(LEAF_CHANGES))
def test_a_leaf_is_disconnected_at_once_and_what_it_publishes_after_is_refused(edge, change):
    thread, emu = edge
    add_leaf(thread, emu, "leaf-a")
    leaf = raw_connect(emu, "leaf-a")
    leaf.send(publish_packet("devices/leaf-a/messages/events/", b"before", packet_id=1))
    assert leaf.puback_or_close() == "puback"
    wait_forwarded(emu, "leaf-a")  # before the change
    LEAF_CHANGES[change](thread, emu)
    leaf.send(publish_packet("devices/leaf-a/messages/events/", b"after", packet_id=2))
    assert leaf.puback_or_close() == "closed"
    assert upstream_depth(emu) == 0  # "after" was not taken
    assert [m["body"] for m in hub_messages(emu, "leaf-a")] == ["before"]
    leaf.close()


def test_a_paho_leaf_sees_its_connection_closed_when_deleted(edge):
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "leaf-p")
    thread.call(emu.registry.delete("leaf-p"))
    assert leaf.disconnected.wait(10)
    leaf.client.loop_stop()
    assert "leaf-p" not in edge_status(emu)["clients"]


def test_a_leaf_whose_token_expired_is_refused_what_it_publishes():
    clock = ShiftedClock()
    thread, emu = start_edge(clock=clock)
    try:
        add_leaf(thread, emu, "leaf-t")
        leaf = raw_connect(emu, "leaf-t", password=token(emu, "leaf-t", expiry=clock.time() + 600))
        leaf.send(publish_packet("devices/leaf-t/messages/events/", b"fresh", packet_id=1))
        assert leaf.puback_or_close() == "puback"
        wait_forwarded(emu, "leaf-t")
        clock.offset += 601  # the token's se has passed
        leaf.send(publish_packet("devices/leaf-t/messages/events/", b"stale", packet_id=2))
        assert leaf.puback_or_close() == "closed"
        assert upstream_depth(emu) == 0
        assert [m["body"] for m in hub_messages(emu, "leaf-t")] == ["fresh"]
    finally:
        thread.stop()


def test_the_connection_closes_when_the_token_expires(edge):
    thread, emu = edge
    add_leaf(thread, emu, "leaf-x")
    leaf = raw_connect(emu, "leaf-x", password=token(emu, "leaf-x", expiry=emu.clock.time() + 2))
    assert leaf.closed_by_server(timeout=15)
    assert "leaf-x" not in edge_status(emu)["clients"]


MODULE_CHANGES = {
    "deleted": lambda thread, emu: thread.call(emu.registry.delete(emu.edge.device_id, "filter")),
    "keys regenerated": lambda thread, emu: thread.call(
        emu.registry.put_module(emu.edge.device_id, {"moduleId": "filter"}, if_match="*")
    ),
    "edge device disabled": lambda thread, emu: _put_device(thread, emu, emu.edge.device_id, status="disabled"),
}


@pytest.mark.parametrize("change", list(MODULE_CHANGES))
def test_a_module_is_disconnected_at_once(edge, change):
    thread, emu = edge
    add_module(thread, emu, "filter")
    mod = raw_connect(emu, emu.edge.device_id, "filter")
    MODULE_CHANGES[change](thread, emu)
    topic = f"devices/{emu.edge.device_id}/modules/filter/messages/events/"
    mod.send(publish_packet(topic, b"after", packet_id=1))
    assert mod.puback_or_close() == "closed"
    mod.close()


def test_a_module_token_expiry_refuses_what_it_publishes():
    clock = ShiftedClock()
    thread, emu = start_edge(clock=clock)
    try:
        add_module(thread, emu, "timed")
        edge_id = emu.edge.device_id
        mod = raw_connect(emu, edge_id, "timed", password=token(emu, edge_id, "timed", expiry=clock.time() + 600))
        clock.offset += 601
        mod.send(publish_packet(f"devices/{edge_id}/modules/timed/messages/events/", b"stale", packet_id=1))
        assert mod.puback_or_close() == "closed"
    finally:
        thread.stop()


def test_a_change_that_keeps_the_credentials_valid_keeps_the_connection(edge):
    thread, emu = edge
    add_leaf(thread, emu, "leaf-k")
    leaf = raw_connect(emu, "leaf-k")
    _put_device(thread, emu, "leaf-k", statusReason="audited")  # nothing that matters to auth
    leaf.send(publish_packet("devices/leaf-k/messages/events/", b"still here", packet_id=1))
    assert leaf.puback_or_close() == "puback"
    leaf.close()


# ---- subscriptions: the hub's rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    ["#", "devices/leaf-s/messages/events/#", "devices/other/messages/devicebound/#", "$iothub/twin/#", "$iothub/methods/POST/x"],
)
def test_an_undocumented_filter_closes_the_connection(edge, topic):
    thread, emu = edge
    add_leaf(thread, emu, "leaf-s")
    leaf = raw_connect(emu, "leaf-s")
    leaf.send(subscribe_packet([(topic, 1)]))
    assert leaf.closed_by_server()


def test_documented_filters_are_granted_with_qos_at_most_1(edge):
    thread, emu = edge
    add_leaf(thread, emu, "leaf-g")
    leaf = raw_connect(emu, "leaf-g")
    filters = [
        ("devices/leaf-g/messages/devicebound/#", 2),
        ("$iothub/twin/res/#", 0),
        ("$iothub/twin/PATCH/properties/desired/#", 1),
        ("$iothub/methods/POST/#", 0),
    ]
    leaf.send(subscribe_packet(filters, packet_id=7))
    kind, _, body = leaf.read_packet()
    assert kind == 9 and body == bytes([0, 7, 1, 0, 1, 0])
    leaf.close()


def test_a_module_gets_the_hub_limit_of_five_and_no_c2d(edge):
    thread, emu = edge
    add_module(thread, emu, "five")
    edge_id = emu.edge.device_id
    mod = raw_connect(emu, edge_id, "five")
    filters = [
        ("$iothub/twin/res/#", 0),
        ("$iothub/twin/PATCH/properties/desired/#", 0),
        ("$iothub/methods/POST/#", 0),
        (f"devices/{edge_id}/modules/five/inputs/#", 1),
        (f"devices/{edge_id}/modules/five/#", 1),
    ]
    mod.send(subscribe_packet(filters, packet_id=1))
    assert mod.read_packet()[0] == 9
    mod.send(subscribe_packet([(f"devices/{edge_id}/messages/devicebound/#", 1)], packet_id=2))
    assert mod.closed_by_server()


def test_a_paho_module_still_gets_its_inputs(edge):
    """The filters the SDKs use pass the rules."""
    thread, emu = edge
    add_module(thread, emu, "inputs")
    mod = module_client(emu, "inputs")
    assert mod.connect() == 0
    mod.client.subscribe([(f"devices/{emu.edge.device_id}/modules/inputs/inputs/#", 1), ("$iothub/methods/POST/#", 0)])
    wait_for(lambda: set(emu.edge.hub.sessions[(emu.edge.device_id, "inputs")].subscriptions) >= {"$iothub/methods/POST/#"})
    assert not mod.disconnected.is_set()
    mod.close()
