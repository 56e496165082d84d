"""DPS faults with the unmodified azure-iot-device ProvisioningDeviceClient (MQTT on 8883)."""

from __future__ import annotations

import gc

import pytest
from azure.iot.device import IoTHubDeviceClient, Message, ProvisioningDeviceClient
from azure.iot.device.exceptions import ClientError, CredentialError, ServiceError

from tests.conftest import free_loopback_address
from tests.emulator.dps.helpers import group_key
from tests.helpers import https


@pytest.fixture
def emu(standard_ports_emulator, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(standard_ports_emulator.ca_file))
    yield standard_ports_emulator
    gc.collect()


def _provisioning(emu, rid: str) -> ProvisioningDeviceClient:
    return ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emu.host, registration_id=rid, id_scope=emu.config.dps_id_scope, symmetric_key=group_key(rid)
    )


def _answers(emu, rid: str) -> list[str]:
    """The DPS answer topics the device got, in order."""
    return [e.topic for e in emu.trace.events(device_id=rid) if e.direction == "out" and e.type == "PUBLISH"]


def test_throttled_registration_is_retried_after_retry_after(emu):
    rid = "fault-dps-429"
    emu.faults.add("dps-throttle", device_id=rid, retryAfter=1)
    result = _provisioning(emu, rid).register()
    assert result.status == "assigned"
    answers = _answers(emu, rid)
    assert answers[0].startswith("$dps/registrations/res/429/") and answers[0].endswith("&retry-after=1")
    assert any(a.startswith("$dps/registrations/res/200/") for a in answers[1:])


def test_server_error_is_retried(emu):
    rid = "fault-dps-503"
    emu.faults.add("dps-error", device_id=rid, status=503)
    assert _provisioning(emu, rid).register().status == "assigned"
    assert _answers(emu, rid)[0].startswith("$dps/registrations/res/503/")


def test_unauthorized_registration_fails(emu):
    rid = "fault-dps-401"
    emu.faults.add("dps-error", device_id=rid, status=401)
    with pytest.raises((ClientError, CredentialError, ServiceError)):
        _provisioning(emu, rid).register()
    [answer] = _answers(emu, rid)  # not retried
    assert answer.startswith("$dps/registrations/res/401/")


def test_assigned_to_another_hub_host_the_device_connects_there(emu):
    rid = "fault-dps-move"
    other = free_loopback_address()
    status, _, fault = https(emu, "POST", "/_emulator/faults", {"kind": "dps-assign-hub", "deviceId": rid, "params": {"hostName": other}})
    assert status == 201, fault
    result = _provisioning(emu, rid).register()
    assert result.status == "assigned" and result.registration_state.assigned_hub == other
    client = IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=group_key(rid), hostname=other, device_id=rid)
    client.connect()
    try:
        client.send_message(Message("from the other hub host"))
    finally:
        client.shutdown()
    # Nothing else listens on that address: the device reached the hub under its other name.
    status, _, body = https(emu, "GET", f"/_emulator/telemetry?deviceId={rid}")
    assert [m["body"] for m in body["messages"]] == ["from the other hub host"]
