"""Persistent sessions: clean session 0 keeps subscriptions across reconnects; 1 starts empty."""

from __future__ import annotations

from tests.helpers import RawClient, connect_packet, device_token, subscribe_packet


def _connect(emu, clean):
    c = RawClient(emu)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", device_token(emu, "device1"), clean=clean))
    kind, _, body = c.read_packet()
    assert kind == 2 and body[1] == 0
    return c, bool(body[0] & 1)


def _subscriptions(emu):
    return dict(emu.hub.sessions[("device1", None)].state.subscriptions)


def test_first_persistent_connection_has_no_session(emulator):
    c, present = _connect(emulator, clean=False)
    assert not present


def test_persistent_session_keeps_subscriptions(emulator):
    c, _ = _connect(emulator, clean=False)
    c.send(subscribe_packet([("$iothub/methods/POST/#", 0), ("$iothub/twin/res/#", 1)]))
    c.read_packet()
    c.close()
    c, present = _connect(emulator, clean=False)
    assert present
    assert _subscriptions(emulator) == {"$iothub/methods/POST/#": 0, "$iothub/twin/res/#": 1}


def test_clean_session_starts_empty_and_discards_the_kept_one(emulator):
    c, _ = _connect(emulator, clean=False)
    c.send(subscribe_packet([("$iothub/methods/POST/#", 0)]))
    c.read_packet()
    c.close()
    c, present = _connect(emulator, clean=True)
    assert not present and _subscriptions(emulator) == {}
    c.close()
    c, present = _connect(emulator, clean=False)
    assert not present and _subscriptions(emulator) == {}


def test_unsubscribe_is_kept_too(emulator):
    c, _ = _connect(emulator, clean=False)
    c.send(subscribe_packet([("$iothub/methods/POST/#", 0), ("$iothub/twin/res/#", 0)]))
    c.read_packet()
    c.send(bytes([0xA2, 22]) + b"\x00\x02\x00\x12$iothub/twin/res/#")
    assert c.read_packet()[0] == 11
    c.close()
    c, present = _connect(emulator, clean=False)
    assert present and _subscriptions(emulator) == {"$iothub/methods/POST/#": 0}


def test_a_module_may_hold_five_subscriptions_and_a_sixth_closes(emulator):
    # Devices have four documented filters and modules five, so any sixth one is also a filter
    # IoT Hub does not know; either rule closes the connection.
    c = RawClient(emulator)
    c.send(connect_packet("device1/module1", "localhost/device1/module1/?api-version=2021-04-12",
                          device_token(emulator, "device1", "module1"), clean=False))
    assert c.connack() == 0
    filters = ["devices/device1/modules/module1/inputs/#", "devices/device1/modules/module1/#", "$iothub/twin/res/#",
               "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"]
    for i, topic in enumerate(filters, start=1):
        c.send(subscribe_packet([(topic, 1)], packet_id=i))
        assert c.read_packet()[0] == 9
    c.send(subscribe_packet([("$iothub/twin/res/#", 1)], packet_id=9))  # a repeat is not a new one
    assert c.read_packet()[0] == 9
    assert len(emulator.hub.sessions[("device1", "module1")].state.subscriptions) == 5
    c.send(subscribe_packet([("devices/device1/messages/devicebound/#", 1)], packet_id=10))
    assert c.closed_by_server()


def test_deleting_the_device_drops_its_session(emulator_thread, emulator):
    c, _ = _connect(emulator, clean=False)
    c.send(subscribe_packet([("$iothub/methods/POST/#", 0)]))
    c.read_packet()
    emulator_thread.call(emulator.registry.delete("device1"))
    assert c.closed_by_server()
    emulator_thread.call(emulator.registry.put_device({"deviceId": "device1"}, if_match=None))
    c, present = _connect(emulator, clean=False)
    assert not present
