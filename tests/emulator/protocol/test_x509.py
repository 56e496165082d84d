"""Certificates in the forms Azure's APIs take them."""

from __future__ import annotations

import base64

import pytest

from azure_iot_harness.certs import self_signed_cert
from azure_iot_harness.emulator.protocol.x509 import decode_certificate
from azure_iot_harness.errors import CertificateError


@pytest.fixture(scope="module")
def cert():
    return self_signed_cert("dev1")


def test_pem_text(cert):
    assert decode_certificate(cert.cert_pem.decode()) == cert.der


def test_base64_of_the_pem_text(cert):
    # What the portal and the Node SDKs' samples send for a signing certificate.
    assert decode_certificate(base64.b64encode(cert.cert_pem).decode()) == cert.der


def test_base64_der_with_or_without_line_breaks(cert):
    text = base64.b64encode(cert.der).decode()
    assert decode_certificate(text) == cert.der
    assert decode_certificate("\n".join(text[i : i + 64] for i in range(0, len(text), 64))) == cert.der


@pytest.mark.parametrize("text", ["nope", base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n").decode(), "AAAA", ""])
def test_anything_else_is_refused(text):
    with pytest.raises(CertificateError, match="PEM"):
        decode_certificate(text)
