"""DPS's service API with the unmodified service SDKs: azure-iot-deviceprovisioning 1.0.0b1 (azure-core)
and the older azure-iothub-provisioningserviceclient 1.2.0 (msrest). Trust via REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import base64
import gc
import json

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from azure_iot_harness.certs import self_signed_cert
from tests.emulator.dps.helpers import RawDps, group_key, token
from tests.helpers import https


@pytest.fixture
def client(emulator, monkeypatch) -> DeviceProvisioningClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    yield DeviceProvisioningClient.from_connection_string(emulator.dps_connection_string())
    gc.collect()  # close pooled keep-alive sockets before the emulator stops


def _error_code(exc: HttpResponseError) -> int:
    return json.loads(exc.response.text())["errorCode"]


def test_individual_enrollment_crud_with_generated_keys(client):
    created = client.enrollment.create_or_update(id="svc-1", enrollment={"registrationId": "svc-1", "attestation": {"type": "symmetricKey"}})
    keys = created["attestation"]["symmetricKey"]
    assert len(base64.b64decode(keys["primaryKey"])) == 32 and keys["primaryKey"] != keys["secondaryKey"]
    assert created["provisioningStatus"] == "enabled" and created["etag"]
    assert client.enrollment.get(id="svc-1") == created
    assert client.enrollment.get_attestation_mechanism(id="svc-1") == created["attestation"]
    # Update with the etag; a stale etag is refused; without one the create conflicts.
    created["provisioningStatus"] = "disabled"
    updated = client.enrollment.create_or_update(id="svc-1", enrollment=created, if_match=created["etag"])
    assert updated["provisioningStatus"] == "disabled" and updated["etag"] != created["etag"]
    assert updated["attestation"] == created["attestation"]
    with pytest.raises(HttpResponseError) as stale:
        client.enrollment.create_or_update(id="svc-1", enrollment=created, if_match=created["etag"])
    assert stale.value.status_code == 412 and _error_code(stale.value) == 412001
    with pytest.raises(ResourceExistsError) as exists:
        client.enrollment.create_or_update(id="svc-1", enrollment=created)
    assert _error_code(exists.value) == 409201
    with pytest.raises(HttpResponseError) as wrong:
        client.enrollment.delete(id="svc-1", if_match=created["etag"])
    assert wrong.value.status_code == 412
    client.enrollment.delete(id="svc-1", if_match=updated["etag"])
    with pytest.raises(ResourceNotFoundError) as gone:
        client.enrollment.get(id="svc-1")
    assert _error_code(gone.value) == 404201


def test_enrollment_group_crud_and_query(client, emulator):
    group = {"enrollmentGroupId": "svc-group", "attestation": {"type": "symmetricKey"}, "initialTwin": {"tags": {"a": 1}}}
    created = client.enrollment_group.create_or_update(id="svc-group", enrollment_group=group)
    assert created["initialTwin"] == {"tags": {"a": 1}, "properties": {"desired": {}}}
    ids = [g["enrollmentGroupId"] for g in client.enrollment_group.query(query_specification={"query": "SELECT * FROM enrollmentGroups"}, top=1)]
    assert ids == ["svc-group", "symmetric-group1", "x509-group1"]  # three pages of one
    with pytest.raises(ResourceNotFoundError) as missing:
        client.enrollment_group.get(id="no-such-group")
    assert _error_code(missing.value) == 404203
    with pytest.raises(HttpResponseError) as unsupported:
        list(client.enrollment_group.query(query_specification={"query": "SELECT * FROM enrollmentGroups WHERE a = 1"}))
    assert "not supported by the emulator" in unsupported.value.response.text()
    client.enrollment_group.delete(id="svc-group")


def test_x509_enrollment_shows_certificate_info(client):
    cert = self_signed_cert("svc-x509")
    body = {"registrationId": "svc-x509", "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert.cert_pem.decode()}}}}}
    created = client.enrollment.create_or_update(id="svc-x509", enrollment=body)
    primary = created["attestation"]["x509"]["clientCertificates"]["primary"]
    assert "certificate" not in primary and primary["info"]["sha1Thumbprint"] == cert.sha1_thumbprint
    # What was read can be written back (with its etag): the certificate is kept.
    again = client.enrollment.create_or_update(id="svc-x509", enrollment=created, if_match=created["etag"])
    assert again["attestation"] == created["attestation"]


def test_bulk_operation(client):
    result = client.enrollment.run_bulk_operation(
        bulk_operation={
            "mode": "create",
            "enrollments": [
                {"registrationId": "bulk-1", "attestation": {"type": "symmetricKey"}},
                {"registrationId": "bulk-2", "attestation": {"type": "none"}},
            ],
        }
    )
    assert result["isSuccessful"] is False
    assert [(e["registrationId"], e["errorCode"]) for e in result["errors"]] == [("bulk-2", 400004)]
    assert client.enrollment.get(id="bulk-1")["registrationId"] == "bulk-1"


def test_registration_states(client, emulator):
    rid = "svc-reg-1"
    c = RawDps(emulator, rid, token(emulator, rid, group_key(rid)))
    done = c.provision(rid)
    c.close()
    state = client.device_registration_state.get(id=rid)
    assert state == done["registrationState"]
    assert [s["registrationId"] for s in client.device_registration_state.query(id="symmetric-group1")] == [rid]
    with pytest.raises(HttpResponseError):
        client.device_registration_state.delete(id=rid, if_match="not-the-etag")
    client.device_registration_state.delete(id=rid, if_match=state["etag"])
    with pytest.raises(ResourceNotFoundError) as gone:
        client.device_registration_state.get(id=rid)
    assert _error_code(gone.value) == 404202


def test_wrong_key_and_wrong_audience_are_unauthorized(emulator, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    bad = emulator.dps_connection_string().rsplit("=", 2)[0] + "=" + "A" * 43 + "="
    with pytest.raises(ClientAuthenticationError) as exc:
        DeviceProvisioningClient.from_connection_string(bad).enrollment.get(id="x")
    assert _error_code(exc.value) == 401002
    # The hub's service token is not the DPS's.
    status, _, body = https(emulator, "GET", "/enrollments/x?api-version=2021-10-01", token=emulator.service_token())
    assert status == 401 and body["errorCode"] == 401002
    status, _, body = https(emulator, "GET", "/enrollments/x?api-version=2021-10-01", token=False)
    assert status == 401 and body["errorCode"] == 401002


def test_older_service_sdk(emulator, monkeypatch):
    """azure-iothub-provisioningserviceclient 1.2.0 (api-version 2018-09-01-preview; X.509 only)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    from provisioningserviceclient import IndividualEnrollment, ProvisioningServiceClient, QuerySpecification
    from provisioningserviceclient.models import AttestationMechanism

    sc = ProvisioningServiceClient.create_from_connection_string(emulator.dps_connection_string())
    cert = self_signed_cert("old-sdk-1")
    enrollment = IndividualEnrollment.create("old-sdk-1", AttestationMechanism.create_with_x509_client_certs(cert.cert_pem.decode()))
    enrollment = sc.create_or_update(enrollment)
    assert enrollment.attestation.x509.client_certificates.primary.info.sha256_thumbprint == cert.sha256_thumbprint
    enrollment.provisioning_status = "disabled"
    assert sc.create_or_update(enrollment).provisioning_status == "disabled"  # it sends the etag itself
    assert [e.registration_id for e in sc.create_individual_enrollment_query(QuerySpecification("*")).next()] == ["old-sdk-1"]
    sc.delete(sc.get_individual_enrollment("old-sdk-1"))
    gc.collect()
