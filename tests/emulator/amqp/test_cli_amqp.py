"""The command line's AMQP parts: `trust` (add and undo) and `connection-string --eventhub`."""

from __future__ import annotations

from pathlib import Path

from azure_iot_harness.certs.trust import BEGIN
from tests.cli_helpers import run_cli


def test_trust_adds_and_removes_exactly_the_ca(tmp_path: Path) -> None:
    bundle = tmp_path / "cacert.pem"
    original = "# some CA\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    bundle.write_text(original)
    data = tmp_path / "data"
    for _ in range(2):  # twice: still one block
        done = run_cli("trust", "--bundle", str(bundle), "--data-dir", str(data))
        assert done.returncode == 0, done.stderr
    text = bundle.read_text()
    assert text.count(BEGIN) == 1 and (data / "pki" / "ca.pem").read_text().strip() in text
    done = run_cli("trust", "--undo", "--bundle", str(bundle))
    assert done.returncode == 0 and "removed" in done.stdout
    assert bundle.read_text() == original


def test_connection_string_eventhub(served) -> None:
    _, info = served
    data = info["dataDir"]
    done = run_cli("connection-string", "--eventhub", "--data-dir", data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == info["eventHub"]["connectionString"]
    assert done.stdout.startswith(f"Endpoint=sb://{info['hubHostName']}/;SharedAccessKeyName=service;")
    done = run_cli("connection-string", "--eventhub", "--emulator", "--data-dir", data)
    assert done.stdout.strip().endswith(";UseDevelopmentEmulator=true") and f":{info['amqp']['plainPort']}/" in done.stdout
