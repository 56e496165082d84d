"""DPS as a user runs it: `serve`, the unmodified ProvisioningDeviceClient and DPS service SDK, the hub, `monitor-events`.

`serve` listens on 8883 and 443 of a random 127.x.y.z (the Python device SDK can use no other
ports); clients trust the CA through SSL_CERT_FILE and REQUESTS_CA_BUNDLE (the `served` fixture).
"""

from __future__ import annotations

import json

from azure.iot.device import X509, IoTHubDeviceClient, Message, ProvisioningDeviceClient
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from azure_iot_harness.config import WELL_KNOWN_SYMMETRIC_GROUP_KEYS
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import CliProcess, cli_env, run_cli


def _send(client: IoTHubDeviceClient, n: int) -> None:
    client.connect()
    try:
        client.send_message(Message(json.dumps({"n": n}), content_type="application/json", content_encoding="utf-8"))
    finally:
        client.shutdown()


def test_provision_with_the_device_sdk_then_send_telemetry(served, tmp_path):
    serve, info = served
    data = ["--data-dir", str(serve.data_dir)]
    scope, host = info["dps"]["idScope"], info["dps"]["host"]
    monitor = CliProcess("monitor-events", *data, "--count", "3", "--timeout", "90", env=cli_env())
    monitor.stderr.until("monitoring", timeout=30)

    # 1. The well-known symmetric-key enrollment group: the device derives its key.
    key = sas.derive_device_key(WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0], "e2e-group-1")
    result = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=host, registration_id="e2e-group-1", id_scope=scope, symmetric_key=key
    ).register()
    assert result.status == "assigned"
    state = result.registration_state
    _send(IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id), 1)

    # 2. An individual enrollment made with the DPS service SDK and the CLI's connection string.
    cs = run_cli("connection-string", "--dps-service", *data)
    assert cs.returncode == 0, cs.stderr
    service = DeviceProvisioningClient.from_connection_string(cs.stdout.strip())
    enrollment = service.enrollment.create_or_update(
        id="e2e-ind-1", enrollment={"registrationId": "e2e-ind-1", "attestation": {"type": "symmetricKey"}}
    )
    key = enrollment["attestation"]["symmetricKey"]["primaryKey"]
    result = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=host, registration_id="e2e-ind-1", id_scope=scope, symmetric_key=key
    ).register()
    assert result.status == "assigned"
    state = result.registration_state
    _send(IoTHubDeviceClient.create_from_symmetric_key(symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id), 2)
    assert service.device_registration_state.get(id="e2e-ind-1")["status"] == "assigned"

    # 3. X.509: a certificate from `cert issue`, trusted by the well-known X.509 enrollment group.
    out = run_cli("cert", "issue", "--cn", "e2e-x509-1", "--out", str(tmp_path), *data)
    assert out.returncode == 0, out.stderr
    x509 = X509(str(tmp_path / "e2e-x509-1.pem"), str(tmp_path / "e2e-x509-1.key"))
    result = ProvisioningDeviceClient.create_from_x509_certificate(
        provisioning_host=host, registration_id="e2e-x509-1", id_scope=scope, x509=x509
    ).register()
    assert result.status == "assigned"
    state = result.registration_state
    _send(IoTHubDeviceClient.create_from_x509_certificate(x509=x509, hostname=state.assigned_hub, device_id=state.device_id), 3)

    assert monitor.wait(90) == 0, monitor.stderr.rest()
    printed = [json.loads(line) for line in monitor.stdout.rest().splitlines() if line.strip()]
    assert [(m["deviceId"], json.loads(m["body"])["n"]) for m in printed] == [("e2e-group-1", 1), ("e2e-ind-1", 2), ("e2e-x509-1", 3)]
