"""CA certificates as IoT Hub and DPS manage them: upload, proof of possession, the management
plane's descriptions. Pure functions.

A CA certificate is uploaded under a name, unverified unless the upload says `isVerified`
(Azure's "verified on upload"). Proof of possession: the owner asks for a verification code,
issues a certificate whose CN is that code with the CA's key, and sends it to `verify`; the CA is
then verified and the code spent. Only verified CAs authenticate devices (`chains.Trust`).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from email.utils import format_datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from ...certs.pki import thumbprints
from ...errors import CertificateError, ServiceError
from .chains import check_validity, common_name, describe
from .x509 import decode_certificate

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_STATUS_NAMES = {400: "BadRequest", 404: "NotFound", 409: "Conflict", 412: "PreconditionFailed"}


def management_error(status: int, code: str, message: str) -> ServiceError:
    """An error of the management plane (the IoT Hub and DPS resource providers)."""
    return ServiceError(status, code, message)


def error_body(exc: ServiceError) -> dict:
    """The resource providers' error shape, which the management SDKs and `az` read."""
    return {"code": exc.error_code, "httpStatusCode": _STATUS_NAMES.get(exc.status, str(exc.status)), "message": exc.message}


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise management_error(400, "InvalidCertificateName", f"certificate name {name!r}: 1-64 letters, digits, - . _")
    return name


def parse_certificate(text: object, now: dt.datetime) -> x509.Certificate:
    """An uploaded CA certificate (PEM, base64 of PEM, base64 DER): parseable and valid now."""
    if not isinstance(text, str) or not text.strip():
        raise management_error(400, "InvalidCertificate", "properties.certificate is required (PEM or base64)")
    try:
        cert = x509.load_der_x509_certificate(decode_certificate(text))
        check_validity(cert, now, f"certificate {describe(cert)}")
    except CertificateError as exc:
        raise management_error(400, "InvalidCertificate", str(exc)) from None
    return cert


def new_verification_code() -> str:
    return secrets.token_hex(24).upper()


def new_etag() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


def check_proof(ca: x509.Certificate, text: object, code: str | None, now: dt.datetime) -> None:
    """The verification certificate proves possession of the CA's key: CN = the code, signed by
    the CA, valid now. ServiceError 400 saying which part fails."""
    if code is None:
        raise management_error(
            400, "VerificationCodeNotGenerated", "no verification code was generated for this certificate (generateVerificationCode first)"
        )
    cert = parse_certificate(text, now)
    cn = common_name(cert)
    if cn != code:
        raise management_error(
            400, "CertificateVerificationFailed", f"the verification certificate's CN {cn!r} is not the verification code {code!r}"
        )
    try:
        if cert.issuer != ca.subject:
            raise InvalidSignature
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise management_error(
            400,
            "CertificateVerificationFailed",
            f"the verification certificate (issuer {cert.issuer.rfc4514_string()!r}) is not signed by the CA {describe(ca)}",
        ) from None


def new_record(name: str, cert: x509.Certificate, verified: bool, now: dt.datetime, existing: dict | None) -> dict:
    pem = cert.public_bytes(Encoding.PEM).decode()
    return {
        "name": name,
        "certificate": pem,
        "isVerified": bool(verified),
        "verificationCode": None,
        "etag": new_etag(),
        "created": existing["created"] if existing else now.isoformat(),
        "updated": now.isoformat(),
    }


def properties(record: dict, *, with_code: bool = False) -> dict:
    """`properties` of a certificate description (IoT Hub and DPS name the fields alike)."""
    cert = x509.load_pem_x509_certificate(record["certificate"].encode())
    sha1, _sha256 = thumbprints(cert.public_bytes(Encoding.DER))
    out = {
        "subject": common_name(cert) or cert.subject.rfc4514_string(),
        "expiry": _rfc1123(cert.not_valid_after_utc),
        "thumbprint": sha1,
        "isVerified": record["isVerified"],
        "created": _rfc1123(dt.datetime.fromisoformat(record["created"])),
        "updated": _rfc1123(dt.datetime.fromisoformat(record["updated"])),
        "certificate": record["certificate"],
    }
    if with_code:
        out["verificationCode"] = record.get("verificationCode")
    return out


def description(record: dict, parent_id: str, resource_type: str, *, with_code: bool = False) -> dict:
    """A certificate as the management plane answers it: `{properties, id, name, etag, type}`."""
    return {
        "properties": properties(record, with_code=with_code),
        "id": f"{parent_id}/certificates/{record['name']}",
        "name": record["name"],
        "etag": record["etag"],
        "type": resource_type,
    }


def _rfc1123(when: dt.datetime) -> str:
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)
