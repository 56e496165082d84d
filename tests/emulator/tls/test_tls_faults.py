"""Server-side TLS faults with real clients: `openssl s_client -verify_return_error`, Python's `ssl`
(default verification) and paho refuse each bad certificate with an alert the emulator records;
clients that trust both roots accept the rotated one; the huge chain and maximum-size records
are handled; a client that ignores verification is caught completing the handshake."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.tls.outcome import HandshakeOutcome
from azure_iot_harness.emulator.trace import TraceEvent
from azure_iot_harness.errors import FaultError
from tests.helpers import connect_packet, device_token, https, sas_device, wait_for

# The certificates a verifying client must refuse, and the alert OpenSSL's client sends for each.
REFUSED = {
    "wrong-host": "bad_certificate",
    "unknown-root": "unknown_ca",
    "expired": "certificate_expired",
    "not-yet-valid": "bad_certificate",
    "rotated-root": "unknown_ca",  # to a client that trusts the first root only
}
OPENSSL = shutil.which("openssl")


class Recorder:
    """The "TLS" events of the emulator's packet trace, in order, as handshake outcomes."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def events(self) -> list[TraceEvent]:
        return [e for e in self.emu.trace.events() if e.type == "TLS"]

    def next(self, count: int) -> HandshakeOutcome:
        """The `count`-th outcome (1-based), once it is there."""
        events = wait_for(lambda: (found := self.events()) and len(found) >= count and found)
        event = events[count - 1]
        assert event.tls is not None
        return HandshakeOutcome(**event.tls, reason=event.reason)

    def fault_before(self, count: int) -> str | None:
        """The FAULT event's reason on the `count`-th TLS event's connection, if any."""
        conn = self.events()[count - 1].conn
        faults = [e.reason for e in self.emu.trace.events(conn=conn) if e.type == "FAULT"]
        return faults[0] if faults else None


@pytest.fixture
def emu():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0) as emu:
        yield emu


