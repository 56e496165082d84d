"""CONNECT over real TLS sockets: the CONNACK codes IoT Hub answers with."""

from __future__ import annotations

import logging
import time

import pytest

from azure_iot_harness.config import WELL_KNOWN_POLICIES, WELL_KNOWN_SAS_DEVICE_KEYS
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from tests.helpers import RawClient, connect_packet, device_token, publish_packet, raw_sas_connect, sas_device, wait_for

USER = "localhost/device1/?api-version=2021-04-12"


def _connack(emu, client_id, username, password, **kw):
    c = RawClient(emu)
    try:
        c.send(connect_packet(client_id, username, password, **kw))
        return c.connack()
    finally:
        c.close()


def _token(uri, key=WELL_KNOWN_SAS_DEVICE_KEYS[0], **kw):
    return sas.generate(uri, key, **kw)


def test_paho_device_connects_and_sends(emulator):
    dev = sas_device(emulator)
    assert dev.connect() == 0
    mid = dev.publish("devices/device1/messages/events/", b"hello")
    wait_for(lambda: mid in dev.acked)
    dev.close()


@pytest.mark.parametrize(
    "username",
    [
        "localhost/device1/?api-version=2021-04-12",
        "localhost/device1/api-version=2016-11-14",
        "localhost/device1",
        "localhost/device1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0",
        "LOCALHOST/device1/?api-version=2021-04-12",
    ],
)
def test_username_forms_are_accepted(emulator, username):
    assert _connack(emulator, "device1", username, device_token(emulator, "device1")) == 0


def test_module_connects_with_module_token(emulator):
    assert _connack(emulator, "device1/module1", "localhost/device1/module1/?api-version=2021-04-12",
                    device_token(emulator, "device1", "module1")) == 0


@pytest.mark.parametrize(
    "sr",
    [
        "localhost%2Fdevices%2Fdevice1",
        "localhost%2fdevices%2fdevice1",
        "localhost/devices/device1",
        "localhost%3A8883%2Fdevices%2Fdevice1",
    ],
)
def test_sas_sr_spellings(emulator, sr):
    se = int(time.time()) + 300
    sig = sas.sign(WELL_KNOWN_SAS_DEVICE_KEYS[0], sr, se)
    token = f"SharedAccessSignature sig={sig.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}&se={se}&sr={sr}"
    assert _connack(emulator, "device1", USER, token) == 0


def test_secondary_key_works(emulator):
    assert _connack(emulator, "device1", USER, _token("localhost/devices/device1", WELL_KNOWN_SAS_DEVICE_KEYS[1])) == 0


def test_policy_token_with_device_connect(emulator):
    device = next(p for p in WELL_KNOWN_POLICIES if p.name == "device")
    assert _connack(emulator, "device1", USER, _token("localhost/devices", device.key, key_name="device")) == 0


@pytest.mark.parametrize(
    "why, password",
    [
        ("malformed", "SharedAccessSignature garbage"),
        ("not a SAS token", "hello"),
        ("bad base64", "SharedAccessSignature sr=localhost%2Fdevices%2Fdevice1&sig=!!!&se=9999999999"),
        ("unknown field", _token("localhost/devices/device1") + "&foo=bar"),
        ("expired", _token("localhost/devices/device1", expiry=int(time.time()) - 10)),
        ("wrong key", _token("localhost/devices/device1", WELL_KNOWN_POLICIES[0].key)),
        ("wrong device", _token("localhost/devices/x509-device1")),
        ("wrong host", _token("otherhub/devices/device1")),
        ("DPS-scoped", _token("0ne00000001/registrations/device1", key_name="registration")),
        ("service policy", _token("localhost", WELL_KNOWN_POLICIES[1].key, key_name="service")),
        ("unknown policy", _token("localhost", WELL_KNOWN_POLICIES[0].key, key_name="nope")),
        ("module token for device", _token("localhost/devices/device1/modules/module1")),
    ],
)
def test_bad_tokens_get_connack_5(emulator, why, password, caplog):
    assert _connack(emulator, "device1", USER, password) == 5, why
    assert any("CONNACK 5" in r.getMessage() for r in caplog.records)


def test_unknown_device_gets_5(emulator):
    assert _connack(emulator, "ghost", "localhost/ghost/?api-version=2021-04-12", _token("localhost/devices/ghost")) == 5


def test_no_password_for_sas_device_gets_5(emulator):
    assert _connack(emulator, "device1", USER, None) == 5


def test_client_id_must_match_username(emulator):
    assert _connack(emulator, "someone-else", USER, device_token(emulator, "device1")) == 2
    assert _connack(emulator, "", USER, device_token(emulator, "device1")) == 2


def test_username_for_another_hub_gets_5(emulator):
    assert _connack(emulator, "device1", "otherhub/device1/?api-version=2021-04-12", device_token(emulator, "device1")) == 5


@pytest.mark.parametrize("username", [None, "justonesegment", "a/b/c/d/e"])
def test_unusable_username_gets_5(emulator, username):
    assert _connack(emulator, "device1", username, device_token(emulator, "device1")) == 5


