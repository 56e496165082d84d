"""`client mosquitto-bridge`: a real mosquitto bridged to the hub; brownfield devices publish plain MQTT."""

from __future__ import annotations

import urllib.parse

from azure_iot_harness.certs import DevPKI
from azure_iot_harness.clients.hub_target import HubTarget
from azure_iot_harness.clients.mosquitto_bridge import bridge_config
from tests.cli_helpers import run_cli
from tests.clients.helpers import (
    client,
    data,
    failed,
    ok,
    own_ca_device,
    publish_plain,
    ready_port,
    start,
    subscribe_plain,
    wait_messages,
)
from tests.helpers import wait_for


def test_the_generated_configuration_has_what_iot_hub_needs():
    target = HubTarget("myhub.azure-devices.net", "myhub.azure-devices.net", 8883, "/ca.pem", "dev1", password="SharedAccessSignature sr=x&sig=y&se=1")
    conf = bridge_config(target, local_port=1883, local_bind="127.0.0.1", telemetry_prefix="local/telemetry/", c2d_prefix="local/c2d/").splitlines()
    for line in (
        "listener 1883 127.0.0.1",
        "address myhub.azure-devices.net:8883",
        "remote_clientid dev1",
        "remote_username myhub.azure-devices.net/dev1/?api-version=2021-04-12",
        "remote_password SharedAccessSignature sr=x&sig=y&se=1",
        "bridge_cafile /ca.pem",
        "bridge_protocol_version mqttv311",
        "bridge_tls_version tlsv1.2",
        "bridge_insecure false",
        "try_private false",
        "notifications false",
        "topic devices/dev1/messages/events/# out 1",
        "topic # out 1 local/telemetry/ devices/dev1/messages/events/",
        "topic # in 1 local/c2d/ devices/dev1/messages/devicebound/",
    ):
        assert line in conf
    x509 = HubTarget("h", "h", 8883, "/ca.pem", "dev1", cert_file="/d.pem", key_file="/d.key")
    conf = bridge_config(x509, local_port=1, local_bind="127.0.0.1", telemetry_prefix="", c2d_prefix="")
    assert "bridge_certfile /d.pem" in conf and "bridge_keyfile /d.key" in conf and "remote_password" not in conf
    assert " in 1 " not in conf and "topic # out" not in conf


def test_sas_bridge_forwards_telemetry_and_brings_c2d_back(hub, mosquitto):
    bridge = start(hub, "mosquitto-bridge", "--local-port", "0")
    try:
        port = ready_port(bridge)
        assert any("bridge connected to mqtts://" in line and "device1 (hub localhost, SAS)" in line for line in bridge.stdout.seen)
        publish_plain(port, "local/telemetry/run=remapped", '{"t": 1}')
        publish_plain(port, "devices/device1/messages/events/run=as-is&unit=C", "22.5")
        (remapped,) = wait_messages(hub.info, "device1", 1, where={"run": "remapped"})
        assert remapped["body"] == '{"t": 1}'
        (as_is,) = wait_messages(hub.info, "device1", 1, where={"run": "as-is"})
        assert as_is["body"] == "22.5" and as_is["properties"]["unit"] == "C"

        sub, got = subscribe_plain(port, "local/c2d/#")
        try:
            sent = run_cli("c2d", "send", *data(hub), "--device", "device1", "--data", "open valve", "--prop", "k=v")
            assert sent.returncode == 0, sent.stderr
            wait_for(lambda: got, 15, what="a cloud-to-device message on local/c2d/#")
            assert got[0].payload == b"open valve"
            bag = dict(urllib.parse.parse_qsl(got[0].topic[len("local/c2d/"):]))
            assert bag["k"] == "v" and bag["$.to"] == "/devices/device1/messages/devicebound"
        finally:
            sub.disconnect()
            sub.loop_stop()
    finally:
        assert bridge.terminate() == 0


def test_x509_bridge(hub, mosquitto):
    bridge = start(hub, "mosquitto-bridge", "--local-port", "0", "--x509")
    try:
        publish_plain(ready_port(bridge), "local/telemetry/run=bridge-x509", "x")
        (m,) = wait_messages(hub.info, "x509-device1", 1, where={"run": "bridge-x509"})
        assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]
    finally:
        bridge.terminate()


def test_bridge_through_the_edge(edge_hub, mosquitto):
    bridge = start(edge_hub, "mosquitto-bridge", "--local-port", "0", "--edge")
    try:
        assert any("through gateway" in line for line in bridge.stdout.seen)
        publish_plain(ready_port(bridge), "local/telemetry/run=bridge-edge", "x")
        assert wait_messages(edge_hub.info, "leaf-device1", 1, where={"run": "bridge-edge"})
    finally:
        bridge.terminate()


def test_bridge_failures_name_the_reason(hub, mosquitto, tmp_path):
    wrong_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    local = ["--local-port", "0"]
    refused = failed(client(hub, "mosquitto-bridge", *local, "--sas-key", wrong_key))
    assert "the hub refused the bridge's connection" in refused and "CONNACK 5" in refused
    other_ca = DevPKI.generate().write_ca(tmp_path / "other")
    assert "not trusted by the CA file" in failed(client(hub, "mosquitto-bridge", *local, "--ca-file", str(other_ca)))
    assert "connection refused" in failed(client(hub, "mosquitto-bridge", *local, "--port", "1"))
    missing = failed(client(hub, "mosquitto-bridge", *local, "--mosquitto", "no-such-mosquitto"), 2)
    assert "apt-get install mosquitto" in missing


def test_print_config_needs_no_mosquitto(hub):
    out = ok(client(hub, "mosquitto-bridge", "--print-config", "--mosquitto", "no-such-mosquitto", "--local-port", "1884"))
    assert "listener 1884 127.0.0.1" in out and "try_private false" in out


def test_x509_bridge_with_bridge_certfile_holding_the_chain(hub, mosquitto, tmp_path):
    cert, key = own_ca_device(hub, "bridge-chain-1", tmp_path)
    bridge = start(hub, "mosquitto-bridge", "--local-port", "0", "--x509", "--device-id", "bridge-chain-1", "--cert", cert, "--cert-key", key)
    try:
        publish_plain(ready_port(bridge), "local/telemetry/run=bridge-chain", "x")
        (m,) = wait_messages(hub.info, "bridge-chain-1", 1, where={"run": "bridge-chain"})
        assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]
    finally:
        bridge.terminate()