def _python(emu: Emulator, cafile: Path, port: int | None = None) -> str:
    """A handshake with default verification: the TLS version, or raises."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((emu.config.bind, port or emu.mqtt_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            return str(sock.version())


def _s_client(emu: Emulator, cafile: Path, *, verify: bool = True) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    args = [OPENSSL, "s_client", "-connect", f"{emu.config.bind}:{emu.mqtt_port}", "-servername", "localhost"]
    args += ["-CAfile", str(cafile), "-verify_hostname", "localhost"]
    if verify:
        args.append("-verify_return_error")
    return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("certificate", sorted(REFUSED))
def test_python_ssl_refuses_each_bad_certificate(emu, certificate):
    seen = Recorder(emu)
    fault = emu.faults.add("tls-certificate", certificate=certificate, count=2)
    for _ in range(2):
        with pytest.raises(ssl.SSLCertVerificationError):
            _python(emu, emu.ca_file)
    assert _python(emu, emu.ca_file) == "TLSv1.2"  # the third connection gets the normal certificate
    for i in (1, 2):
        outcome = seen.next(i)
        assert (outcome.outcome, outcome.alert, outcome.server_cert, outcome.sni) == ("alert", REFUSED[certificate], certificate, "localhost")
    assert seen.next(3).outcome == "completed" and seen.next(3).server_cert is None
    assert fault.fired == 2 and emu.faults.list() == []
    assert seen.fault_before(1) == f"tls-certificate ({fault.id})" and seen.fault_before(3) is None


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
@pytest.mark.parametrize("certificate", sorted(REFUSED))
def test_openssl_s_client_refuses_each_bad_certificate(emu, certificate):
    seen = Recorder(emu)
    emu.faults.add("tls-certificate", certificate=certificate)
    refused = _s_client(emu, emu.ca_file)
    assert refused.returncode != 0, refused.stdout
    assert "verify error" in refused.stderr + refused.stdout
    assert (seen.next(1).outcome, seen.next(1).alert) == ("alert", REFUSED[certificate])
    # The same client told not to stop at the verdict completes the handshake, and the trace
    # shows it accepted the bad certificate: the check would catch such a device.
    emu.faults.add("tls-certificate", certificate=certificate)
    lenient = _s_client(emu, emu.ca_file, verify=False)
    assert lenient.returncode == 0, lenient.stderr
    assert (seen.next(2).outcome, seen.next(2).server_cert) == ("completed", certificate)


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_clients_that_trust_both_roots_accept_the_rotated_one(emu):
    seen = Recorder(emu)
    bundle = emu.ca_bundle_file
    assert bundle.read_bytes() == b"".join(emu.server_roots())
    assert emu.info()["caBundleFile"] == str(bundle)
    assert emu.server_roots()[0] == emu.ca_file.read_bytes()
    emu.faults.add("tls-certificate", certificate="rotated-root", count=2)
    assert _python(emu, bundle) == "TLSv1.2"
    result = _s_client(emu, bundle)
    assert result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout, result.stdout + result.stderr
    assert [(o.outcome, o.server_cert) for o in (seen.next(1), seen.next(2))] == [("completed", "rotated-root")] * 2
    assert _python(emu, bundle) == "TLSv1.2"  # and the bundle still trusts the first root


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_the_huge_chain_is_sent_whole_and_accepted(emu):
    seen = Recorder(emu)
    emu.faults.add("tls-certificate", certificate="huge", count=2)
    assert _python(emu, emu.ca_file) == "TLSv1.2"
    result = _s_client(emu, emu.ca_file)
    assert result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout
    assert "depth=5" in result.stderr + result.stdout  # root, four intermediates, leaf
    assert (seen.next(2).outcome, seen.next(2).server_cert) == ("completed", "huge")


def test_paho_refuses_an_expired_certificate(emu):
    seen = Recorder(emu)
    emu.faults.add("tls-certificate", certificate="expired")
    device = sas_device(emu)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            device.connect()
    finally:
        device.client.loop_stop()
    assert (seen.next(1).outcome, seen.next(1).alert) == ("alert", "certificate_expired")
    assert emu.registry.get("device1") is not None
    ok = sas_device(emu)
    try:
        assert ok.connect() == 0  # the fault was for one connection
    finally:
        ok.close()


def test_a_dedicated_port_serves_the_fault_until_it_is_removed(emu):
    seen = Recorder(emu)
    status, _, doc = https(
        emu, "POST", "/_emulator/faults", {"kind": "tls-certificate", "deviceId": "device1", "params": {"certificate": "not-yet-valid", "port": "dedicated"}}
    )
    assert status == 201, doc
    assert doc["host"] == emu.config.bind and isinstance(doc["port"], int) and doc["port"] != emu.mqtt_port
    assert doc["count"] is None  # served until removed
    fault = emu.faults.get(doc["id"])
    assert fault is not None
    for _ in range(2):
        with pytest.raises(ssl.SSLCertVerificationError):
            _python(emu, emu.ca_file, port=doc["port"])
    assert _python(emu, emu.ca_file) == "TLSv1.2"  # the device endpoint itself is untouched
    assert [o.server_cert for o in (seen.next(1), seen.next(2), seen.next(3))] == ["not-yet-valid", "not-yet-valid", None]
    assert fault.fired == 2 and https(emu, "GET", "/_emulator/faults")[2][0]["fired"] == 2
    assert https(emu, "DELETE", f"/_emulator/faults/{fault.id}")[0] == 204

    def refused() -> bool:
        try:
            socket.create_connection((emu.config.bind, doc["port"]), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    assert wait_for(refused)


def test_a_connect_sent_without_a_handshake_is_recorded(emu):
    seen = Recorder(emu)
    with socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10) as raw:
        raw.sendall(connect_packet("device1", f"{emu.host}/device1/?api-version=2021-04-12", device_token(emu, "device1")))
        raw.recv(100)  # the emulator closes (after OpenSSL's alert)
    outcome = seen.next(1)
    assert outcome.outcome == "connect-without-handshake" and outcome.reason and "10 " in outcome.reason
    with socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
        raw.recv(100)
    assert seen.next(2).outcome == "plaintext"
    socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10).close()
    assert seen.next(3).outcome == "closed"


# ---- maximum-size records ------------------------------------------------------------------------


def _records(data: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each whole TLS record in `data`."""
    out, pos = [], 0
    while pos + 5 <= len(data):
        kind, length = data[pos], data[pos + 3] << 8 | data[pos + 4]
        if pos + 5 + length > len(data):
            break
        out.append((kind, length))
        pos += 5 + length
    return out


