"""Who is registering: a SAS token or a client certificate → the enrollment it proves. Pure functions.

An individual enrollment of the registration id takes precedence over every group, as in DPS:
when one exists, the device must prove that one. Group symmetric keys are derived per
registration id (HMAC-SHA256 of the id under the group key); group certificates must be issued
by one of the group's signing certificates, with CN = registration id. Every failure is DPS's
401 (the reason is for the log and the message; DPS itself says only "Unauthorized").

A device's SAS token names `skn=registration` (docs, C and Node SDKs) or no key name at all:
the Python device SDK sends none, and works against DPS. Any other key name is refused.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ...certs.pki import thumbprints
from ...errors import CertificateError, SasTokenError
from ..protocol import sas
from ..protocol import x509 as x509check
from ..protocol.dps import dps_error, same_registration
from .enrollments import stored_certificates

SKN = "registration"


@dataclass(frozen=True)
class Attestation:
    registration_id: str
    kind: str  # "symmetricKey" or "x509"
    enrollment: dict  # the individual enrollment or the enrollment group
    keys: tuple[str, str] | None = None  # symmetric key: the device's primary and secondary key
    certificate: bytes | None = None  # X.509: the device's certificate (DER)
    signer: bytes | None = None  # X.509 group: the signing certificate that issued it

    @property
    def group_id(self) -> str | None:
        return self.enrollment.get("enrollmentGroupId")


def by_sas(
    password: str,
    scope: str,
    registration_id: str,
    individual: dict | None,
    groups: Iterable[dict],
    now: dt.datetime | None = None,
) -> Attestation:
    who = f"registration {registration_id}"
    try:
        token = sas.parse(password)
    except SasTokenError as exc:
        raise dps_error("Unauthorized", f"{who}: {exc}") from None
    if token.expired((now or dt.datetime.now(dt.UTC)).timestamp()):
        raise dps_error("Unauthorized", f"{who}: SAS token expired at se={token.expiry}")
    if token.key_name not in (None, SKN):
        raise dps_error("Unauthorized", f"{who}: a device's SAS token for DPS has skn=registration or none, not {token.key_name!r}")
    if not _audience_matches(token.resource, scope, registration_id):
        raise dps_error("Unauthorized", f"{who}: SAS token audience {token.resource!r} is not {scope}/registrations/{registration_id}")
    if individual is not None:
        attestation = individual["attestation"]
        if attestation["type"] != "symmetricKey":
            raise dps_error("Unauthorized", f"{who}: its individual enrollment uses {attestation['type']} attestation, not a SAS token")
        keys = attestation["symmetricKey"]
        if not any(token.verify(k) for k in (keys["primaryKey"], keys["secondaryKey"])):
            raise dps_error("Unauthorized", f"{who}: SAS signature matches neither key of its individual enrollment")
        return Attestation(registration_id, "symmetricKey", individual, keys=(keys["primaryKey"], keys["secondaryKey"]))
    for grp in groups:
        attestation = grp["attestation"]
        if attestation["type"] != "symmetricKey":
            continue
        keys = tuple(sas.derive_device_key(attestation["symmetricKey"][n], registration_id) for n in ("primaryKey", "secondaryKey"))
        if any(token.verify(k) for k in keys):
            return Attestation(registration_id, "symmetricKey", grp, keys=keys)
    raise dps_error(
        "Unauthorized", f"{who}: no individual enrollment, and the SAS signature matches no symmetric-key enrollment group"
    )


def _audience_matches(resource: str, scope: str, registration_id: str) -> bool:
    parts = resource.split("/")
    if len(parts) != 3 or parts[1] != "registrations" or parts[0].lower() != scope.lower():
        return False
    # An id with special characters may arrive escaped once more inside the audience.
    return same_registration(parts[2], registration_id) or same_registration(urllib.parse.unquote(parts[2]), registration_id)


def by_certificate(
    der: bytes,
    registration_id: str,
    individual: dict | None,
    groups: Iterable[dict],
    now: dt.datetime | None = None,
) -> Attestation:
    who = f"registration {registration_id}"
    try:
        cert = x509check.load(der)
        x509check.check_validity(cert, now)
    except CertificateError as exc:
        raise dps_error("Unauthorized", f"{who}: {exc}") from None
    cn = x509check.common_name(cert)
    if cn is None or not same_registration(cn, registration_id):
        raise dps_error("Unauthorized", f"{who}: the client certificate's CN {cn!r} is not the registration id")
    if individual is not None:
        if individual["attestation"]["type"] != "x509":
            kind = individual["attestation"]["type"]
            raise dps_error("Unauthorized", f"{who}: its individual enrollment uses {kind} attestation, not a certificate")
        presented = set(thumbprints(der))
        if not any(presented & set(thumbprints(c)) for c in stored_certificates(individual)):
            raise dps_error("Unauthorized", f"{who}: the client certificate is neither certificate of its individual enrollment")
        return Attestation(registration_id, "x509", individual, certificate=der)
    for grp in groups:
        if grp["attestation"]["type"] != "x509":
            continue
        for signer_der in stored_certificates(grp):
            signer = x509.load_der_x509_certificate(signer_der)
            if signer.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(signer)
                x509check.check_validity(signer, now)
            except (ValueError, TypeError, InvalidSignature, CertificateError):
                continue
            return Attestation(registration_id, "x509", grp, certificate=der, signer=signer_der)
    raise dps_error(
        "Unauthorized", f"{who}: no individual enrollment, and no X.509 enrollment group's signing certificate issued the client certificate"
    )
