"""The sans-IO attestation and enrollment documents: which enrollment a credential proves."""

from __future__ import annotations

import base64
import datetime as dt
import time

import pytest
from cryptography.hazmat.primitives import serialization

from azure_iot_harness.certs import DevPKI, self_signed_cert
from azure_iot_harness.emulator.dps import attestation as at
from azure_iot_harness.emulator.dps import enrollments as en
from azure_iot_harness.emulator.protocol import sas
from azure_iot_harness.errors import ProvisioningError

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
OTHER = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4="
SCOPE = "0ne00000001"
HUBS = ["localhost"]


@pytest.fixture(scope="module")
def pki() -> DevPKI:
    return DevPKI.generate()


def _token(key: str, rid: str = "dev1", *, skn: str | None = "registration", scope: str = SCOPE, ttl: int = 3600) -> str:
    return sas.generate(f"{scope}/registrations/{rid}", key, key_name=skn, ttl=ttl)


def _sym_group(gid: str = "g1", key: str = KEY) -> dict:
    return en.group({"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}, gid, None, HUBS)


def _sym_individual(rid: str = "dev1", key: str = KEY) -> dict:
    body = {"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}
    return en.individual(body, rid, None, HUBS)


def _unauthorized(fn, *args) -> str:
    with pytest.raises(ProvisioningError) as exc:
        fn(*args)
    assert (exc.value.status, exc.value.code) == (401, 401002)
    return exc.value.message


# ---- SAS --------------------------------------------------------------------------------------


def test_without_skn_as_the_python_device_sdk_sends_it():
    assert at.by_sas(_token(KEY, skn=None), SCOPE, "dev1", _sym_individual(), []).kind == "symmetricKey"


def test_individual_symmetric_key():
    individual = _sym_individual()
    att = at.by_sas(_token(KEY), SCOPE, "dev1", individual, [])
    assert att.kind == "symmetricKey" and att.group_id is None
    assert att.keys == (KEY, individual["attestation"]["symmetricKey"]["secondaryKey"])


def test_group_symmetric_key_is_derived_per_registration():
    derived = sas.derive_device_key(KEY, "dev1")
    att = at.by_sas(_token(derived), SCOPE, "dev1", None, [_sym_group("other", OTHER), _sym_group()])
    assert att.group_id == "g1" and att.keys[0] == derived


@pytest.mark.parametrize(
    "token",
    [
        sas.generate(f"{SCOPE}/registrations/dev1", KEY, key_name="registration").replace("%2F", "%2f"),
        sas.generate(f"{SCOPE}/registrations/dev1", KEY, key_name="registration").replace("%2F", "/"),
    ],
)
def test_sr_encoded_or_not_any_case(token):
    # The signature is over sr as sent: re-sign what the variants send.
    sr = token.split("sr=")[1].split("&")[0]
    se = int(time.time()) + 60
    token = f"SharedAccessSignature sr={sr}&sig={sas.sign(KEY, sr, se).replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}&se={se}&skn=registration"
    assert at.by_sas(token, SCOPE, "dev1", _sym_individual(), []).kind == "symmetricKey"


def test_individual_takes_precedence_over_groups():
    derived = sas.derive_device_key(KEY, "dev1")
    message = _unauthorized(at.by_sas, _token(derived), SCOPE, "dev1", _sym_individual(key=OTHER), [_sym_group()])
    assert "individual enrollment" in message


@pytest.mark.parametrize(
    "token, why",
    [
        (_token(OTHER), "neither key"),
        (_token(KEY, "dev2"), "audience"),
        (_token(KEY, scope="0ne99999999"), "audience"),
        (_token(KEY, skn="device"), "skn=registration"),
        (_token(KEY, skn="provisioningserviceowner"), "skn=registration"),
        (_token(KEY, ttl=-10), "expired"),
        ("SharedAccessSignature sr=x", "lacks"),
        ("not a token", "SharedAccessSignature"),
    ],
)
def test_sas_refusals(token, why):
    assert why in _unauthorized(at.by_sas, token, SCOPE, "dev1", _sym_individual(), [])


def test_unknown_registration_is_unauthorized():
    assert "no individual enrollment" in _unauthorized(at.by_sas, _token(KEY, "nobody"), SCOPE, "nobody", None, [])


# ---- X.509 ------------------------------------------------------------------------------------


def _x509_group(pki: DevPKI, gid: str = "xg") -> dict:
    ca = {"primary": {"certificate": pki.device_ca_pem.decode()}}
    return en.group({"attestation": {"type": "x509", "x509": {"signingCertificates": ca}}}, gid, None, HUBS)


def test_group_certificate_issued_by_the_signing_certificate(pki):
    cert = pki.issue_device_cert("dev1")
    att = at.by_certificate([cert.der], "dev1", None, [_sym_group(), _x509_group(pki)])
    assert att.kind == "x509" and att.group_id == "xg" and att.signer is not None


def test_group_certificate_cn_must_be_the_registration_id(pki):
    cert = pki.issue_device_cert("dev2")
    assert "CN" in _unauthorized(at.by_certificate, [cert.der], "dev1", None, [_x509_group(pki)])


def test_certificate_from_another_ca(pki):
    other = DevPKI.generate().issue_device_cert("dev1")
    assert "signing certificate" in _unauthorized(at.by_certificate, [other.der], "dev1", None, [_x509_group(pki)])


def test_expired_certificate(pki):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    cert = pki.issue_device_cert("dev1", not_before=past - dt.timedelta(days=1), not_after=past)
    assert "expired" in _unauthorized(at.by_certificate, [cert.der], "dev1", None, [_x509_group(pki)])


def test_individual_certificate_by_thumbprint():
    cert, other = self_signed_cert("dev1"), self_signed_cert("dev1")
    body = {"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert.cert_pem.decode()}}}}}
    individual = en.individual(body, "dev1", None, HUBS)
    assert at.by_certificate([cert.der], "dev1", individual, []).certificate == cert.der
    assert "neither certificate" in _unauthorized(at.by_certificate, [other.der], "dev1", individual, [])


def test_sas_for_an_x509_enrollment_and_the_reverse(pki):
    cert = self_signed_cert("dev1")
    body = {"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert.cert_pem.decode()}}}}}
    assert "x509" in _unauthorized(at.by_sas, _token(KEY), SCOPE, "dev1", en.individual(body, "dev1", None, HUBS), [])
    assert "symmetricKey" in _unauthorized(at.by_certificate, [cert.der], "dev1", _sym_individual(), [])


# ---- enrollment documents -------------------------------------------------------------------------


def test_keys_are_generated_when_missing():
    doc = en.individual({"attestation": {"type": "symmetricKey"}}, "dev1", None, HUBS)
    keys = doc["attestation"]["symmetricKey"]
    assert keys["primaryKey"] != keys["secondaryKey"] and len(keys["primaryKey"]) == 44
    assert doc["provisioningStatus"] == "enabled" and doc["capabilities"] == {"iotEdge": False}
    assert doc["reprovisionPolicy"] == {"updateHubAssignment": True, "migrateDeviceData": True}


def test_certificates_are_shown_by_their_info_and_kept_on_update(pki):
    pem = pki.device_ca_pem.decode()
    body = {"attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": pem}}}}}
    doc = en.group(body, "g", None, HUBS)
    shown = en.view(doc)
    info = shown["attestation"]["x509"]["signingCertificates"]["primary"]
    ca_der = pki.device_ca_cert.public_bytes(serialization.Encoding.DER)
    assert "certificate" not in info and info["info"] == en.certificate_info(ca_der)
    again = en.group(shown, "g", doc, HUBS)  # the view sent back keeps the certificate
    assert en.stored_certificates(again) == en.stored_certificates(doc)


@pytest.mark.parametrize("encode", [lambda c: c.cert_pem.decode(), lambda c: base64.b64encode(c.cert_pem).decode(),
                                    lambda c: base64.b64encode(c.der).decode()], ids=["pem", "base64-pem", "base64-der"])
def test_certificates_in_every_form_dps_takes(pki, encode):
    cert = pki.issue_device_cert("dev1")
    body = {"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": encode(cert)}}}}}
    assert en.stored_certificates(en.individual(body, "dev1", None, HUBS)) == [cert.der]


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "attestation is required"),
        ({"attestation": {"type": "none"}}, "attestation type"),
        ({"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "short"}}}, "base64"),
        ({"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "AAAA"}}}, "16 to 64"),
        ({"attestation": {"type": "x509", "x509": {}}}, "clientCertificates.primary"),
        ({"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": "nope"}}}}}, "PEM"),
        ({"attestation": {"type": "x509", "x509": {"caReferences": {"primary": "ca"}}}}, "not supported by the emulator"),
        ({"attestation": {"type": "tpm", "tpm": {}}}, "endorsementKey"),
        ({"attestation": {"type": "symmetricKey"}, "provisioningStatus": "off"}, "provisioningStatus"),
        ({"attestation": {"type": "symmetricKey"}, "allocationPolicy": "random"}, "allocationPolicy"),
        ({"attestation": {"type": "symmetricKey"}, "allocationPolicy": "custom"}, "customAllocationDefinition"),
        ({"attestation": {"type": "symmetricKey"}, "iotHubs": ["elsewhere.azure-devices.net"]}, "not a linked IoT hub"),
        ({"attestation": {"type": "symmetricKey"}, "iotHubHostName": "elsewhere"}, "not a linked IoT hub"),
        ({"attestation": {"type": "symmetricKey"}, "initialTwin": {"properties": {"reported": {}}}}, "reported"),
        ({"attestation": {"type": "symmetricKey"}, "registrationId": "dev2"}, "registrationId"),
        ({"attestation": {"type": "symmetricKey"}, "deviceId": "bad/id"}, "deviceId"),
    ],
)
def test_invalid_individual_enrollments(body, message):
    with pytest.raises(ProvisioningError, match=message) as exc:
        en.individual(body, "dev1", None, HUBS)
    assert (exc.value.status, exc.value.code) == (400, 400004)


def test_tpm_enrollments_can_be_stored():
    doc = en.individual({"attestation": {"type": "tpm", "tpm": {"endorsementKey": "AAAA"}}}, "dev1", None, HUBS)
    assert doc["attestation"] == {"type": "tpm", "tpm": {"endorsementKey": "AAAA"}}
