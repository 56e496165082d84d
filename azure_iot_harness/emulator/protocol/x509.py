"""Certificates: decoding them as Azure's APIs take them, and the client-certificate checks of
X.509 device authentication. Pure functions.

selfSigned devices are matched by SHA-1 or SHA-256 thumbprint of the leaf (any case, primary or
secondary; other certificates sent are ignored); certificateAuthority devices need a chain to a
verified CA (`chains`) and a leaf whose CN is the device id (`{device}/{module}` for modules).
Validity dates are checked in both cases.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ...certs.pki import thumbprints
from ...errors import CertificateError
from .chains import Trust, VerifiedChain, check_leaf_name, check_validity, common_name, load_chain, verify

__all__ = ["check_ca_signed", "check_thumbprint", "check_validity", "common_name", "decode_certificate", "load"]


def decode_certificate(text: str) -> bytes:
    """DER of a certificate in any form Azure's APIs accept: PEM text, base64 of the PEM text (what
    the portal and the Node SDKs' samples send) or base64 of the DER. CertificateError otherwise."""
    try:
        if "-----BEGIN" not in text:
            raw = base64.b64decode("".join(text.split()), validate=True)
            if b"-----BEGIN" not in raw:
                x509.load_der_x509_certificate(raw)
                return raw
            text = raw.decode("ascii")
        return x509.load_pem_x509_certificate(text.encode()).public_bytes(Encoding.DER)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raise CertificateError("not a certificate in PEM, base64 of PEM or base64 DER") from None


def load(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError(f"client certificate cannot be parsed: {exc}") from None


def check_thumbprint(der: bytes, allowed: Iterable[str | None], now: dt.datetime | None = None) -> None:
    cert = load(der)
    check_validity(cert, now)
    wanted = {t.upper().replace(":", "") for t in allowed if t}
    if not wanted:
        raise CertificateError("device has no registered thumbprint")
    if not wanted & set(thumbprints(der)):
        raise CertificateError("client certificate thumbprint matches neither registered thumbprint")


def check_ca_signed(
    chain: Sequence[bytes], expected_cn: str, trust: Trust, now: dt.datetime | None = None
) -> VerifiedChain:
    """The client's chain (leaf first) leads to a verified CA and the leaf's CN is the identity."""
    certs = load_chain(chain)
    check_validity(certs[0], now or dt.datetime.now(dt.UTC))
    check_leaf_name(certs[0], expected_cn)
    return verify(chain, trust, now)