@pytest.mark.parametrize("fault", [True, False])
def test_max_records_sends_the_handshake_in_16_kb_records(emu, fault):
    """A Python client over memory BIOs, reading what the server sends as records. Without the
    fault (the control) the handshake's records are small."""
    seen = Recorder(emu)
    if fault:
        emu.faults.add("tls-max-records")
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    received = b""
    with socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10) as raw:

        def pump() -> None:
            nonlocal received
            if outgoing.pending:
                raw.sendall(outgoing.read())
            chunk = raw.recv(65536)
            assert chunk, "the server closed"
            received += chunk
            incoming.write(chunk)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        raw.sendall(outgoing.read())
        tls.write(connect_packet("device1", f"{emu.host}/device1/?api-version=2021-04-12", device_token(emu, "device1")))
        raw.sendall(outgoing.read())
        handshake = [length for kind, length in _records(received) if kind == 22]

        def read(n: int) -> bytes:
            answer = b""
            while len(answer) < n:
                try:
                    answer += tls.read(n - len(answer))
                except ssl.SSLWantReadError:
                    pump()
            return answer

        assert read(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
        received = b""
        tls.write(b"\xc0\x00" * 50)  # 50 PINGREQs in one record
        raw.sendall(outgoing.read())
        assert read(100) == b"\xd0\x00" * 50
    answers = [length for kind, length in _records(received) if kind == 23]
    assert len(answers) < 50, answers  # what one loop turn answers goes out in one write
    if fault:
        assert 16384 in handshake, handshake
        assert (seen.next(1).outcome, seen.next(1).server_cert) == ("completed", "huge")
    else:
        assert max(handshake) < 4096, handshake
        assert (seen.next(1).outcome, seen.next(1).server_cert) == ("completed", None)


def test_bad_tls_faults_are_refused(emu):
    with pytest.raises(FaultError, match="certificate must be one of"):
        emu.faults.add("tls-certificate", certificate="self-signed")
    with pytest.raises(FaultError, match="needs the parameter certificate"):
        emu.faults.add("tls-certificate")
    with pytest.raises(FaultError, match="port must be one of"):
        emu.faults.add("tls-max-records", port="8884")
    # The handshake comes before the CONNECT: the shared endpoint cannot tell devices apart.
    with pytest.raises(FaultError, match="port of its own"):
        emu.faults.add("tls-certificate", certificate="expired", device_id="device1")
    assert emu.faults.list() == []
    status, _, answer = https(emu, "POST", "/_emulator/faults", {"kind": "tls-certificate", "params": {"certificate": "nope"}})
    assert status == 400, answer


def test_a_dedicated_fault_ends_with_its_duration(emu):
    fault = emu.faults.add("tls-certificate", certificate="expired", port="dedicated", duration=0.5)
    assert fault.listen is not None
    wait_for(lambda: emu.faults.list() == [] and emu.tls_faults.listener_of(fault.id) is None)


def test_a_data_folder_keeps_the_rotated_root_and_writes_the_bundle(tmp_path):
    roots = []
    for _ in range(2):  # a restart keeps both roots, so devices given the bundle keep trusting it
        with EmulatorThread(data_dir=tmp_path, mqtt_port=0, https_port=0) as emu:
            assert emu.ca_bundle_file == tmp_path / "pki" / "ca-bundle.pem"
            assert emu.ca_bundle_file.read_bytes() == b"".join(emu.server_roots())
            assert (tmp_path / "pki" / "ca-rotated.pem").read_bytes() == emu.server_roots()[1]
            roots.append(emu.server_roots())
    assert roots[0] == roots[1] and roots[0][0] != roots[0][1]
