"""The certificate routes called by the unmodified management SDKs (azure-mgmt-iothub,
azure-mgmt-iothubprovisioningservices), given a credential whose token is the service's SAS token
(Resource Manager's Entra ID sign-in is not emulated)."""

from __future__ import annotations

import time

import pytest
from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import CertificateDescription, CertificateProperties, CertificateVerificationDescription
from azure.mgmt.iothubprovisioningservices import IotDpsClient
from azure.mgmt.iothubprovisioningservices.models import CertificateProperties as DpsCertificateProperties
from azure.mgmt.iothubprovisioningservices.models import CertificateResponse, VerificationCodeRequest

from azure_iot_harness.certs.chain import issue


class SasCredential:
    """A TokenCredential handing out a SAS token (the SDK sends it as `Bearer …`)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def root():
    return issue("Management Root", ca=True)


def _base_url(emu) -> str:
    return f"https://localhost:{emu.https_port}"


def test_iot_hub_certificates_with_proof_of_possession(emulator, root):
    client = IotHubClient(SasCredential(emulator.service_token()), "sub", base_url=_base_url(emulator), connection_verify=str(emulator.ca_file))
    hub = emulator.config.hub_name
    desc = client.certificates.create_or_update("rg", hub, "mgmt-root", CertificateDescription(properties=CertificateProperties(certificate=root.cert_pem.decode())))
    assert desc.name == "mgmt-root" and desc.properties.is_verified is False and desc.properties.subject == "Management Root"
    nonce = client.certificates.generate_verification_code("rg", hub, "mgmt-root", if_match=desc.etag)
    proof = issue(nonce.properties.verification_code, root, ca=False)
    body = CertificateVerificationDescription(certificate=proof.cert_pem.decode())
    verified = client.certificates.verify("rg", hub, "mgmt-root", if_match=nonce.etag, certificate_verification_body=body)
    assert verified.properties.is_verified is True
    assert {c.name for c in client.certificates.list_by_iot_hub("rg", hub).value} >= {"mgmt-root"}
    client.certificates.delete("rg", hub, "mgmt-root", if_match=verified.etag)
    assert "mgmt-root" not in {c.name for c in client.certificates.list_by_iot_hub("rg", hub).value}


def test_dps_certificates_with_proof_of_possession(emulator, root):
    client = IotDpsClient(SasCredential(emulator.dps_service_token()), "sub", base_url=_base_url(emulator), connection_verify=str(emulator.ca_file))
    dps = emulator.config.hub_name
    props = DpsCertificateProperties(certificate=root.cert_pem)
    created = client.dps_certificate.create_or_update("rg", dps, "dps-root", CertificateResponse(properties=props))
    assert created.properties.is_verified is False and created.properties.certificate == root.cert_pem
    match = MatchConditions.IfNotModified
    nonce = client.dps_certificate.generate_verification_code("dps-root", "rg", dps, etag=created.etag, match_condition=match)
    proof = issue(nonce.properties.verification_code, root, ca=False)
    verified = client.dps_certificate.verify_certificate(
        "dps-root", "rg", dps, VerificationCodeRequest(certificate=proof.cert_pem.decode()), etag=nonce.etag, match_condition=match
    )
    assert verified.properties.is_verified is True
    assert [c.name for c in client.dps_certificate.list("rg", dps).value] == ["dps-root"]
    client.dps_certificate.delete("rg", dps, "dps-root", etag=verified.etag, match_condition=match)
    assert client.dps_certificate.list("rg", dps).value == []
