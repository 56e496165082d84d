"""The unmodified azure-iot-device ProvisioningDeviceClient (MQTT on 8883, MQTT over WebSocket on 443), then the hub with the same credentials."""

from __future__ import annotations

import gc

import pytest
from azure.iot.device import X509, IoTHubDeviceClient, Message, ProvisioningDeviceClient
from azure.iot.device.exceptions import ClientError, CredentialError, ServiceError

from tests.emulator.dps.helpers import group_key
from tests.helpers import https


@pytest.fixture
def emu(standard_ports_emulator, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(standard_ports_emulator.ca_file))
    yield standard_ports_emulator
    gc.collect()


def _send_one(client: IoTHubDeviceClient, text: str) -> None:
    client.connect()
    try:
        client.send_message(Message(text))
    finally:
        client.shutdown()


def _telemetry(emu) -> list[tuple[str, str]]:
    status, _, body = https(emu, "GET", "/_emulator/telemetry?limit=100")
    assert status == 200
    return [(m["deviceId"], m["body"]) for m in body["messages"]]


def test_symmetric_key_group_then_hub(emu):
    rid = "sdk-sym-1"
    key = group_key(rid)
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emu.host, registration_id=rid, id_scope=emu.config.dps_id_scope, symmetric_key=key
    )
    prov.provisioning_payload = {"firmware": "1.0"}
    result = prov.register()
    assert result.status == "assigned"
    state = result.registration_state
    assert (state.assigned_hub, state.device_id, state.sub_status) == (emu.host, rid, "initialAssignment")
    client = IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id)
    _send_one(client, "hello from a provisioned device")
    assert _telemetry(emu) == [(rid, "hello from a provisioned device")]


def test_registration_over_mqtt_over_websocket_on_443(emu):
    rid = "sdk-ws-1"
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emu.host, registration_id=rid, id_scope=emu.config.dps_id_scope, symmetric_key=group_key(rid),
        websockets=True,
    )
    result = prov.register()
    assert result.status == "assigned" and result.registration_state.device_id == rid


def test_individual_enrollment_then_hub(emu):
    """An individual enrollment made over the service API, the key it generated."""
    enrollment = _enroll(emu, "sdk-ind-1")
    key = enrollment["attestation"]["symmetricKey"]["primaryKey"]
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emu.host, registration_id="sdk-ind-1", id_scope=emu.config.dps_id_scope, symmetric_key=key
    )
    result = prov.register()
    assert result.status == "assigned" and result.registration_state.device_id == "sdk-ind-1"
    _send_one(IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=key, hostname=emu.host, device_id="sdk-ind-1"), "ind")
    assert _telemetry(emu) == [("sdk-ind-1", "ind")]


def _enroll(emu, rid: str) -> dict:
    status, _, body = https(
        emu, "PUT", f"/enrollments/{rid}?api-version=2021-10-01", {"registrationId": rid, "attestation": {"type": "symmetricKey"}},
        token=emu.dps_service_token(),
    )  # fmt: skip
    assert status == 200, body
    return body


def test_x509_group_then_hub(emu, tmp_path):
    certfile, keyfile = emu.pki.issue_device_cert("sdk-x509-1").write(tmp_path)
    x509 = X509(str(certfile), str(keyfile))
    prov = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=emu.host, registration_id="sdk-x509-1", id_scope=emu.config.dps_id_scope, x509=x509
    )
    result = prov.register()
    assert result.status == "assigned"
    state = result.registration_state
    client = IoTHubDeviceClient.create_from_x509_certificate(x509=x509, hostname=state.assigned_hub, device_id=state.device_id)
    _send_one(client, "x509")
    assert _telemetry(emu) == [("sdk-x509-1", "x509")]


def test_wrong_key_is_a_credential_error(emu):
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emu.host, registration_id="sdk-bad-1", id_scope=emu.config.dps_id_scope, symmetric_key=group_key("other")
    )
    with pytest.raises((CredentialError, ClientError)):
        prov.register()


def test_disabled_enrollment_is_a_service_error(emu):
    status, _, body = https(
        emu, "PUT", "/enrollments/sdk-off-1?api-version=2021-10-01",
        {"registrationId": "sdk-off-1", "attestation": {"type": "symmetricKey"}, "provisioningStatus": "disabled"},
        token=emu.dps_service_token(),
    )  # fmt: skip
    assert status == 200
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emu.host,
        registration_id="sdk-off-1",
        id_scope=emu.config.dps_id_scope,
        symmetric_key=body["attestation"]["symmetricKey"]["primaryKey"],
    )
    with pytest.raises(ClientError) as exc:
        prov.register()
    # The SDK wraps its own ServiceError ("invalid registration status disabled").
    assert isinstance(exc.value.__cause__, ServiceError) and "status disabled" in str(exc.value.__cause__)
