"""`client device`: the paho device script, zero-config and fully configured, direct and through the edge."""

from __future__ import annotations

import json
import types

from azure_iot_harness.certs import DevPKI
from azure_iot_harness.clients import link
from azure_iot_harness.config import WELL_KNOWN_SAS_DEVICE_KEYS
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import run_cli
from tests.clients.helpers import client, data, failed, ok, wait_messages


def test_sas_zero_config_reaches_monitor_events(hub):
    out = ok(client(hub, "device", "--count", "2", "--interval", "0", "--prop", "unit=celsius", "--prop", "run=sas"))
    assert "connected to mqtts://127.0.0.1:" in out and "as device1 (hub localhost, SAS)" in out
    assert "acknowledged 2 of 2 messages" in out
    events = run_cli("monitor-events", *data(hub), "--device", "device1", "--from-start", "--timeout", "3")
    printed = [json.loads(line) for line in events.stdout.splitlines() if '"run": "sas"' in line]
    assert [json.loads(m["body"])["seq"] for m in printed] == [1, 2]
    for m in printed:
        assert m["deviceId"] == "device1"
        assert m["properties"] == {"unit": "celsius", "run": "sas"}
        assert m["systemProperties"]["content-type"] == "application/json"
        assert m["systemProperties"]["content-encoding"] == "utf-8"


def test_x509_zero_config_issues_a_certificate_from_the_device_ca(hub):
    out = ok(client(hub, "device", "--x509", "--count", "1", "--prop", "run=x509"))
    assert "as x509-device1 (hub localhost, X.509)" in out
    (m,) = wait_messages(hub.info, "x509-device1", 1, where={"run": "x509"})
    assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]


def test_fully_configured_by_flags_as_for_real_azure(hub, tmp_path):
    info = hub.info
    port = str(info["mqtt"]["port"])
    args = ["--host", "localhost", "--port", port, "--ca-file", info["caFile"], "--count", "1"]
    ok(client(None, "device", *args, "--device-id", "device1", "--sas-key", WELL_KNOWN_SAS_DEVICE_KEYS[0], "--prop", "run=flags"))
    token = sas.generate("localhost/devices/device1", WELL_KNOWN_SAS_DEVICE_KEYS[0])
    ok(client(None, "device", *args, "--device-id", "device1", "--sas-token", token, "--data", "plain {seq}", "--prop", "run=token"))
    cs = info["connectionStrings"]["device"] + ";GatewayHostName=127.0.0.1"
    out = ok(client(None, "device", "--connection-string", cs, "--port", port, "--ca-file", info["caFile"], "--count", "1", "--prop", "run=cs"))
    assert "through gateway 127.0.0.1" in out  # TCP/TLS to the gateway, username and SAS for localhost
    cert = DevPKI.load_or_create(hub.data_dir / "pki").issue_device_cert("x509-device1")
    certfile, keyfile = cert.write(tmp_path)
    ok(client(None, "device", *args, "--device-id", "x509-device1", "--cert", str(certfile), "--cert-key", str(keyfile), "--prop", "run=cert"))
    assert len(wait_messages(info, "device1", 1, where={"run": "flags"})) == 1
    (plain,) = wait_messages(info, "device1", 1, where={"run": "token"})
    assert plain["body"] == "plain 1" and "content-type" not in plain["systemProperties"]
    assert len(wait_messages(info, "device1", 1, where={"run": "cs"})) == 1
    assert len(wait_messages(info, "x509-device1", 1, where={"run": "cert"})) == 1


def test_through_the_edge_as_its_leaf_device(edge_hub):
    out = ok(client(edge_hub, "device", "--edge", "--count", "2", "--interval", "0", "--prop", "run=edge"))
    edge = edge_hub.info["edge"]["mqtt"]
    assert f"mqtts://{edge['host']}:{edge['port']} through gateway" in out and "leaf-device1" in out
    assert len(wait_messages(edge_hub.info, "leaf-device1", 2, where={"run": "edge"})) == 2


def test_refusals_are_one_line_with_the_reason(hub, tmp_path):
    wrong_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert "CONNACK 5 (not authorized)" in failed(client(hub, "device", "--sas-key", wrong_key))
    other_ca = DevPKI.generate().write_ca(tmp_path / "other")
    assert "not trusted by the CA file" in failed(client(hub, "device", "--ca-file", str(other_ca)))
    assert "the hub has no device nobody" in failed(client(hub, "device", "--device-id", "nobody"))
    assert "no emulator is running" in failed(client(None, "device", "--data-dir", str(tmp_path / "none")))
    closed = ["--host", "localhost", "--port", "1", "--ca-file", hub.info["caFile"], "--sas-key", wrong_key]
    assert "cannot reach the hub at localhost:1: connection refused" in failed(client(None, "device", *closed))
    assert "--count must be at least 1" in failed(client(hub, "device", "--count", "0"), 2)
    assert "no edgeHub" in failed(client(hub, "device", "--edge"))


def test_paho_2_gets_version_1_callbacks_and_1_6_none(monkeypatch):
    """paho 2.x's version-2 callbacks hide the CONNACK code: the link asks for version 1."""
    made = []

    class FakeClient:
        def __init__(self, *args, **kwargs):
            made.append((args, kwargs))

    version = types.SimpleNamespace(VERSION1="v1", VERSION2="v2")
    fake = types.SimpleNamespace(Client=FakeClient, MQTTv311=4, CallbackAPIVersion=version)
    import paho.mqtt

    monkeypatch.setattr(paho.mqtt, "client", fake)
    monkeypatch.setitem(__import__("sys").modules, "paho.mqtt.client", fake)
    link.paho_client("dev")
    del fake.CallbackAPIVersion
    link.paho_client("dev")
    assert made[0][0] == ("v1",) and made[1][0] == ()
    assert all(kw["protocol"] == 4 and kw["client_id"] == "dev" and kw["reconnect_on_failure"] is False for _, kw in made)
