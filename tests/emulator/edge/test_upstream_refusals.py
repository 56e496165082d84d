"""One refused message never blocks the edge's upstream: what the hub refuses for a device or for
a message is dropped and counted, the other devices' messages keep flowing, in order, with none
lost — also across a restart of the edge, whose queue is in the store."""

from __future__ import annotations

import json

from azure_iot_harness.emulator.app import EmulatorThread
from tests.conftest import free_loopback_address
from tests.helpers import wait_for

from .edge_helpers import add_leaf, connected_leaf, edge_status, hub_messages, leaf_client, start_edge, upstream_depth

PER_DEVICE = 15


def _publish_interleaved(leaves: dict) -> None:
    mids = {name: [] for name in leaves}
    for i in range(PER_DEVICE):
        for name, leaf in leaves.items():
            mids[name].append(leaf.publish(f"devices/{name}/messages/events/", json.dumps({"n": i})))
    for name, leaf in leaves.items():
        wait_for(lambda name=name, leaf=leaf: set(mids[name]) <= set(leaf.acked))  # committed at the edge


def _queued_with_dev_a_deleted(thread, emu) -> dict:
    """dev-a, dev-b and dev-c queue PER_DEVICE messages each at the edge while the hub is away;
    then dev-a is deleted, so the hub will refuse its messages."""
    leaves = {name: connected_leaf(thread, emu, name) for name in ("dev-a", "dev-b", "dev-c")}
    thread.call(emu.suspend_hub())
    _publish_interleaved(leaves)
    thread.call(emu.registry.delete("dev-a"))
    return leaves


def _bodies(emu, device_id) -> list[int]:
    return [json.loads(m["body"])["n"] for m in hub_messages(emu, device_id)]


def _flowed_in_order(emu, devices) -> bool:
    return all(_bodies(emu, d) == list(range(PER_DEVICE)) for d in devices)


def test_a_refused_device_does_not_hold_back_the_others():
    thread, emu = start_edge()
    try:
        leaves = _queued_with_dev_a_deleted(thread, emu)  # the hub will refuse dev-a's upstream connection
        thread.call(emu.resume_hub())
        wait_for(lambda: _flowed_in_order(emu, ["dev-b", "dev-c"]), timeout=30)
        wait_for(lambda: upstream_depth(emu) == 0)
        status = edge_status(emu)
        assert status["messagesDropped"]["hub_refused_device"] == {"dev-a": PER_DEVICE}
        assert hub_messages(emu, "dev-a") == []
        assert status["upstream"]["state"] == "online"
        for name in ("dev-b", "dev-c"):
            leaves[name].close()
    finally:
        thread.stop()


def test_nothing_is_lost_across_an_edge_restart(tmp_path):
    settings = dict(
        data_dir=tmp_path, mqtt_port=0, https_port=0, edge=True, edge_bind=free_loopback_address(), edge_mqtt_port=0
    )
    thread = EmulatorThread(**settings)
    emu = thread.start()
    try:
        leaves = _queued_with_dev_a_deleted(thread, emu)
        for leaf in leaves.values():
            leaf.close()
    finally:
        thread.stop()
    thread = EmulatorThread(**settings)
    emu = thread.start()  # the edge starts with 3 x PER_DEVICE messages in its store
    try:
        wait_for(lambda: _flowed_in_order(emu, ["dev-b", "dev-c"]), timeout=30)
        wait_for(lambda: upstream_depth(emu) == 0)
        assert edge_status(emu)["messagesDropped"]["hub_refused_device"] == {"dev-a": PER_DEVICE}
        assert hub_messages(emu, "dev-a") == []
    finally:
        thread.stop()


def test_a_message_the_hub_closes_the_connection_on_is_dropped_and_the_next_ones_flow():
    """A retained message just under 256 KB passes the edge, but the `mqtt-retain` property the
    edge adds takes it over the hub's limit: the hub closes the link each time it is sent."""
    thread, emu = start_edge()
    try:
        add_leaf(thread, emu, "dev-p")
        leaf = leaf_client(emu, "dev-p")
        assert leaf.connect() == 0
        thread.call(emu.suspend_hub())
        mids = [leaf.publish("devices/dev-p/messages/events/", json.dumps({"n": 0}))]
        mids.append(leaf.publish("devices/dev-p/messages/events/", b"x" * (256 * 1024 - 5), retain=True))
        mids += [leaf.publish("devices/dev-p/messages/events/", json.dumps({"n": n})) for n in (1, 2)]
        wait_for(lambda: set(mids) <= set(leaf.acked))
        thread.call(emu.resume_hub())
        wait_for(lambda: _bodies(emu, "dev-p") == [0, 1, 2], timeout=30)
        wait_for(lambda: upstream_depth(emu) == 0)
        assert edge_status(emu)["messagesDropped"]["hub_refused_message"] == {"dev-p": 1}
        leaf.close()
    finally:
        thread.stop()


def test_the_hub_refusing_the_edge_itself_drops_nothing():
    """Every child's upstream connection carries the edge device's credentials: when the hub
    refuses those, it is the edge's problem, not the devices'; their messages wait."""
    thread, emu = start_edge()
    try:
        add_leaf(thread, emu, "dev-k")
        leaf = leaf_client(emu, "dev-k")
        assert leaf.connect() == 0
        edge_id = emu.edge.device_id
        original = emu.registry.get(edge_id)
        thread.call(emu.suspend_hub())
        new_keys = {"type": "sas", "symmetricKey": {"primaryKey": None, "secondaryKey": None}}
        body = {k: original[k] for k in ("deviceId", "capabilities", "deviceScope")}
        thread.call(emu.registry.put_device({**body, "authentication": new_keys}, if_match="*"))
        mids = [leaf.publish("devices/dev-k/messages/events/", json.dumps({"n": n})) for n in range(3)]
        wait_for(lambda: set(mids) <= set(leaf.acked))
        thread.call(emu.resume_hub())
        wait_for(lambda: edge_status(emu)["upstream"]["state"] == "refused", timeout=30)
        status = edge_status(emu)
        assert status["messagesDropped"] == {} and status["queues"]["$upstream"]["messages"] == 3
        thread.call(emu.registry.put_device({**body, "authentication": original["authentication"]}, if_match="*"))
        wait_for(lambda: _bodies(emu, "dev-k") == [0, 1, 2], timeout=30)
        leaf.close()
    finally:
        thread.stop()
