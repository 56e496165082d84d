"""DPS's device REST API on the shared HTTPS port: SAS in the Authorization header, or the TLS client certificate."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from azure_iot_harness.certs import DevPKI, self_signed_cert
from azure_iot_harness.certs.pki import DeviceCert
from tests.emulator.dps.helpers import group_key, individual, token, x509_individual

API = "?api-version=2021-06-01"


def call(
    emu,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: str | None = None,
    cert: DeviceCert | None = None,
    tmp_path: Path | None = None,
    headers: dict | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict, Any]:
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    if cert is not None:
        certfile, keyfile = cert.write(tmp_path)
        ctx.load_cert_chain(str(certfile), str(keyfile))
    conn = http.client.HTTPSConnection("localhost", emu.https_port, context=ctx, timeout=30)
    hdrs = {"Content-Type": "application/json", "Content-Encoding": "utf-8"}
    if auth:
        hdrs["Authorization"] = auth
    hdrs.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(text) if text else None
    finally:
        conn.close()


def scope(emu) -> str:
    return emu.config.dps_id_scope


def provision(emu, rid: str, **kw: Any) -> tuple[int, dict, dict]:
    """PUT register, then GET the operation until it is done."""
    status, headers, answer = call(emu, "PUT", f"/{scope(emu)}/registrations/{rid}/register{API}", {"registrationId": rid}, **kw)
    assert status == 202, (status, answer)
    assert headers["retry-after"] == "3" and answer["status"] == "assigning"
    path = f"/{scope(emu)}/registrations/{rid}/operations/{answer['operationId']}{API}"
    return call(emu, "GET", path, **kw)


def test_symmetric_key_group_registration(emulator):
    auth = token(emulator, "rest-sym-1", group_key("rest-sym-1"))
    status, headers, done = provision(emulator, "rest-sym-1", auth=auth)
    assert status == 200 and "retry-after" not in headers
    assert done["status"] == "assigned" and done["registrationState"]["deviceId"] == "rest-sym-1"
    assert emulator.registry.get("rest-sym-1")["authentication"]["symmetricKey"]["primaryKey"] == group_key("rest-sym-1")
    # Status lookup: the registration state itself.
    status, _, state = call(emulator, "POST", f"/{scope(emulator)}/registrations/rest-sym-1{API}", {"registrationId": "rest-sym-1"}, auth=auth)
    assert status == 200 and state == done["registrationState"]


def test_symmetric_key_individual_registration(emulator_thread, emulator):
    enrollment = individual(emulator_thread, "rest-ind-1")
    auth = token(emulator, "rest-ind-1", enrollment["attestation"]["symmetricKey"]["primaryKey"])
    status, _, done = provision(emulator, "rest-ind-1", auth=auth)
    assert status == 200 and done["registrationState"]["symmetricKey"] == {}


def test_x509_group_registration_by_client_certificate(emulator, tmp_path):
    cert = emulator.pki.issue_device_cert("rest-x509-1")
    status, _, done = provision(emulator, "rest-x509-1", cert=cert, tmp_path=tmp_path)
    assert status == 200
    assert done["registrationState"]["x509"]["certificateInfo"]["sha256Thumbprint"] == cert.sha256_thumbprint
    status, _, state = call(emulator, "POST", f"/{scope(emulator)}/registrations/rest-x509-1{API}", cert=cert, tmp_path=tmp_path)
    assert status == 200 and state["deviceId"] == "rest-x509-1"


def test_x509_individual_registration(emulator_thread, emulator, tmp_path):
    cert = self_signed_cert("rest-x509-2")
    x509_individual(emulator_thread, "rest-x509-2", cert)
    status, _, done = provision(emulator, "rest-x509-2", cert=cert, tmp_path=tmp_path)
    assert status == 200 and emulator.registry.get("rest-x509-2")["authentication"]["type"] == "selfSigned"


def _refused(emu, expected: tuple[int, int], method: str, path: str, body: Any = None, **kw: Any) -> dict:
    status, headers, answer = call(emu, method, path, body, **kw)
    assert (status, answer and answer.get("errorCode")) == expected, answer
    assert headers["x-ms-error-code"] == str(expected[1])
    assert set(answer) == {"errorCode", "trackingId", "message", "timestampUtc"}
    return answer


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"registrationId": "rest-empty-1"}'], ids=["empty", "empty object", "id only"])
def test_register_without_a_payload(emulator, raw):
    rid = "rest-empty-1"
    auth = token(emulator, rid, group_key(rid))
    status, _, answer = call(emulator, "PUT", f"/{scope(emulator)}/registrations/{rid}/register{API}", auth=auth, raw=raw)
    assert status == 202 and answer["status"] == "assigning", answer
    path = f"/{scope(emulator)}/registrations/{rid}/operations/{answer['operationId']}{API}"
    status, _, done = call(emulator, "GET", path, auth=auth)
    assert status == 200 and done["registrationState"]["deviceId"] == rid


def test_register_refusals(emulator, tmp_path):
    s, rid = scope(emulator), "rest-bad-1"
    good = token(emulator, rid, group_key(rid))
    path = f"/{s}/registrations/{rid}/register{API}"
    body = {"registrationId": rid}
    _refused(emulator, (404, 404200), "PUT", f"/0ne99999999/registrations/{rid}/register{API}", body, auth=good)
    _refused(emulator, (401, 401002), "PUT", path, body, auth=token(emulator, rid, group_key("x")))  # wrong key
    _refused(emulator, (401, 401002), "PUT", path, body, auth=token(emulator, "other", group_key(rid)))  # other id
    _refused(emulator, (401, 401002), "PUT", path, body, auth=token(emulator, rid, group_key(rid), ttl=-1))  # expired
    _refused(emulator, (401, 401002), "PUT", path, body, auth=token(emulator, rid, group_key(rid), skn="iothubowner"))  # skn
    _refused(emulator, (401, 401002), "PUT", path, body)  # no credentials at all
    unknown_key = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4="
    _refused(emulator, (401, 401002), "PUT", f"/{s}/registrations/nobody-1/register{API}", {"registrationId": "nobody-1"},
             auth=token(emulator, "nobody-1", unknown_key))  # unknown registration: DPS does not say it is unknown
    _refused(emulator, (400, 400004), "PUT", f"/{s}/registrations/bad./register{API}", {"registrationId": "bad."}, auth=good)
    _refused(emulator, (400, 400004), "PUT", path, {"registrationId": "someone-else"}, auth=good)
    _refused(emulator, (400, 400006), "PUT", path, auth=good, raw=b"{not json")
    _refused(emulator, (400, 400001), "PUT", f"/{s}/registrations/{rid}/register", body, auth=good)
    _refused(emulator, (415, 415001), "PUT", path, body, auth=good, headers={"Content-Type": "text/plain"})
    _refused(emulator, (404, 404204), "GET", f"/{s}/registrations/{rid}/operations/5.x.y{API}", auth=good)
    _refused(emulator, (404, 404202), "POST", f"/{s}/registrations/{rid}{API}", auth=good)


def test_certificate_refusals(emulator, tmp_path):
    s = scope(emulator)
    body = {"registrationId": "rest-cn-1"}
    path = f"/{s}/registrations/rest-cn-1/register{API}"
    wrong_cn = emulator.pki.issue_device_cert("rest-cn-2")
    foreign = DevPKI.generate().issue_device_cert("rest-cn-1")
    assert "CN" in _refused(emulator, (401, 401002), "PUT", path, body, cert=wrong_cn, tmp_path=tmp_path / "a")["message"]
    _refused(emulator, (401, 401002), "PUT", path, body, cert=foreign, tmp_path=tmp_path / "b")


def test_tpm_registration_is_not_supported(emulator):
    rid = "rest-tpm-1"
    body = {"registrationId": rid, "tpm": {"endorsementKey": "AAAA", "storageRootKey": "AAAA"}}
    answer = _refused(emulator, (400, 400004), "PUT", f"/{scope(emulator)}/registrations/{rid}/register{API}", body, auth=token(emulator, rid, group_key(rid)))
    assert "not supported by the emulator" in answer["message"]


def test_registration_with_zero_polls_is_answered_at_once():
    from azure_iot_harness.emulator.app import EmulatorThread

    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, dps_assigning_polls=0) as emu:
        rid = "rest-now-1"
        status, headers, done = call(emu, "PUT", f"/{scope(emu)}/registrations/{rid}/register{API}", {"registrationId": rid}, auth=token(emu, rid, group_key(rid)))
    assert status == 200 and done["status"] == "assigned" and "retry-after" not in headers


@pytest.mark.parametrize("path", ["/0ne00000001/registrations/x/unknown", "/0ne00000001/registrations"])
def test_other_dps_paths_are_not_found(emulator, path):
    status, _, _ = call(emulator, "GET", path + API)
    assert status in (404, 501)


def test_group_registration_over_an_identity_dps_did_not_create_keeps_what_the_hub_owns(emulator_thread, emulator, caplog):
    """DPS writes its device state (credentials, capabilities); status and parent/child scopes stay."""
    registry = emulator.registry
    emulator_thread.call(registry.put_device({"deviceId": "gw", "capabilities": {"iotEdge": True}}, if_match=None))
    scope = registry.get("gw")["deviceScope"]
    leaf = {"status": "disabled", "statusReason": "returned for repair", "deviceScope": scope}
    emulator_thread.call(registry.put_device({"deviceId": "leaf-7", **leaf}, if_match=None))
    status, _, done = provision(emulator, "leaf-7", auth=token(emulator, "leaf-7", group_key("leaf-7")))
    assert status == 200 and done["status"] == "assigned"
    doc = registry.get("leaf-7")
    assert doc["authentication"]["symmetricKey"]["primaryKey"] == group_key("leaf-7")
    assert doc["status"] == "disabled" and doc["statusReason"] == "returned for repair"
    assert doc["deviceScope"] == scope and doc["parentScopes"] == [scope]
    assert "exists in the hub without a DPS registration" in caplog.text
    # The edge device, through a group that does not make IoT Edge devices, stays one: its
    # scope, and with it its children, depend on it.
    provision(emulator, "gw", auth=token(emulator, "gw", group_key("gw")))
    assert registry.get("gw")["capabilities"] == {"iotEdge": True} and registry.get("gw")["deviceScope"] == scope
