"""Who is registering: a SAS token or a client certificate → the enrollment it proves. Pure functions.

An individual enrollment of the registration id takes precedence over every group, as in DPS:
when one exists, the device must prove that one. Group symmetric keys are derived per
registration id (HMAC-SHA256 of the id under the group key); a group device's certificate must
chain (through the intermediates it sends) to one of the group's signing certificates, root or
intermediate, or to a verified CA uploaded to DPS that the group names in `caReferences`, with
CN = registration id. Every failure is DPS's
401 (the reason is for the log and the message; DPS itself says only "Unauthorized").

A device's SAS token names `skn=registration` (docs, C and Node SDKs) or no key name at all:
the Python device SDK sends none, and works against DPS. Any other key name is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ...certs.pki import thumbprints
from ...errors import CertificateError, SasTokenError
from ..protocol import chains, sas
from ..protocol import x509 as x509check
from ..protocol.chains import Trust
from ..protocol.dps import dps_error, same_registration
from .enrollments import stored_certificates

log = logging.getLogger("azure_iot_harness.dps")

SKN = "registration"
NO_CAS = Trust()


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
    chain: Sequence[bytes],
    registration_id: str,
    individual: dict | None,
    groups: Iterable[dict],
    cas: Trust = NO_CAS,
    now: dt.datetime | None = None,
) -> Attestation:
    """`chain`: what the device sent, leaf first. An individual enrollment matches the leaf by
    thumbprint (the rest is ignored); a group needs a path from the leaf to one of its signing
    certificates (root or intermediate) or to a verified CA of DPS it names in `caReferences`."""
    who = f"registration {registration_id}"
    try:
        certs = chains.load_chain(chain)
        x509check.check_validity(certs[0], now)
    except CertificateError as exc:
        raise dps_error("Unauthorized", f"{who}: {exc}") from None
    der = chain[0]
    cn = x509check.common_name(certs[0])
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
    reasons = []
    for grp in groups:
        if grp["attestation"]["type"] != "x509":
            continue
        trust = _group_trust(grp, cas)
        if not trust.anchors:
            refs = ", ".join(repr(n) for n in grp["attestation"]["x509"]["caReferences"].values())
            reasons.append(f"group {grp['enrollmentGroupId']}: caReferences name {refs}, which no CA certificate uploaded to DPS is")
            continue
        try:
            verified = chains.verify(chain, trust, now)
        except CertificateError as exc:
            reasons.append(f"group {grp['enrollmentGroupId']}: {exc}")
            continue
        for note in verified.notes:
            log.info("%s: %s", who, note)
        signer = verified.anchor.cert.public_bytes(Encoding.DER)
        return Attestation(registration_id, "x509", grp, certificate=der, signer=signer)
    detail = "; ".join(reasons) if reasons else "there is no X.509 enrollment group"
    raise dps_error("Unauthorized", f"{who}: no individual enrollment, and no X.509 enrollment group accepts the certificate ({detail})")


def _group_trust(grp: dict, cas: Trust) -> Trust:
    """The CAs a group's devices chain to: its signing certificates, or the uploaded CAs its
    caReferences name (verified or not: an unverified one explains the refusal)."""
    refs = (grp["attestation"].get("x509") or {}).get("caReferences") or {}
    if refs:
        names = {n.lower() for n in refs.values() if n}
        return Trust(tuple(a for a in cas.anchors if a.name.lower() in names))
    anchors = [
        chains.Anchor(f"signing certificate of group {grp['enrollmentGroupId']}", x509.load_der_x509_certificate(d))
        for d in stored_certificates(grp)
    ]
    return Trust(tuple(anchors))
