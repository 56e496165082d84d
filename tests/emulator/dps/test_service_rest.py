"""DPS's service REST API, request by request, in the shapes the service SDKs send."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization

from azure_iot_harness.config import WELL_KNOWN_X509_GROUP
from tests.emulator.dps.test_rest import provision
from tests.helpers import https

API = "?api-version=2021-10-01"


def dps(emulator, method: str, path: str, body=None, **kw):
    return https(emulator, method, path + API, body, token=emulator.dps_service_token(), **kw)


@pytest.mark.parametrize("form", ["base64-pem", "base64-der"])
def test_x509_group_with_a_base64_signing_certificate_registers_devices(emulator, tmp_path, form):
    pki = emulator.pki
    raw = pki.device_ca_pem if form == "base64-pem" else pki.device_ca_cert.public_bytes(serialization.Encoding.DER)
    ca = base64.b64encode(raw).decode()
    assert dps(emulator, "DELETE", f"/enrollmentGroups/{WELL_KNOWN_X509_GROUP}")[0] == 204
    body = {
        "enrollmentGroupId": "b64-group",
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": ca}}}},
    }
    status, _, group = dps(emulator, "PUT", "/enrollmentGroups/b64-group", body)
    assert status == 200, group
    info = group["attestation"]["x509"]["signingCertificates"]["primary"]["info"]
    assert info["subjectName"] and "certificate" not in group["attestation"]["x509"]["signingCertificates"]["primary"]
    cert = emulator.pki.issue_device_cert("b64-device")
    status, _, done = provision(emulator, "b64-device", cert=cert, tmp_path=tmp_path)
    assert status == 200 and done["registrationState"]["status"] == "assigned"


def test_a_certificate_in_no_known_form_is_400(emulator):
    body = {"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": "bm90IGEgY2VydA=="}}}}}
    status, headers, answer = dps(emulator, "PUT", "/enrollments/nocert", body)
    assert status == 400 and answer["errorCode"] == 400004 and "base64 PEM" in answer["message"]
