"""Certificate chains of one's own: a root, intermediates, device certificates, each with the
extensions a firmware team's PKI gives them (and, for tests, without them).

`issue(cn, issuer, ca=…)` makes one certificate; an `Issued` knows the certificates above it, so
`full_chain_pem` is what a device presents (itself, the intermediates, the root), as the
convenience scripts' `-full-chain` files hold it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    parents: tuple[x509.Certificate, ...] = field(default=())  # its issuer first, the root last

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @property
    def full_chain_pem(self) -> bytes:
        """Itself, then every issuer up to the root: what a device presents."""
        return b"".join(c.public_bytes(PEM) for c in (self.cert, *self.parents))

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str], *, full_chain: bool = False) -> None:
        Path(cert_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cert_path).write_bytes(self.full_chain_pem if full_chain else self.cert_pem)
        write_private(Path(key_path), self.key_pem)


def issue(
    common_name: str,
    issuer: Issued | None = None,
    *,
    ca: bool,
    path_length: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 365,
    basic_constraints: bool = True,
    key_usage: x509.KeyUsage | None | bool = True,
    client_auth: bool = True,
    server_names: Sequence[str] = (),
) -> Issued:
    """A certificate for `common_name`, signed by `issuer` (self-signed without one). `ca`: a CA
    (basicConstraints CA:TRUE, keyUsage keyCertSign) or an end entity (CA:FALSE, keyUsage
    digitalSignature, extendedKeyUsage clientAuth). `basic_constraints=False` / `key_usage=False`
    leave those extensions out; `key_usage` may also be a KeyUsage of one's own. `server_names`:
    a TLS server's host names and addresses (subjectAltName, extendedKeyUsage serverAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(hours=1)
    not_after = not_after or now + dt.timedelta(days=days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    if key_usage is True:
        key_usage = _CA_USAGE if ca else _DEVICE_USAGE
    if isinstance(key_usage, x509.KeyUsage):
        builder = builder.add_extension(key_usage, critical=True)
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in server_names]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca and client_auth:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if issuer is not None:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    parents = (issuer.cert, *issuer.parents) if issuer else ()
    return Issued(cert, key, parents)


def load(cert_pem: bytes, key_pem: bytes, password: bytes | None = None, parents: tuple[x509.Certificate, ...] = ()) -> Issued:
    """An issuer from its PEM files (the first certificate of `cert_pem` is its own; the rest, if
    any, its parents)."""
    certs = x509.load_pem_x509_certificates(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the private key is neither an EC nor an RSA key")
    return Issued(certs[0], key, tuple(certs[1:]) or parents)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip
_DEVICE_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)  # fmt: skip


def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
