"""The DPS variants: `dps-mqtt` (paho), `dps-rest` (HTTPS) and `mqtt-cli` (mosquitto's tools):
an assignment, then telemetry on the assigned hub, with SAS (group and individual keys) and X.509."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from azure_iot_harness.certs import DevPKI
from azure_iot_harness.config import WELL_KNOWN_DPS_POLICY
from azure_iot_harness.emulator.protocol import sas
from tests.clients.helpers import client, failed, ok, wait_messages

WRONG_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def assignment(out: str) -> dict:
    (line,) = [line for line in out.splitlines() if line.startswith("registrationState ")]
    return json.loads(line.split(" ", 1)[1])


@pytest.mark.parametrize("variant", ["dps-mqtt", "dps-rest", "mqtt-cli"])
def test_group_sas_then_telemetry(hub, variant, mosquitto):
    rid = f"{variant}-sas"
    out = ok(client(hub, variant, "--registration-id", rid, "--then-send", "2", "--interval", "0", "--prop", f"run={rid}"))
    state = assignment(out)
    assert (state["status"], state["assignedHub"], state["deviceId"]) == ("assigned", "localhost", rid)
    assert state["symmetricKey"]["enrollmentGroupId"] == "symmetric-group1"
    assert "acknowledged 2 of 2 messages" in out
    found = wait_messages(hub.info, rid, 2, where={"run": rid})
    assert all(m["deviceId"] == rid and m["systemProperties"]["content-type"] == "application/json" for m in found)


@pytest.mark.parametrize("variant", ["dps-mqtt", "dps-rest", "mqtt-cli"])
def test_x509_group_then_telemetry(hub, variant, mosquitto):
    rid = f"{variant}-x509"
    out = ok(client(hub, variant, "--x509", "--registration-id", rid, "--then-send", "1", "--prop", f"run={rid}"))
    state = assignment(out)
    assert state["deviceId"] == rid and state["x509"]["enrollmentGroupId"] == "x509-group1"
    (m,) = wait_messages(hub.info, rid, 1, where={"run": rid})
    assert '"type":"x509Certificate"' in m["systemProperties"]["iothub-connection-auth-method"]


def test_mqtt_cli_prints_the_commands_it_runs(hub, mosquitto):
    out = ok(client(hub, "mqtt-cli", "--registration-id", "cli-shown", "--then-send", "1"))
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert [c.split()[1].rsplit("/", 1)[-1] for c in commands] == ["mosquitto", "mosquitto_sub", "mosquitto_pub", "mosquitto_pub", "mosquitto_pub"]
    assert "iotdps-get-operationstatus" in commands[3] and "-P '<password>'" in commands[4]
    assert "SharedAccessSignature" not in "\n".join(commands)


def test_individual_enrollment_key_over_rest(hub):
    info = hub.info
    rid = "rest-individual"
    key = _put_individual_enrollment(info, rid)
    out = ok(client(hub, "dps-rest", "--registration-id", rid, "--sas-key", key, "--payload", '{"site": "b"}', "--then-send", "1", "--prop", "run=ind"))
    assert "enrollmentGroupId" not in json.dumps(assignment(out))
    assert wait_messages(info, rid, 1, where={"run": "ind"})


def _put_individual_enrollment(info: dict, rid: str) -> str:
    """An individual symmetric-key enrollment through the DPS service API; its generated key."""
    host = info["dps"]["url"].split("://", 1)[1]
    token = sas.generate(host, WELL_KNOWN_DPS_POLICY.key, key_name=WELL_KNOWN_DPS_POLICY.name)
    conn = http.client.HTTPSConnection("127.0.0.1", info["https"]["port"], context=ssl.create_default_context(cafile=info["caFile"]))
    body = json.dumps({"registrationId": rid, "attestation": {"type": "symmetricKey"}})
    conn.request("PUT", f"/enrollments/{rid}?api-version=2021-10-01", body=body, headers={"Authorization": token, "Content-Type": "application/json"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status in (200, 201), doc
    return doc["attestation"]["symmetricKey"]["primaryKey"]


def test_dps_refusals_name_the_code(hub, mosquitto, tmp_path):
    refused = failed(client(hub, "dps-mqtt", "--group-key", WRONG_KEY))
    assert "DPS refused the connection" in refused and "CONNACK 5" in refused
    rest = failed(client(hub, "dps-rest", "--group-key", WRONG_KEY))
    assert "DPS answered 401 with error 401002" in rest
    assert "CONNACK 5" in failed(client(hub, "mqtt-cli", "--group-key", WRONG_KEY))
    assert "CONNACK 2 (identifier rejected)" in failed(client(hub, "dps-mqtt", "--registration-id", "bad id!"))
    unreachable = failed(client(hub, "dps-rest", "--dps-port", "1"))
    assert "cannot reach DPS at 127.0.0.1:1" in unreachable
    other = tmp_path / "other.pem"
    other.write_bytes(DevPKI.generate().root_pem)
    assert "not trusted" in failed(client(hub, "dps-mqtt", "--ca-file", str(other)))
    assert "apt-get install mosquitto" in failed(client(hub, "mqtt-cli", "--tools-dir", str(tmp_path)), 2)
    assert "--dps-host needs --id-scope" in failed(client(None, "dps-mqtt", "--dps-host", "global.azure-devices-provisioning.net"), 2)
