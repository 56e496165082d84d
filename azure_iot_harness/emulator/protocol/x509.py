"""Certificates: decoding them as Azure's APIs take them, and the client-certificate checks of
X.509 device authentication. Pure functions.

selfSigned devices are matched by SHA-1 or SHA-256 thumbprint (any case, primary or
secondary); certificateAuthority devices need a certificate issued by a trusted CA whose CN is
the device id (`{device}/{module}` for modules). Validity dates are checked in both cases.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ...certs.pki import thumbprints
from ...errors import CertificateError


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


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def check_validity(cert: x509.Certificate, now: dt.datetime | None = None) -> None:
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"client certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"client certificate expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


def check_thumbprint(der: bytes, allowed: Iterable[str | None], now: dt.datetime | None = None) -> None:
    cert = load(der)
    check_validity(cert, now)
    wanted = {t.upper().replace(":", "") for t in allowed if t}
    if not wanted:
        raise CertificateError("device has no registered thumbprint")
    if not wanted & set(thumbprints(der)):
        raise CertificateError("client certificate thumbprint matches neither registered thumbprint")


def check_ca_signed(der: bytes, expected_cn: str, cas: Iterable[x509.Certificate], now: dt.datetime | None = None) -> None:
    cert = load(der)
    check_validity(cert, now)
    cn = common_name(cert)
    if cn != expected_cn:
        raise CertificateError(f"client certificate CN {cn!r} is not the identity {expected_cn!r}")
    for ca in cas:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        check_validity(ca, now)
        return
    raise CertificateError("client certificate was not issued by a CA trusted by the hub")
