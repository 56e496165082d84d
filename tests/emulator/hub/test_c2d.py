"""Cloud-to-device messages: delivery, completion, redelivery, offline queueing, limits."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from azure_iot_harness.emulator.app import EmulatorThread
from tests.helpers import RawClient, connect_packet, device_token, https, packet, sas_device, subscribe_packet, wait_for

C2D = "devices/device1/messages/devicebound/#"


LOCK_SECONDS = 1


@pytest.fixture
def emu():
    # A short lock so redelivery can be watched.
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, c2d_lock_seconds=LOCK_SECONDS) as emu:
        yield emu


def _send(emu, data="hello", **fields):
    status, _, body = https(emu, "POST", "/_emulator/c2d/device1", {"data": data, **fields})
    assert status == 201, body
    return body


def _raw_device(emu, clean=False, subscribe=True):
    c = RawClient(emu)
    c.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", device_token(emu, "device1"), clean=clean))
    kind, _, body = c.read_packet()
    assert kind == 2 and body[1] == 0
    if subscribe:
        c.send(subscribe_packet([(C2D, 1)], packet_id=1))
        assert c.read_packet()[0] == 9
    return c, bool(body[0] & 1)


def _publish(c):
    """(topic, payload, flags, packet id) of the next PUBLISH from the hub."""
    kind, flags, body = c.read_packet()
    assert kind == 3, f"expected PUBLISH, got {kind}"
    n = int.from_bytes(body[:2], "big")
    topic = body[2 : 2 + n].decode()
    pid = int.from_bytes(body[2 + n : 4 + n], "big") if flags & 0x06 else None
    return topic, body[4 + n :] if pid is not None else body[2 + n :], flags, pid


def _bag(topic):
    bag = topic.split("/messages/devicebound/", 1)[1]
    return {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, _, v in (p.partition("=") for p in bag.split("&"))}


def _puback(c, pid):
    c.send(packet(4, 0, pid.to_bytes(2, "big")))


def test_delivered_with_system_and_application_properties(emu):
    c, _ = _raw_device(emu)
    sent = _send(emu, "hi", properties={"color": "red", "note": "a b&c"}, messageId="m-1", correlationId="c-1",
                 contentType="application/json", contentEncoding="utf-8", ack="full")
    topic, payload, flags, pid = _publish(c)
    assert payload == b"hi" and flags & 0x06 == 0x02 and not flags & 0x08
    assert topic.startswith("devices/device1/messages/devicebound/%24.")
    assert "%24.to=%2Fdevices%2Fdevice1%2Fmessages%2Fdevicebound" in topic
    bag = _bag(topic)
    assert bag["$.mid"] == "m-1" == sent["messageId"] and bag["$.cid"] == "c-1"
    assert bag["$.ct"] == "application/json" and bag["$.ce"] == "utf-8" and bag["iothub-ack"] == "full"
    assert bag["color"] == "red" and bag["note"] == "a b&c" and bag["$.exp"].endswith("Z")


def test_puback_completes_the_message(emu):
    c, _ = _raw_device(emu)
    _send(emu)
    *_, pid = _publish(c)
    assert emu.registry.view("device1")["cloudToDeviceMessageCount"] == 1
    _puback(c, pid)
    wait_for(lambda: emu.registry.view("device1")["cloudToDeviceMessageCount"] == 0)
    # A window by nature: proving nothing comes again means waiting past the lock (redelivery
    # would go out when it ends), then showing the next packet is our PINGRESP.
    time.sleep(LOCK_SECONDS + 0.5)
    c.send(bytes([0xC0, 0]))
    assert c.read_packet()[0] == 13


def test_without_puback_it_is_redelivered_after_the_lock_with_dup(emu):
    c, _ = _raw_device(emu)
    _send(emu)
    topic, payload, flags, pid = _publish(c)
    again = _publish(c)  # after the 1 s lock
    assert again[0] == topic and again[1] == payload and again[3] == pid and again[2] & 0x08
    _puback(c, pid)
    wait_for(lambda: emu.registry.view("device1")["cloudToDeviceMessageCount"] == 0)


def test_redelivered_across_a_reconnect_of_a_persistent_session(emu):
    c, _ = _raw_device(emu)
    _send(emu, "keep me")
    _publish(c)
    c.close()
    c, present = _raw_device(emu, subscribe=False)  # resumes: no SUBSCRIBE needed
    assert present
    topic, payload, flags, pid = _publish(c)
    assert payload == b"keep me" and flags & 0x08
    _puback(c, pid)
    wait_for(lambda: emu.registry.view("device1")["cloudToDeviceMessageCount"] == 0)


def test_messages_queued_while_offline_arrive_when_the_device_returns(emu):
    c, _ = _raw_device(emu)
    c.send(bytes([0xE0, 0]))
    c.close()
    wait_for(lambda: emu.registry.view("device1")["connectionState"] == "Disconnected")
    for i in range(3):
        _send(emu, f"offline {i}")
    c, present = _raw_device(emu, subscribe=False)
    assert present
    assert [_publish(c)[1] for _ in range(3)] == [b"offline 0", b"offline 1", b"offline 2"]


def test_clean_session_gets_only_messages_after_its_subscription(emu):
    _send(emu, "before")
    c, present = _raw_device(emu, clean=True)
    assert not present
    _send(emu, "after")
    assert _publish(c)[1] == b"after"


def test_qos0_subscription_gets_at_most_once(emu):
    c, _ = _raw_device(emu, subscribe=False)
    c.send(subscribe_packet([(C2D, 0)], packet_id=1))
    assert c.read_packet()[2] == b"\x00\x01\x00"
    _send(emu)
    topic, payload, flags, pid = _publish(c)
    assert pid is None and flags & 0x06 == 0
    wait_for(lambda: emu.registry.view("device1")["cloudToDeviceMessageCount"] == 0)


def test_expired_messages_are_not_delivered(emu):
    c, _ = _raw_device(emu)
    c.send(bytes([0xE0, 0]))
    c.close()
    https(emu, "POST", "/_emulator/c2d/device1", {"data": "short", "ttlSeconds": 0.2})
    # The scenario is the TTL passing while the device is away. Its 0.2 s ran from before the POST
    # returned, so it is over after this; asking the service API would drop the message itself.
    time.sleep(0.2)
    c, present = _raw_device(emu, subscribe=False)
    assert present
    fresh = _send(emu, "fresh")
    assert _publish(c)[1] == b"fresh"
    assert [m["messageId"] for m in https(emu, "GET", "/_emulator/c2d/device1")[2]] == [fresh["messageId"]]


def test_limits_and_unknown_device(emu):
    status, headers, body = https(emu, "POST", "/_emulator/c2d/ghost", {"data": "x"})
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotFound"
    status, _, body = https(emu, "POST", "/_emulator/c2d/device1", {"data": "x" * (64 * 1024 + 1)})
    assert status == 413
    for i in range(50):
        _send(emu, str(i))
    status, headers, body = https(emu, "POST", "/_emulator/c2d/device1", {"data": "51st"})
    assert status == 403 and headers["iothub-errorcode"] == "DeviceMaximumQueueDepthExceeded"
    assert emu.registry.view("device1")["cloudToDeviceMessageCount"] == 50


@pytest.mark.parametrize(
    "body",
    [{}, {"data": 1}, {"data": "x", "dataBase64": "eA=="}, {"dataBase64": "!!"}, {"data": "x", "properties": {"a": 1}},
     {"data": "x", "ack": "sometimes"}, {"data": "x", "ttlSeconds": -1}],
)
def test_bad_send_requests(emu, body):
    assert https(emu, "POST", "/_emulator/c2d/device1", body)[0] == 400


def test_send_needs_service_connect(emu):
    assert https(emu, "POST", "/_emulator/c2d/device1", {"data": "x"}, token=emu.service_token("registryRead"))[0] == 401


def test_purge(emu):
    for _ in range(3):
        _send(emu)
    status, _, body = https(emu, "DELETE", "/devices/device1/commands?api-version=2021-04-12")
    assert status == 200 and body == {"deviceId": "device1", "totalMessagesPurged": 3}
    assert emu.registry.view("device1")["cloudToDeviceMessageCount"] == 0


def test_binary_body_and_paho_subscriber(emu):
    dev = sas_device(emu)
    assert dev.connect() == 0
    dev.client.subscribe(C2D, 1)
    wait_for(lambda: C2D in emu.hub.sessions[("device1", None)].state.subscriptions)
    https(emu, "POST", "/_emulator/c2d/device1", {"dataBase64": "AAEC/w=="})
    msg = wait_for(lambda: dev.messages and dev.messages[0])
    assert msg.payload == b"\x00\x01\x02\xff"
    wait_for(lambda: emu.registry.view("device1")["cloudToDeviceMessageCount"] == 0)  # paho acknowledged
    dev.close()


def test_queue_survives_a_restart(tmp_path):
    with EmulatorThread(data_dir=tmp_path, mqtt_port=0, https_port=0) as emu:
        c, _ = _raw_device(emu)
        c.send(bytes([0xE0, 0]))
        _send(emu, "durable")
    with EmulatorThread(data_dir=tmp_path, mqtt_port=0, https_port=0) as emu:
        c, present = _raw_device(emu, subscribe=False)
        assert present  # subscriptions kept in the store too
        assert _publish(c)[1] == b"durable"


# ---- the Embedded C SDK's filter: `+` for the device id --------------------------------------------

EMBEDDED_C2D = "devices/+/messages/devicebound/#"  # AZ_IOT_HUB_CLIENT_C2D_SUBSCRIBE_TOPIC


def test_plus_filter_delivers_the_devices_own_messages_only(emu):
    https(emu, "PUT", "/devices/device2?api-version=2021-04-12", {"deviceId": "device2"})
    c, _ = _raw_device(emu, clean=True, subscribe=False)
    c.send(subscribe_packet([(EMBEDDED_C2D, 1)], packet_id=7))
    assert c.read_packet() == (9, 0, b"\x00\x07\x01")
    _send(emu, "for device1")
    assert https(emu, "POST", "/_emulator/c2d/device2", {"data": "for device2"})[0] == 201
    _send(emu, "device1 again")
    topic, payload, _, pid = _publish(c)
    assert topic.startswith("devices/device1/messages/devicebound/") and payload == b"for device1"
    _puback(c, pid)
    assert _publish(c)[1] == b"device1 again"
    assert emu.registry.view("device2")["cloudToDeviceMessageCount"] == 1  # still queued for device2


def test_plus_filter_is_kept_in_a_persistent_session(emu):
    c, _ = _raw_device(emu, subscribe=False)
    c.send(subscribe_packet([(EMBEDDED_C2D, 1)], packet_id=1))
    assert c.read_packet()[0] == 9
    c.send(bytes([0xE0, 0]))
    c.close()
    wait_for(lambda: emu.registry.view("device1")["connectionState"] == "Disconnected")
    _send(emu, "while away")
    c, present = _raw_device(emu, subscribe=False)
    assert present and _publish(c)[1] == b"while away"


def test_both_forms_together_deliver_each_message_once(emu):
    c, _ = _raw_device(emu, clean=True, subscribe=False)
    c.send(subscribe_packet([(C2D, 1), (EMBEDDED_C2D, 1)], packet_id=1))
    assert c.read_packet()[0] == 9
    for text in ("one", "two"):
        _send(emu, text)
        topic, payload, _, pid = _publish(c)
        assert payload == text.encode()  # not a second copy of the one before
        _puback(c, pid)


@pytest.mark.parametrize(
    "refused",
    [
        "devices/device2/messages/devicebound/#",  # another device's messages
        "devices/#",
        "devices/+/messages/#",
        "devices/+/messages/devicebound/+",
        "+/+/messages/devicebound/#",
        "devices/+/modules/+/inputs/#",
        "devices/+/messages/events/#",
    ],
)
def test_filters_reaching_beyond_the_device_are_still_refused(emu, refused):
    c, _ = _raw_device(emu, clean=True, subscribe=False)
    c.send(subscribe_packet([(refused, 1)], packet_id=1))
    assert c.closed_by_server()


def test_a_module_may_not_use_the_plus_filter(emu):
    c = RawClient(emu)
    c.send(connect_packet("device1/module1", "localhost/device1/module1/?api-version=2021-04-12", device_token(emu, "device1", "module1")))
    assert c.connack() == 0
    c.send(subscribe_packet([(EMBEDDED_C2D, 1)], packet_id=1))
    assert c.closed_by_server()
