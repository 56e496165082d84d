"""The TLS layer: client certificates are requested but checked at CONNECT; TLS 1.2 minimum."""

from __future__ import annotations

import socket
import ssl

import pytest

from azure_iot_harness.certs import DevPKI, self_signed_cert
from tests.helpers import RawClient, connect_packet


def test_any_client_certificate_passes_the_handshake_and_reaches_connect(emulator, tmp_path):
    # A certificate from a CA the server has never seen: refused by CONNACK, not by a TLS alert.
    # This fails if the OpenSSL verify callback installed by emulator.mqtt.tls stops working.
    for cert in (self_signed_cert("x"), DevPKI.generate().issue_device_cert("x509-device1")):
        certfile, keyfile = cert.write(tmp_path)
        c = RawClient(emulator, certfile=str(certfile), keyfile=str(keyfile))
        c.send(connect_packet("x509-device1", "localhost/x509-device1/?api-version=2021-04-12"))
        assert c.connack() == 5
        c.close()


def test_server_certificate_is_checked_by_clients(emulator):
    # Trusting another CA must fail: the emulator's certificate really is checked.
    ctx = ssl.create_default_context(cadata=DevPKI.generate().root_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient(emulator, context=ctx)


def test_server_certificate_names_loopback(emulator):
    ctx = ssl.create_default_context(cafile=str(emulator.ca_file))
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection(("127.0.0.1", emulator.mqtt_port)) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() == "TLSv1.2"  # classic IoT Hub endpoints offer TLS 1.2 only


def test_tls_1_1_is_refused(emulator, caplog):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(emulator.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", emulator.mqtt_port)) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # The emulator logs why, and keeps serving.
    c = RawClient(emulator)
    c.send(connect_packet("device1", None, None))
    assert c.connack() == 5
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records)


def test_tls_1_2_is_accepted(emulator):
    ctx = ssl.create_default_context(cafile=str(emulator.ca_file))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = RawClient(emulator, context=ctx)
    assert c.sock.version() == "TLSv1.2"
    c.close()


def test_plain_mqtt_without_tls_is_closed(emulator):
    with socket.create_connection(("127.0.0.1", emulator.mqtt_port), timeout=10) as raw:
        raw.sendall(connect_packet("device1", "localhost/device1", "x"))
        data = raw.recv(100)
        # The server answers a non-TLS byte stream with at most a TLS alert, never a CONNACK.
        assert not data.startswith(b"\x20\x02")
