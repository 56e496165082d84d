"""The MQTT port's TLS: client certificates are requested, sent whole, and judged at CONNECT;
TLS 1.2 only; the server certificate is what clients check."""

from __future__ import annotations

import asyncio.sslproto
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from azure_iot_harness.certs import DevPKI, self_signed_cert
from tests.helpers import PahoDevice, RawClient, connect_packet, wait_for


def _chains(thread, emu) -> list[tuple[bytes, ...]]:
    async def read() -> list[tuple[bytes, ...]]:
        return [c.peer_chain for c in emu.mqtt.connections]

    return thread.call(read())


def _ders(pem: bytes) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem))


def test_any_client_certificate_passes_the_handshake_and_reaches_connect(emulator, tmp_path):
    # A certificate from a CA the server has never seen: refused by CONNACK, not by a TLS alert.
    # This fails if the adapter's accept-any verify callback (emulator.tls.context) stops working.
    for cert in (self_signed_cert("x"), DevPKI.generate().issue_device_cert("x509-device1")):
        certfile, keyfile = cert.write(tmp_path)
        c = RawClient(emulator, certfile=str(certfile), keyfile=str(keyfile))
        c.send(connect_packet("x509-device1", "localhost/x509-device1/?api-version=2021-04-12"))
        assert c.connack() == 5
        c.close()


def test_a_chain_sent_by_the_client_arrives_whole(emulator_thread, emulator, chain_files):
    # leaf + intermediate, as the convenience scripts' `*-full-chain.cert.pem` files hold them.
    sent = chain_files.ders
    c = RawClient(emulator, certfile=str(chain_files.certfile), keyfile=str(chain_files.keyfile))
    try:
        assert wait_for(lambda: sent in _chains(emulator_thread, emulator))
        c.send(connect_packet("chain-device", "localhost/chain-device/?api-version=2021-04-12"))
        assert c.connack() == 5  # an unknown root: judged at CONNECT
    finally:
        c.close()


def test_paho_sends_the_device_ca_with_its_certificate(emulator_thread, emulator, tmp_path):
    # issue_device_cert writes leaf + device CA (an intermediate under the root): both arrive,
    # and the hub authenticates the device by its leaf.
    cert = emulator.pki.issue_device_cert("x509-device1")
    certfile, keyfile = cert.write(tmp_path)
    username = f"{emulator.host}/x509-device1/?api-version=2021-04-12"
    device = PahoDevice(emulator, "x509-device1", username=username, certfile=str(certfile), keyfile=str(keyfile))
    try:
        assert device.connect() == 0
        chains = _chains(emulator_thread, emulator)
        assert _ders(cert.cert_pem) in chains
        assert all(len(chain) == 2 for chain in chains if chain)
    finally:
        device.close()


def test_a_client_without_a_certificate_has_an_empty_chain(emulator_thread, emulator):
    c = RawClient(emulator)
    try:
        assert wait_for(lambda: _chains(emulator_thread, emulator) == [()])
    finally:
        c.close()


def test_nothing_process_wide_is_changed(emulator):
    # asyncio's TLS keeps its own read buffer (256 KiB) while an emulator runs in this process.
    assert emulator.mqtt.running
    assert asyncio.sslproto.SSLProtocol.max_size == 256 * 1024


def test_wrong_host_name_fails_at_the_client(emulator):
    ctx = ssl.create_default_context(cafile=str(emulator.ca_file))
    with socket.create_connection(("127.0.0.1", emulator.mqtt_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
            ctx.wrap_socket(raw, server_hostname="not-the-hub.example")


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
