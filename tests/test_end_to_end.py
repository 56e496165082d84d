"""The issue's acceptance path, as a user runs it: `serve`, the unmodified Azure SDKs, `monitor-events`.

`serve` listens on 8883 and 443 (the only ports the Python device SDK can use) of a random
127.x.y.z address, so parallel runs never collide; clients trust the CA through SSL_CERT_FILE
and REQUESTS_CA_BUNDLE, exactly as the README tells users to.
"""

from __future__ import annotations

import json

from azure.iot.device import X509, IoTHubDeviceClient, Message
from azure.iot.hub import IoTHubRegistryManager

from azure_iot_harness.certs import self_signed_cert
from tests.cli_helpers import CliProcess, cli_env, run_cli


def _monitor(data_dir, count):
    proc = CliProcess("monitor-events", "--data-dir", str(data_dir), "--count", str(count), "--timeout", "60", env=cli_env())
    proc.stderr.until("monitoring", timeout=30)  # listening: later messages are seen
    return proc


def _send(client, body, **props):
    msg = Message(body, content_type="application/json", content_encoding="utf-8")
    msg.custom_properties.update(props)
    client.connect()
    client.send_message(msg)
    client.shutdown()


def test_device_sdk_sas_x509_and_monitor_events(served, tmp_path):
    serve, info = served
    data_dir = serve.data_dir
    monitor = _monitor(data_dir, 3)

    # 1. SAS with the well-known connection string that `serve` printed.
    assert any(info["connectionStrings"]["device"] in line for line in serve.banner)
    _send(IoTHubDeviceClient.create_from_connection_string(info["connectionStrings"]["device"]), '{"n": 1}', path="sas")

    # 2. CA-signed X.509, the certificate from `cert issue`.
    out = run_cli("cert", "issue", "--cn", "x509-device1", "--out", str(tmp_path), "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    x509 = X509(str(tmp_path / "x509-device1.pem"), str(tmp_path / "x509-device1.key"))
    _send(IoTHubDeviceClient.create_from_x509_certificate(x509=x509, hostname=info["hubHostName"], device_id="x509-device1"), '{"n": 2}', path="ca")

    # 3. Self-signed X.509, registered by thumbprint through the unmodified service SDK.
    registry = IoTHubRegistryManager.from_connection_string(info["connectionStrings"]["service"])
    cert = self_signed_cert("thumb-device")
    registry.create_device_with_x509("thumb-device", cert.sha1_thumbprint, None, "enabled")
    certfile, keyfile = cert.write(tmp_path)
    x509 = X509(str(certfile), str(keyfile))
    _send(IoTHubDeviceClient.create_from_x509_certificate(x509=x509, hostname=info["hubHostName"], device_id="thumb-device"), '{"n": 3}', path="self")

    assert monitor.wait(60) == 0, monitor.stderr.rest()
    printed = [json.loads(line) for line in monitor.stdout.rest().splitlines() if line.strip()]
    assert [(m["deviceId"], json.loads(m["body"])["n"], m["properties"]["path"]) for m in printed] == [
        ("device1", 1, "sas"),
        ("x509-device1", 2, "ca"),
        ("thumb-device", 3, "self"),
    ]
    assert all(m["systemProperties"]["content-type"] == "application/json" for m in printed)


def test_service_sdk_creates_reads_and_deletes_devices(served):
    serve, info = served
    registry = IoTHubRegistryManager.from_connection_string(info["connectionStrings"]["service"])
    created = registry.create_device_with_sas("made-by-sdk", None, None, "enabled")
    assert created.authentication.symmetric_key.primary_key  # generated, as Azure does
    assert registry.get_device("made-by-sdk").device_id == "made-by-sdk"
    # The device can use what the registry handed out.
    cs = run_cli("connection-string", "--device", "made-by-sdk", "--data-dir", str(serve.data_dir))
    assert cs.returncode == 0 and created.authentication.symmetric_key.primary_key in cs.stdout
    _send(IoTHubDeviceClient.create_from_connection_string(cs.stdout.strip()), "{}")
    registry.delete_device("made-by-sdk")
    assert "made-by-sdk" not in [d.device_id for d in registry.get_devices()]
