"""Certificate chains as IoT Hub and DPS check them: from the certificates a device sent to a CA
it trusts. Pure functions.

Path building and its checks (signatures, validity of every certificate, basicConstraints CA on
every issuer, pathLenConstraint) are `cryptography`'s verifier (`x509.verification`), with an
extension policy looser than the Web PKI's, as IoT Hub's is: a device certificate needs no
subjectAltName or extendedKeyUsage (the convenience scripts' and most factories' have none), a
CA no authorityKeyIdentifier; keyUsage, where present, must allow signing certificates on a CA
and signatures on the device's own. The certificates a device sends may come in any order and
carry extras (OpenSSL and Windows build the path from the set, and so does IoT Hub); a trusted
CA may be a root or an intermediate.

When no path is found, `explain` turns the verifier's terse reason into one that names the
certificate at fault, for the log line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509 import verification as xv
from cryptography.x509.oid import NameOID

from ...errors import CertificateError

# A device sends its certificate and the intermediates up to (not necessarily including) the CA;
# more than this is refused before any path is built. OpenSSL's own limit on the bytes of a
# certificate list (100 KiB, what the TLS adapter keeps) already ends larger handshakes.
MAX_PRESENTED = 10
MAX_DEPTH = 8  # intermediates allowed between a device certificate and its trusted CA


@dataclass(frozen=True)
class Anchor:
    """A CA certificate the hub or DPS knows, by the name it was uploaded under."""

    name: str
    cert: x509.Certificate
    verified: bool = True


@dataclass(frozen=True)
class Trust:
    """The CAs a device certificate may chain to (`verified`), and those uploaded but not yet
    verified, which authenticate nobody but explain a refusal."""

    anchors: tuple[Anchor, ...] = ()

    @property
    def verified(self) -> tuple[Anchor, ...]:
        return tuple(a for a in self.anchors if a.verified)

    @property
    def unverified(self) -> tuple[Anchor, ...]:
        return tuple(a for a in self.anchors if not a.verified)


@dataclass(frozen=True)
class VerifiedChain:
    path: tuple[x509.Certificate, ...]  # device certificate first, the trusted CA last
    anchor: Anchor
    presented: int  # how many certificates the device sent
    notes: tuple[str, ...] = field(default=())  # order or extras worth a log line

    @property
    def leaf(self) -> x509.Certificate:
        return self.path[0]


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def describe(cert: x509.Certificate) -> str:
    cn = common_name(cert)
    return f"CN={cn}" if cn is not None else cert.subject.rfc4514_string() or "(empty subject)"


def load_chain(chain: Sequence[bytes]) -> list[x509.Certificate]:
    if not chain:
        raise CertificateError("no client certificate")
    if len(chain) > MAX_PRESENTED:
        raise CertificateError(f"the client sent {len(chain)} certificates; at most {MAX_PRESENTED} are accepted")
    out = []
    for i, der in enumerate(chain):
        try:
            out.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise CertificateError(f"certificate {i + 1} the client sent cannot be parsed: {exc}") from None
    return out


def verify(chain: Sequence[bytes], trust: Trust, now: dt.datetime | None = None) -> VerifiedChain:
    """The path from the first certificate of `chain` (what the client sent, leaf first) to a
    verified CA of `trust`; CertificateError naming what is wrong otherwise."""
    certs = load_chain(chain)
    now = now or dt.datetime.now(dt.UTC)
    leaf, rest = certs[0], certs[1:]
    if not trust.verified:
        raise CertificateError(_unverified_reason(leaf, rest, trust, now) or "no verified CA certificate is trusted")
    try:
        path = _path(leaf, rest, [a.cert for a in trust.verified], now)
    except xv.VerificationError as exc:
        reason = _unverified_reason(leaf, rest, trust, now) or explain(certs, trust, now, str(exc))
        raise CertificateError(reason) from None
    anchor = next(a for a in trust.verified if a.cert == path[-1])
    return VerifiedChain(tuple(path), anchor, len(certs), _notes(certs, path))


def check_leaf_name(leaf: x509.Certificate, expected: str, *, what: str = "the identity") -> None:
    cn = common_name(leaf)
    if cn != expected:
        raise CertificateError(f"client certificate CN {cn!r} is not {what} {expected!r}")


def check_validity(cert: x509.Certificate, now: dt.datetime | None = None, what: str = "client certificate") -> None:
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"{what} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


# ---- the policy -------------------------------------------------------------------------------


def _ca_key_usage(policy: xv.Policy, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError(f"{describe(cert)} has keyUsage without keyCertSign")


def _ee_key_usage(policy: xv.Policy, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.digital_signature:
        raise ValueError(f"{describe(cert)} has keyUsage without digitalSignature, so it cannot sign the TLS handshake")


def _ca_basic_constraints(policy: xv.Policy, cert: x509.Certificate, bc: x509.BasicConstraints) -> None:
    if not bc.ca:
        raise ValueError(f"{describe(cert)} is not a CA (basicConstraints CA:FALSE)")


_CA_POLICY = (
    xv.ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, _ca_basic_constraints)
    .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ca_key_usage)
)
_EE_POLICY = xv.ExtensionPolicy.permit_all().may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ee_key_usage)


def _path(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], anchors: list[x509.Certificate], now: dt.datetime
) -> list[x509.Certificate]:
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store(anchors))
        .time(now)
        .max_chain_depth(MAX_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    return list(verifier.verify(leaf, intermediates).chain)


# ---- explaining ---------------------------------------------------------------------------------


def _unverified_reason(
    leaf: x509.Certificate, rest: list[x509.Certificate], trust: Trust, now: dt.datetime
) -> str | None:
    """Why a chain that ends at an uploaded but unverified CA is refused, or None."""
    for anchor in trust.unverified:
        try:
            _path(leaf, rest, [anchor.cert], now)
        except xv.VerificationError:
            continue
        return (
            f"the certificate chains to CA certificate {anchor.name!r} ({describe(anchor.cert)}), which is uploaded but "
            "not verified: complete its proof of possession (verification code, then verify) or upload it as verified"
        )
    return None


def explain(certs: list[x509.Certificate], trust: Trust, now: dt.datetime, verifier_says: str) -> str:
    """A reason naming the certificate at fault, from what the client sent."""
    leaf, rest = certs[0], certs[1:]
    said = verifier_says.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    try:
        check_validity(leaf, now)
    except CertificateError as exc:
        return str(exc)
    for cert in rest:
        try:
            check_validity(cert, now, f"intermediate {describe(cert)}")
        except CertificateError as exc:
            return f"{exc} ({said})"
    if "path length" in said:
        return f"a CA's pathLenConstraint is exceeded: {_shape(certs)} ({said})"
    if "basicConstraints" in said or "not a CA" in said:
        issuers = [c for c in rest if not _is_ca(c)]
        if issuers:
            return f"{describe(issuers[0])} signs another certificate but is not a CA (basicConstraints CA:TRUE missing) ({said})"
        return said
    if "keyUsage" in said:
        return said
    if leaf.issuer == leaf.subject and not rest:
        return f"the client certificate {describe(leaf)} is self-signed, and the identity needs one issued by a verified CA"
    names = ", ".join(f"{a.name!r} ({describe(a.cert)})" for a in trust.verified)
    top = certs[-1]
    return (
        f"no path from the client certificate {describe(leaf)} to a verified CA: the chain sent ({_shape(certs)}) "
        f"ends at an issuer {top.issuer.rfc4514_string()!r} that is none of {names} ({said})"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _shape(certs: list[x509.Certificate]) -> str:
    return " <- ".join(describe(c) for c in certs)


def _notes(certs: list[x509.Certificate], path: list[x509.Certificate]) -> tuple[str, ...]:
    notes = []
    used = [c for c in certs if c in path]
    extras = [c for c in certs if c not in path]
    if used != path[: len(used)]:
        notes.append(f"the certificates came out of order ({_shape(certs)}); the path was built from the set")
    if extras:
        notes.append(f"{len(extras)} certificate(s) sent are not on the path and were ignored: {_shape(extras)}")
    return tuple(notes)
