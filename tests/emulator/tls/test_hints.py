"""A client that refuses the server certificate: the emulator logs the alert and a hint."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest

from azure_iot_harness.certs import DevPKI
from azure_iot_harness.emulator.app import EmulatorThread
from tests.helpers import connect_packet, raw_sas_connect, wait_for

FIRMWARE_NAMES = ["myhub.azure-devices.net", "global.azure-devices-provisioning.net"]


@pytest.fixture
def emu():
    with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, host_names=FIRMWARE_NAMES) as emu:
        yield emu


def _handshake(emu, context: ssl.SSLContext, name: str) -> None:
    with socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name):
            pass


def _failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "TLS handshake failed" in r.getMessage()]


def test_the_configured_firmware_names_are_in_the_certificate(emu):
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    for name in FIRMWARE_NAMES:
        _handshake(emu, ctx, name)


def test_a_name_the_certificate_does_not_cover(emu, caplog):
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(emu, ctx, "otherhub.azure-devices.net")
    record = wait_for(lambda: _failures(caplog))[0]
    text = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "'bad certificate'" in text and "refused the server certificate" in text
    assert all(name in text for name in ["localhost", "127.0.0.1", *FIRMWARE_NAMES])
    assert "--host-name" in text and str(emu.ca_file) in text


def test_a_client_that_does_not_trust_the_ca(emu, caplog):
    ctx = ssl.create_default_context(cadata=DevPKI.generate().root_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(emu, ctx, "localhost")
    record = wait_for(lambda: _failures(caplog))[0]
    text = record.getMessage()
    assert record.levelno == logging.WARNING and "'unknown ca'" in text and str(emu.ca_file) in text
    raw_sas_connect(emu).close()  # and the emulator keeps serving


def test_other_handshake_failures_stay_quiet(emu, caplog):
    with socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10) as raw:
        raw.sendall(connect_packet("device1", "localhost/device1", "x"))  # plain MQTT on the TLS port
        raw.recv(100)
    record = wait_for(lambda: _failures(caplog))[0]
    assert record.levelno == logging.INFO and "refused" not in record.getMessage()
