"""X.509 device authentication over real mutual TLS."""

from __future__ import annotations

import datetime as dt

import pytest

from azure_iot_harness.certs import DevPKI, self_signed_cert
from tests.helpers import RawClient, connect_packet

NOW = dt.datetime.now(dt.UTC)


def _connack(emu, client_id, cert=None, tmp_path=None, password=None):
    certfile = keyfile = None
    if cert is not None:
        certfile, keyfile = (str(p) for p in cert.write(tmp_path))
    c = RawClient(emu, certfile=certfile, keyfile=keyfile)
    try:
        c.send(connect_packet(client_id, f"localhost/{client_id}/?api-version=2021-04-12", password))
        return c.connack()
    finally:
        c.close()


def _self_signed_device(emu_thread, emu, device_id, cert, secondary=None, sha256=False):
    primary = cert.sha256_thumbprint if sha256 else cert.sha1_thumbprint
    body = {
        "deviceId": device_id,
        "authentication": {
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": primary, "secondaryThumbprint": secondary},
        },
    }
    emu_thread.call(emu.registry.put_device(body, if_match=None))


def test_ca_signed_device(emulator, tmp_path):
    assert _connack(emulator, "x509-device1", emulator.pki.issue_device_cert("x509-device1"), tmp_path) == 0


def test_ca_signed_module(emulator_thread, emulator, tmp_path):
    emulator_thread.call(emulator.registry.put_module("device1", {"moduleId": "m2", "authentication": {"type": "certificateAuthority"}}, if_match=None))
    assert _connack(emulator, "device1/m2", emulator.pki.issue_device_cert("device1/m2"), tmp_path) == 0


@pytest.mark.parametrize("sha256", [False, True])
def test_self_signed_device_by_thumbprint(emulator_thread, emulator, tmp_path, sha256):
    cert = self_signed_cert("thumb-dev")
    _self_signed_device(emulator_thread, emulator, "thumb-dev", cert, sha256=sha256)
    assert _connack(emulator, "thumb-dev", cert, tmp_path) == 0


def test_self_signed_secondary_thumbprint_lower_case(emulator_thread, emulator, tmp_path):
    cert, other = self_signed_cert("thumb-dev"), self_signed_cert("thumb-dev")
    _self_signed_device(emulator_thread, emulator, "thumb-dev", other, secondary=cert.sha1_thumbprint.lower())
    assert _connack(emulator, "thumb-dev", cert, tmp_path) == 0


def test_self_signed_wrong_thumbprint(emulator_thread, emulator, tmp_path):
    _self_signed_device(emulator_thread, emulator, "thumb-dev", self_signed_cert("thumb-dev"))
    assert _connack(emulator, "thumb-dev", self_signed_cert("thumb-dev"), tmp_path) == 5


def test_x509_device_without_certificate(emulator):
    assert _connack(emulator, "x509-device1") == 5


def test_certificate_from_another_ca(emulator, tmp_path):
    foreign = DevPKI.generate().issue_device_cert("x509-device1")
    assert _connack(emulator, "x509-device1", foreign, tmp_path) == 5


def test_certificate_with_wrong_cn(emulator, tmp_path):
    assert _connack(emulator, "x509-device1", emulator.pki.issue_device_cert("someone-else"), tmp_path) == 5


def test_expired_certificate(emulator, tmp_path):
    cert = emulator.pki.issue_device_cert(
        "x509-device1", not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(days=1)
    )
    assert _connack(emulator, "x509-device1", cert, tmp_path) == 5


def test_self_signed_cert_for_ca_device(emulator, tmp_path):
    assert _connack(emulator, "x509-device1", self_signed_cert("x509-device1"), tmp_path) == 5


def test_sas_device_may_present_a_certificate_and_use_its_token(emulator, tmp_path):
    from tests.helpers import device_token

    cert = self_signed_cert("device1")
    assert _connack(emulator, "device1", cert, tmp_path, password=device_token(emulator, "device1")) == 0


def test_x509_device_cannot_use_sas(emulator):
    from azure_iot_harness.config import WELL_KNOWN_SAS_DEVICE_KEYS
    from azure_iot_harness.emulator.protocol import sas

    token = sas.generate("localhost/devices/x509-device1", WELL_KNOWN_SAS_DEVICE_KEYS[0])
    assert _connack(emulator, "x509-device1", password=token) == 5