def test_disabled_device_gets_3(emulator_thread, emulator):
    doc = emulator.registry.view("device1")
    doc["status"] = "disabled"
    emulator_thread.call(emulator.registry.put_device(doc, if_match="*"))
    assert _connack(emulator, "device1", USER, device_token(emulator, "device1")) == 3


def test_disabling_a_connected_device_drops_it(emulator_thread, emulator):
    c = raw_sas_connect(emulator)
    doc = emulator.registry.view("device1")
    doc["status"] = "disabled"
    emulator_thread.call(emulator.registry.put_device(doc, if_match="*"))
    assert c.closed_by_server()


def test_deleting_a_connected_device_drops_it(emulator_thread, emulator):
    c = raw_sas_connect(emulator)
    emulator_thread.call(emulator.registry.delete("device1"))
    assert c.closed_by_server()


@pytest.mark.parametrize(
    "proto_name, level",
    [("MQIsdp", 3), ("MQTT", 5), ("MQTT", 0x84), ("MQTT", 3)],
)
def test_other_protocol_versions_get_connack_1(emulator, proto_name, level):
    assert _connack(emulator, "device1", USER, device_token(emulator, "device1"), proto_name=proto_name, level=level) == 1


def test_second_connection_of_a_device_closes_the_first(emulator):
    first = raw_sas_connect(emulator)
    second = raw_sas_connect(emulator)
    assert first.closed_by_server()
    second.send(publish_packet("devices/device1/messages/events/", b"x", packet_id=7))
    kind, _, body = second.read_packet()
    assert kind == 4 and body == b"\x00\x07"
    wait_for(lambda: emulator.registry.view("device1")["connectionState"] == "Connected")


def test_connection_state_is_tracked(emulator):
    c = raw_sas_connect(emulator)
    wait_for(lambda: emulator.registry.view("device1")["connectionState"] == "Connected")
    c.send(bytes([0xE0, 0]))  # DISCONNECT
    wait_for(lambda: emulator.registry.view("device1")["connectionState"] == "Disconnected")


def test_token_expiry_closes_the_connection(emulator, caplog):
    # How soon after the token's expiry the socket closes is measured in benchmarks/timers.py.
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    c = RawClient(emulator)
    c.send(connect_packet("device1", USER, device_token(emulator, "device1", ttl=2)))
    assert c.connack() == 0
    assert c.closed_by_server(timeout=30)  # keep-alive is 60 s: only the token can end it sooner
    assert "device1: SAS token expired, closing the connection" in caplog.messages


def test_token_expiry_closes_a_connection_that_keeps_pinging(emulator, caplog):
    # The expiry shares the keep-alive's timer: every PINGREQ moves the keep-alive's deadline,
    # never the token's.
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    c = RawClient(emulator)
    c.send(connect_packet("device1", USER, device_token(emulator, "device1", ttl=2), keepalive=1))
    assert c.connack() == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)  # the scenario: a device that pings every 0.5 s
        try:
            c.send(bytes([0xC0, 0]))
            packet = c.read_packet(2)
            if packet is None or packet[0] != 13:  # not a PINGRESP: closed
                break
        except (OSError, ConnectionError):
            break
    assert c.closed_by_server(timeout=5)
    assert "device1: SAS token expired, closing the connection" in caplog.messages
    assert not any("keep-alive" in m for m in caplog.messages), caplog.messages


def test_a_connection_without_connect_is_closed_after_the_connect_timeout(caplog):
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, connect_timeout=1) as emu:
        silent = RawClient(emu)  # TLS done, no CONNECT
        t0 = time.monotonic()
        assert silent.closed_by_server(timeout=10)
        assert time.monotonic() - t0 >= 0.9  # not before the 1 s it was given
        assert any("no CONNECT within 1 s, closing" in m for m in caplog.messages), caplog.messages
        late = RawClient(emu)  # the timeout covers the CONNECT only: this one is answered
        late.send(connect_packet("device1", USER, device_token(emu, "device1")))
        assert late.connack() == 0
        time.sleep(1.5)  # the scenario: the device stays quiet past the connect timeout
        late.send(bytes([0xC0, 0]))
        packet = late.read_packet(5)
        assert packet is not None and packet[0] == 13  # PINGRESP: still open


def test_keep_alive_is_enforced_at_one_and_a_half_times(emulator, caplog):
    # The time it takes, beside mosquitto's, is measured in benchmarks/timers.py.
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    c = RawClient(emulator)
    c.send(connect_packet("device1", USER, device_token(emulator, "device1"), keepalive=1))
    assert c.connack() == 0
    assert c.closed_by_server(timeout=30)
    assert any("nothing received for 1.5 s (1.5 x keep-alive), closing the connection" in m for m in caplog.messages), caplog.messages


def test_pings_keep_the_connection_open(emulator):
    c = RawClient(emulator)
    c.send(connect_packet("device1", USER, device_token(emulator, "device1"), keepalive=1))
    assert c.connack() == 0
    for _ in range(4):  # 2 s in all, past the 1.5 s an idle connection gets
        time.sleep(0.5)  # the scenario: a device that pings every 0.5 s, not a wait for anything
        c.send(bytes([0xC0, 0]))
        assert c.read_packet(2)[0] == 13  # PINGRESP
