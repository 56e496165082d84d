"""The unmodified azure-iot-device SDK against the emulator, trusting the CA via SSL_CERT_FILE."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.iot.device import X509, IoTHubDeviceClient, IoTHubModuleClient, Message

from azure_iot_harness.certs import self_signed_cert
from tests.helpers import https


@pytest.fixture
def hub(standard_ports_emulator, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(standard_ports_emulator.ca_file))
    return standard_ports_emulator


def _telemetry(emu):
    status, _, body = https(emu, "GET", "/_emulator/telemetry?limit=100")
    assert status == 200
    return body["messages"]


def _send(client, body: str, **props):
    msg = Message(body, message_id=str(uuid.uuid4()), content_encoding="utf-8", content_type="application/json")
    msg.custom_properties.update(props)
    client.connect()
    try:
        client.send_message(msg)  # returns once PUBACKed
    finally:
        client.shutdown()
    return msg


def test_sas_device_from_connection_string(hub):
    client = IoTHubDeviceClient.create_from_connection_string(hub.connection_string(device="device1"))
    msg = _send(client, json.dumps({"temperature": 21.5}), unit="celsius", note="a b&c=d")
    [got] = _telemetry(hub)
    assert json.loads(got["body"]) == {"temperature": 21.5}
    assert got["properties"] == {"unit": "celsius", "note": "a b&c=d"}
    sp = got["systemProperties"]
    assert sp["message-id"] == msg.message_id
    assert sp["content-type"] == "application/json" and sp["content-encoding"] == "utf-8"
    assert sp["iothub-connection-device-id"] == "device1"


def test_sas_module_from_connection_string(hub):
    client = IoTHubModuleClient.create_from_connection_string(hub.connection_string(device="device1", module="module1"))
    _send(client, "{}")
    [got] = _telemetry(hub)
    assert got["moduleId"] == "module1"


def test_ca_signed_x509_device(hub, tmp_path):
    certfile, keyfile = hub.pki.issue_device_cert("x509-device1").write(tmp_path)
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(str(certfile), str(keyfile)), hostname=hub.host, device_id="x509-device1"
    )
    _send(client, '{"x509": "ca"}')
    [got] = _telemetry(hub)
    assert got["deviceId"] == "x509-device1"
    assert json.loads(got["systemProperties"]["iothub-connection-auth-method"])["type"] == "x509Certificate"


def test_self_signed_x509_device(hub, tmp_path):
    cert = self_signed_cert("thumb-device")
    body = {
        "deviceId": "thumb-device",
        "authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": cert.sha256_thumbprint}},
    }
    status, _, _ = https(hub, "PUT", "/devices/thumb-device?api-version=2021-04-12", body)
    assert status == 200
    certfile, keyfile = cert.write(tmp_path)
    client = IoTHubDeviceClient.create_from_x509_certificate(
        x509=X509(str(certfile), str(keyfile)), hostname=hub.host, device_id="thumb-device"
    )
    _send(client, '{"x509": "self"}')
    assert _telemetry(hub)[0]["deviceId"] == "thumb-device"


def test_wrong_key_is_refused_as_unauthorized(hub):
    from azure.iot.device.exceptions import ClientError, CredentialError

    bad = hub.connection_string(device="device1").rsplit("=", 2)[0] + "=" + "A" * 43 + "="
    client = IoTHubDeviceClient.create_from_connection_string(bad, connection_retry=False)
    with pytest.raises((CredentialError, ClientError)):
        client.connect()
    client.shutdown()
