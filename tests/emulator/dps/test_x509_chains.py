"""DPS with chains: enrollment groups signed by a root or an intermediate, groups naming an
uploaded CA by caReferences (verified or not), individual enrollments whose device sends a chain;
over MQTT (raw and the unmodified SDK, on 8883 and over WebSocket) and the REST device API. The hub
device DPS creates is selfSigned with the device's thumbprint, as Azure does."""

from __future__ import annotations

import gc
import json
import ssl
import urllib.request

import pytest
from azure.iot.device import X509, IoTHubDeviceClient, Message, ProvisioningDeviceClient

from azure_iot_harness.certs.chain import Issued, issue
from azure_iot_harness.certs.pki import DeviceCert
from tests.chain_helpers import OwnPki
from tests.emulator.dps.helpers import RawDps
from tests.helpers import https, wait_for


def as_device_cert(dev: Issued, cn: str) -> DeviceCert:
    return DeviceCert(cn, dev.full_chain_pem, dev.key_pem)


def group(thread, emu, gid: str, *, signer: Issued | None = None, ca_refs: dict | None = None) -> None:
    x509 = {"caReferences": ca_refs} if ca_refs else {"signingCertificates": {"primary": {"certificate": signer.cert_pem.decode()}}}
    body = {"attestation": {"type": "x509", "x509": x509}}
    thread.call(emu.dps.put_enrollment("group", gid, body, if_match=None))


@pytest.fixture
def own():
    return OwnPki.make()


@pytest.mark.parametrize("signer", ["root", "intermediate"])
def test_group_signed_by_root_or_intermediate(emulator_thread, emulator, own, tmp_path, signer):
    group(emulator_thread, emulator, "team", signer=getattr(own, signer))
    dev = issue("chain-reg-1", own.intermediate, ca=False)
    c = RawDps(emulator, "chain-reg-1", cert=as_device_cert(dev, "chain-reg-1"), tmp_path=tmp_path)
    assert c.connack == 0
    state = c.provision("chain-reg-1")["registrationState"]
    c.close()
    assert state["status"] == "assigned" and state["x509"]["enrollmentGroupId"] == "team"
    assert state["x509"]["signingCertificateInfo"]["subjectName"] == getattr(own, signer).cert.subject.rfc4514_string()
    auth = emulator.registry.get("chain-reg-1")["authentication"]
    assert auth["type"] == "selfSigned"
    assert auth["x509Thumbprint"] == {"primaryThumbprint": as_device_cert(dev, "x").sha256_thumbprint,
                                      "secondaryThumbprint": as_device_cert(dev, "x").sha256_thumbprint}  # fmt: skip


def test_group_device_without_its_intermediate_is_refused(emulator_thread, emulator, own, tmp_path, caplog):
    group(emulator_thread, emulator, "team", signer=own.root)
    dev = issue("chain-reg-1", own.intermediate, ca=False)
    c = RawDps(emulator, "chain-reg-1", cert=DeviceCert("chain-reg-1", dev.cert_pem, dev.key_pem), tmp_path=tmp_path)
    assert c.connack == 5
    c.client.close()
    assert any("group team: no path from the client certificate CN=chain-reg-1" in m for m in caplog.messages)


def test_ca_references_to_a_verified_ca(emulator_thread, emulator, own, tmp_path):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True, dps=True))
    group(emulator_thread, emulator, "by-ref", ca_refs={"primary": "team-root"})
    shown = https(emulator, "GET", "/enrollmentGroups/by-ref?api-version=2021-10-01", token=emulator.dps_service_token())[2]
    assert shown["attestation"]["x509"] == {"caReferences": {"primary": "team-root"}}
    dev = issue("ref-reg-1", own.intermediate, ca=False)
    c = RawDps(emulator, "ref-reg-1", cert=as_device_cert(dev, "ref-reg-1"), tmp_path=tmp_path)
    assert c.connack == 0
    assert c.provision("ref-reg-1")["registrationState"]["x509"]["enrollmentGroupId"] == "by-ref"
    c.close()


