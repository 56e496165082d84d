"""Outages over HTTP: the hub suspended and resumed, the edge's upstream suspended and resumed;
Azure's fault properties through the edge. Real paho clients."""

from __future__ import annotations

import socket

import pytest

from azure_iot_harness.emulator.faults import azure
from tests.emulator.edge.edge_helpers import connected_leaf, hub_messages, start_edge, upstream_depth
from tests.helpers import https, sas_device, wait_for


@pytest.fixture
def edge():
    thread, emu = start_edge()
    try:
        yield thread, emu
    finally:
        thread.stop()


def _fault(emu, kind: str, **body) -> dict:
    status, _, fault = https(emu, "POST", "/_emulator/faults", {"kind": kind, **body})
    assert status == 201, fault
    return fault


def test_hub_suspend_and_resume_over_http(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    port = emulator.mqtt_port
    _fault(emulator, "hub-suspend")  # answered once the listener is down
    wait_for(dev.disconnected.is_set, what="paho sees the outage")
    # The port stays the hub's (no other program can take it meanwhile) and turns connections
    # away with a reset (during connect or at the first read, as the RST races the connect's end).
    with pytest.raises(ConnectionResetError), socket.create_connection((emulator.config.bind, port), timeout=10) as turned_away:
        turned_away.recv(1)
    connects = []
    dev.client.on_connect = lambda c, u, f, rc: connects.append(rc)
    _fault(emulator, "hub-resume")
    wait_for(lambda: 0 in connects, timeout=20, what="paho back in after the outage")
    dev.close()


def test_edge_upstream_suspend_queues_then_resume_forwards(edge):
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "leaf-outage")
    _fault(emu, "edge-upstream-suspend")
    mids = [leaf.publish("devices/leaf-outage/messages/events/", f"m{i}") for i in range(3)]
    wait_for(lambda: set(mids) <= set(leaf.acked), what="the edge takes the messages")
    wait_for(lambda: upstream_depth(emu) == 3, what="messages queued at the edge")
    assert hub_messages(emu, "leaf-outage") == []
    _fault(emu, "edge-upstream-resume")
    wait_for(lambda: len(hub_messages(emu, "leaf-outage")) == 3, timeout=30, what="forwarded after the resume")
    leaf.close()


def test_edge_upstream_faults_need_an_edge(emulator):
    status, _, body = https(emulator, "POST", "/_emulator/faults", {"kind": "edge-upstream-suspend"})
    assert status == 400 and "without an edge" in body["Message"]


def test_kill_tcp_through_the_edge_drops_the_leaf_not_the_upstream(edge):
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "leaf-kill")
    leaf.publish(f"devices/leaf-kill/messages/events/{azure.FAULT_TYPE}=KillTcp&{azure.DELAY}=0", b"x")
    wait_for(leaf.disconnected.is_set, what="the leaf dropped by the edge")
    wait_for(lambda: len(hub_messages(emu, "leaf-kill")) >= 1, timeout=30, what="the message forwarded")
    events = emu.trace.events(device_id="leaf-kill")
    edge_closes = [e.reason for e in events if e.type == "CLOSE" and e.listener == "edge"]
    assert f"KillTcp ({azure.FAULT_TYPE})" in edge_closes
    assert not [e for e in events if e.type == "FAULT" and e.listener == "hub"]  # the upstream link is left alone
    leaf.close()


def test_a_leaf_fault_hits_the_leaf_not_the_edge_upstream_link_for_it(edge):
    thread, emu = edge
    leaf = connected_leaf(thread, emu, "leaf-drop")
    mid = leaf.publish("devices/leaf-drop/messages/events/", b"up")
    wait_for(lambda: len(hub_messages(emu, "leaf-drop")) == 1, timeout=30, what="forwarded: the upstream link is up")
    fault = emu.faults.add("drop", device_id="leaf-drop", how="close")
    wait_for(leaf.disconnected.is_set, what="the leaf dropped")
    assert mid in leaf.acked and fault.fired == 1
    faulted = [e.listener for e in emu.trace.events(device_id="leaf-drop") if e.type == "FAULT"]
    assert faulted == ["edge"]  # the hub-side link carries the edge's credentials: a fault for the edge device
    leaf.close()
