"""Server certificates a device must refuse (or cope with), for the emulator's TLS faults.

Each is a chain (leaf first, the root left out as servers do) and its key, for the names the
normal server certificate covers unless the fault is about the name:

- `wrong-host`: from the development root, for `wrong-host.invalid` only;
- `unknown-root`: the right names, from a root made for this and trusted by nobody;
- `expired` / `not-yet-valid`: from the development root, valid only in the past / the future;
- `huge`: from the development root, valid, through a chain of intermediates with a leaf of
  several hundred subjectAltNames — over 16 KB, so the Certificate message alone fills a
  maximum-size TLS record (devices must handle it: IoT Hub's own chain is several KB);
- `rotated-root`: the right names from a *second* development root, `RotatedRoot`, imitating
  the move of IoT Hub's server chain from Baltimore CyberTrust Root to DigiCert Global Root G2:
  a device that trusts both roots (`ca-bundle.pem`) accepts it, one that trusts the first only
  refuses it.

The second root is kept with the PKI (in a data folder it survives restarts, so devices can be
given the bundle once); the other chains are issued on first use and never written anywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ConfigError

FAULT_CERTIFICATES = ("wrong-host", "unknown-root", "expired", "not-yet-valid", "huge", "rotated-root")
WRONG_HOST = "wrong-host.invalid"
ROTATED_ROOT_FILES = ("ca-rotated.pem", "ca-rotated.key")
CA_BUNDLE_FILE = "ca-bundle.pem"
# The huge chain: this many intermediates between the root and the leaf, and subjectAltNames
# in the leaf until the chain's DER passes HUGE_BYTES.
HUGE_INTERMEDIATES = 4
HUGE_BYTES = 16 * 1024 + 1024


@dataclass(frozen=True)
class ServerChain:
    """One fault certificate: `chain_pem` is the leaf then its intermediates."""

    name: str
    chain_pem: bytes
    key_pem: bytes

    @property
    def ders(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(self.chain_pem)]

    @property
    def size(self) -> int:
        """Bytes of the chain as sent in the handshake (DER)."""
        return sum(len(der) for der in self.ders)


class RotatedRoot:
    """The second development root (the 'DigiCert Global Root G2' to the first one's 'Baltimore')."""

    def __init__(self, ca: trustme.CA) -> None:
        self.ca = ca

    @classmethod
    def generate(cls) -> RotatedRoot:
        return cls(trustme.CA(organization_name="azure-iot-harness", organization_unit_name="development root CA G2 (rotated)"))

    @classmethod
    def load_or_create(cls, folder: str | os.PathLike[str]) -> RotatedRoot:
        cert, key = (Path(folder) / name for name in ROTATED_ROOT_FILES)
        if cert.exists() and key.exists():
            return cls(trustme.CA.from_pem(cert.read_bytes(), key.read_bytes()))
        root = cls.generate()
        Path(folder).mkdir(parents=True, exist_ok=True)
        cert.write_bytes(root.pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(root.ca.private_key_pem.bytes())
        return root

    @property
    def pem(self) -> bytes:
        return self.ca.cert_pem.bytes()


def write_bundle(folder: str | os.PathLike[str], roots: Iterable[bytes]) -> Path:
    """Write `ca-bundle.pem` (every root a client should trust during a rotation) into `folder`."""
    path = Path(folder) / CA_BUNDLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(roots))
    return path


class FaultCertificates:
    """The fault chains for one emulator: issued on first use, then kept."""

    def __init__(self, root: trustme.CA, rotated: RotatedRoot, names: Iterable[str]) -> None:
        self.root = root
        self.rotated = rotated
        self.names = [n for n in names if n]
        if not self.names:
            raise ConfigError("fault certificates need at least one host name")
        self._chains: dict[str, ServerChain] = {}

    def get(self, name: str) -> ServerChain:
        if name not in FAULT_CERTIFICATES:
            raise ConfigError(f"unknown fault certificate {name!r}; one of: {', '.join(FAULT_CERTIFICATES)}")
        if name not in self._chains:
            self._chains[name] = self._issue(name)
        return self._chains[name]

    def _issue(self, name: str) -> ServerChain:
        now = dt.datetime.now(dt.UTC)
        if name == "wrong-host":
            return _leaf(name, self.root, [WRONG_HOST])
        if name == "unknown-root":
            stranger = trustme.CA(organization_name="azure-iot-harness", organization_unit_name="unknown root (trusted by nobody)")
            return _leaf(name, stranger, self.names)
        if name == "expired":
            return _leaf(name, self.root, self.names, not_before=now - dt.timedelta(days=60), not_after=now - dt.timedelta(days=30))
        if name == "not-yet-valid":
            return _leaf(name, self.root, self.names, not_before=now + dt.timedelta(days=30), not_after=now + dt.timedelta(days=60))
        if name == "rotated-root":
            # Through an intermediate, as Azure's chains are.
            return _leaf(name, self.rotated.ca.create_child_ca(), self.names)
        return _huge(self.root, self.names)


def _leaf(
    name: str,
    issuer: trustme.CA,
    names: list[str],
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> ServerChain:
    leaf = issuer.issue_cert(*names, common_name=names[0], organization_name=f"azure-iot-harness fault {name}", not_before=not_before, not_after=not_after)
    pems = [blob.bytes() for blob in leaf.cert_chain_pems]
    return ServerChain(name, b"".join(pems), leaf.private_key_pem.bytes())


def _huge(root: trustme.CA, names: list[str]) -> ServerChain:
    issuer = root
    intermediates: list[trustme.CA] = []
    for _ in range(HUGE_INTERMEDIATES):
        issuer = issuer.create_child_ca()
        intermediates.append(issuer)
    issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem.bytes())
    issuer_key = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    tail = b"".join(ca.cert_pem.bytes() for ca in reversed(intermediates))
    tail_size = sum(len(c.public_bytes(serialization.Encoding.DER)) for c in x509.load_pem_x509_certificates(tail))
    key = ec.generate_private_key(ec.SECP256R1())
    # 24 bytes of DER per padding name; enough of them that leaf + intermediates pass HUGE_BYTES.
    padding = [x509.DNSName(f"pad{i:05d}.huge.invalid") for i in range(max(0, HUGE_BYTES - tail_size) // 24 + 1)]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "azure-iot-harness fault huge")]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([*_general_names(names), *padding]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ServerChain("huge", cert.public_bytes(serialization.Encoding.PEM) + tail, key_pem)


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out