@pytest.mark.parametrize("uploaded", ["unverified", "missing"])
def test_ca_references_to_an_unverified_or_missing_ca_is_401(emulator_thread, emulator, own, tmp_path, caplog, uploaded):
    if uploaded == "unverified":
        emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, dps=True))
    group(emulator_thread, emulator, "by-ref", ca_refs={"primary": "team-root"})
    dev = issue("ref-reg-1", own.intermediate, ca=False)
    c = RawDps(emulator, "ref-reg-1", cert=as_device_cert(dev, "ref-reg-1"), tmp_path=tmp_path)
    assert c.connack == 5
    c.client.close()
    expected = "uploaded but not verified" if uploaded == "unverified" else "which no CA certificate uploaded to DPS is"
    assert any(expected in m for m in caplog.messages)


def test_the_hubs_cas_are_not_dps_cas(emulator_thread, emulator, own, tmp_path):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))  # the hub's
    group(emulator_thread, emulator, "by-ref", ca_refs={"primary": "team-root"})
    dev = issue("ref-reg-1", own.intermediate, ca=False)
    c = RawDps(emulator, "ref-reg-1", cert=as_device_cert(dev, "ref-reg-1"), tmp_path=tmp_path)
    assert c.connack == 5
    c.client.close()


def test_individual_enrollment_whose_device_sends_a_chain(emulator_thread, emulator, own, tmp_path):
    dev = issue("ind-chain-1", own.intermediate, ca=False)
    body = {"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": dev.cert_pem.decode()}}}}}
    emulator_thread.call(emulator.dps.put_enrollment("individual", "ind-chain-1", body, if_match=None))
    c = RawDps(emulator, "ind-chain-1", cert=as_device_cert(dev, "ind-chain-1"), tmp_path=tmp_path)
    assert c.connack == 0
    assert c.provision("ind-chain-1")["registrationState"]["status"] == "assigned"
    c.close()


def test_rest_registration_with_a_chain(emulator_thread, emulator, own, tmp_path):
    group(emulator_thread, emulator, "team", signer=own.root)
    dev = issue("rest-chain-1", own.intermediate, ca=False)
    dev.write(tmp_path / "d.pem", tmp_path / "d.key", full_chain=True)
    ctx = ssl.create_default_context(cafile=str(emulator.ca_file))
    ctx.load_cert_chain(tmp_path / "d.pem", tmp_path / "d.key")
    url = f"https://localhost:{emulator.https_port}/{emulator.config.dps_id_scope}/registrations/rest-chain-1/register?api-version=2021-06-01"
    req = urllib.request.Request(url, data=json.dumps({"registrationId": "rest-chain-1"}).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        assert resp.status in (200, 202)
    wait_for(lambda: emulator.registry.get("rest-chain-1"), what="the device DPS assigned")


# ---- the unmodified SDK, on the standard ports ---------------------------------------------------


@pytest.fixture
def emu(standard_ports_emulator, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(standard_ports_emulator.ca_file))
    yield standard_ports_emulator
    gc.collect()


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtt", "mqtt-ws"])
def test_sdk_full_chain_file_group_via_intermediate_then_hub(emu, tmp_path, websockets):
    """What the SDK's own end-to-end test does against Azure: a group whose signing certificate
    is an intermediate, the device's file holding its certificate and that intermediate."""
    own = OwnPki.make()
    body = {"attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": own.intermediate.cert_pem.decode()}}}}}
    status, _, _ = https(emu, "PUT", "/enrollmentGroups/sdk-team?api-version=2021-10-01", body, token=emu.dps_service_token())
    assert status == 200
    dev = issue("sdk-chain-1", own.intermediate, ca=False)
    (tmp_path / "chain.pem").write_bytes(dev.cert_pem + own.intermediate.cert_pem)
    (tmp_path / "key.pem").write_bytes(dev.key_pem)
    x509 = X509(str(tmp_path / "chain.pem"), str(tmp_path / "key.pem"))
    prov = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=emu.host, registration_id="sdk-chain-1", id_scope=emu.config.dps_id_scope, x509=x509, websockets=websockets
    )
    result = prov.register()
    assert result.status == "assigned" and result.registration_state.device_id == "sdk-chain-1"
    assert emu.registry.get("sdk-chain-1")["authentication"]["type"] == "selfSigned"
    client = IoTHubDeviceClient.create_from_x509_certificate(x509=x509, hostname=emu.host, device_id="sdk-chain-1", websockets=websockets)
    client.connect()
    try:
        client.send_message(Message("provisioned through a chain"))
    finally:
        client.shutdown()
    messages = https(emu, "GET", "/_emulator/telemetry?deviceId=sdk-chain-1")[2]["messages"]
    assert [m["body"] for m in messages] == ["provisioned through a chain"]

