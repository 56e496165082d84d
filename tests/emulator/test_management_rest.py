"""The management plane's certificate routes for the hub and DPS: upload, proof of possession,
verified on upload, etags, and the refusals (wrong code, not signed by the CA, unknown names)."""

from __future__ import annotations

import base64

import pytest

from azure_iot_harness.certs.chain import issue
from azure_iot_harness.config import WELL_KNOWN_DEVICE_CA_NAME
from tests.helpers import https

PARENT = "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Devices"


def base(emu, dps=False):
    return f"{PARENT}/{'provisioningServices' if dps else 'IotHubs'}/{emu.config.hub_name}/certificates"


def call(emu, method, path, body=None, *, dps=False, etag=None, bearer=False):
    token = emu.dps_service_token() if dps else emu.service_token()
    headers = {"If-Match": etag} if etag else {}
    if bearer:
        token = "Bearer " + token
    sep = "&" if "?" in path else "?"
    return https(emu, method, f"{path}{sep}api-version=2023-06-30", body, token=token, headers=headers)


@pytest.fixture(scope="module")
def root():
    return issue("Upload Root", ca=True)


@pytest.mark.parametrize("dps", [False, True], ids=["hub", "dps"])
def test_upload_generate_code_verify(emulator, root, dps):
    url = f"{base(emulator, dps)}/team-root"
    status, _, created = call(emulator, "PUT", url, {"properties": {"certificate": root.cert_pem.decode()}}, dps=dps)
    assert status == (200 if dps else 201)  # DPS's management SDK takes 200 only
    props = created["properties"]
    assert props["isVerified"] is False and props["subject"] == "Upload Root" and props["expiry"].endswith("GMT")
    assert created["name"] == "team-root" and created["id"] == url
    assert created["type"] == ("Microsoft.Devices/provisioningServices/Certificates" if dps else "Microsoft.Devices/IotHubs/Certificates")
    # generateVerificationCode needs the etag
    status, _, err = call(emulator, "POST", f"{url}/generateVerificationCode", dps=dps)
    assert status == 412 and err["code"] == "PreconditionFailed"
    status, _, nonce = call(emulator, "POST", f"{url}/generateVerificationCode", dps=dps, etag=created["etag"])
    assert status == 200
    code = nonce["properties"]["verificationCode"]
    proof = issue(code, root, ca=False)
    status, _, verified = call(emulator, "POST", f"{url}/verify", {"certificate": proof.cert_pem.decode()}, dps=dps, etag=nonce["etag"])
    assert status == 200 and verified["properties"]["isVerified"] is True
    assert emulator.ca_certificates(dps=dps).get("team-root")["isVerified"] is True


def test_verified_on_upload_and_base64_forms(emulator, root):
    url = f"{base(emulator)}/b64-root"
    body = {"properties": {"certificate": base64.b64encode(root.der).decode(), "isVerified": True}}
    status, _, doc = call(emulator, "PUT", url, body)
    assert status == 201 and doc["properties"]["isVerified"] is True
    listed = call(emulator, "GET", base(emulator))[2]["value"]
    assert {d["name"] for d in listed} == {WELL_KNOWN_DEVICE_CA_NAME, "b64-root"}


def test_dps_older_body_shape(emulator, root):
    status, _, doc = call(emulator, "PUT", f"{base(emulator, True)}/old", {"certificate": root.cert_pem.decode(), "isVerified": True}, dps=True)
    assert status == 200 and doc["properties"]["isVerified"] is True
    assert base64.b64decode(doc["properties"]["certificate"]) == root.cert_pem  # DPS: a byte array


def test_verification_with_the_wrong_code_or_signer(emulator, root, caplog):
    url = f"{base(emulator)}/team-root"
    call(emulator, "PUT", url, {"properties": {"certificate": root.cert_pem.decode()}})
    etag = call(emulator, "GET", url)[2]["etag"]
    nonce = call(emulator, "POST", f"{url}/generateVerificationCode", etag=etag)[2]
    code, etag = nonce["properties"]["verificationCode"], nonce["etag"]
    wrong_code = issue("NOT-THE-CODE", root, ca=False)
    status, _, err = call(emulator, "POST", f"{url}/verify", {"certificate": wrong_code.cert_pem.decode()}, etag=etag)
    assert status == 400 and err["code"] == "CertificateVerificationFailed" and "is not the verification code" in err["message"]
    stranger = issue(code, issue("Someone Else", ca=True), ca=False)
    status, _, err = call(emulator, "POST", f"{url}/verify", {"certificate": stranger.cert_pem.decode()}, etag=etag)
    assert status == 400 and "is not signed by the CA" in err["message"]
    assert any("not verified" in m and "not signed by the CA" in m for m in caplog.messages)
    assert call(emulator, "GET", url)[2]["properties"]["isVerified"] is False


def test_verify_before_any_code(emulator, root):
    url = f"{base(emulator)}/team-root"
    etag = call(emulator, "PUT", url, {"properties": {"certificate": root.cert_pem.decode()}})[2]["etag"]
    status, _, err = call(emulator, "POST", f"{url}/verify", {"certificate": root.cert_pem.decode()}, etag=etag)
    assert status == 400 and err["code"] == "VerificationCodeNotGenerated"


def test_delete_needs_the_etag(emulator, root):
    url = f"{base(emulator)}/team-root"
    etag = call(emulator, "PUT", url, {"properties": {"certificate": root.cert_pem.decode()}})[2]["etag"]
    assert call(emulator, "DELETE", url, etag="AAAAAAAAAAA=")[0] == 412
    assert call(emulator, "DELETE", url, etag=etag)[0] == 200
    status, _, err = call(emulator, "GET", url)
    assert status == 404 and err["code"] == "CertificateNotFound"


def test_bearer_token_carrying_the_sas_token(emulator):
    assert call(emulator, "GET", base(emulator), bearer=True)[0] == 200


@pytest.mark.parametrize(
    "path, token, status, code",
    [
        ("/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices/IotHubs/otherhub/certificates", None, 404, "ResourceNotFound"),
        (None, "SharedAccessSignature sr=x&sig=AAAA&se=1&skn=iothubowner", 401, "AuthenticationFailed"),
    ],
)
def test_refusals(emulator, path, token, status, code):
    got, _, err = https(emulator, "GET", f"{path or base(emulator)}?api-version=2023-06-30", token=token or emulator.service_token())
    assert (got, err["code"]) == (status, code)


def test_not_a_certificate(emulator):
    status, _, err = call(emulator, "PUT", f"{base(emulator)}/junk", {"properties": {"certificate": "nope"}})
    assert status == 400 and err["code"] == "InvalidCertificate"
