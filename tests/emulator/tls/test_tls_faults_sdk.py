"""The unmodified azure-iot-device SDK and the TLS faults: it refuses an expired server
certificate (the trace shows its alert) and follows a root rotation when it trusts both roots."""

from __future__ import annotations

import pytest
from azure.iot.device import IoTHubDeviceClient
from azure.iot.device.exceptions import ClientError

from tests.helpers import wait_for


def _tls_events(emu) -> list[dict]:
    return [e.tls for e in emu.trace.events() if e.type == "TLS"]


def _client(emu, monkeypatch, cafile, certificate: str) -> IoTHubDeviceClient:
    """An SDK client trusting `cafile`, the emulator serving `certificate` for a minute."""
    monkeypatch.setenv("SSL_CERT_FILE", str(cafile))
    emu.faults.add("tls-certificate", certificate=certificate, duration=60)
    return IoTHubDeviceClient.create_from_connection_string(emu.connection_string(device="device1"), connection_retry=False)


def test_the_sdk_refuses_an_expired_server_certificate(standard_ports_emulator, monkeypatch):
    emu = standard_ports_emulator
    client = _client(emu, monkeypatch, emu.ca_file, "expired")
    try:
        with pytest.raises(ClientError, match="TLS"):
            client.connect()
    finally:
        client.shutdown()
    first = wait_for(lambda: _tls_events(emu), what="a TLS event")[0]
    assert (first["outcome"], first["alert"], first["server_cert"]) == ("alert", "certificate_expired", "expired")


def test_the_sdk_follows_a_root_rotation_when_it_trusts_both_roots(standard_ports_emulator, monkeypatch):
    emu = standard_ports_emulator
    client = _client(emu, monkeypatch, emu.ca_bundle_file, "rotated-root")
    try:
        client.connect()
        assert client.connected
    finally:
        client.shutdown()
    first = wait_for(lambda: _tls_events(emu), what="a TLS event")[0]
    assert (first["outcome"], first["server_cert"]) == ("completed", "rotated-root")
