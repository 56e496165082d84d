"""The development PKI: a root CA, the server certificate, a device CA and device certificates.

The root and the server certificate come from trustme. Device certificates are built here with
`cryptography` because their subject is an IoT Hub device id (CN = device id), which need not
be a valid DNS name, and self-signed device certificates have no CA at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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

# Names every server certificate covers, so that loopback clients can check the host name.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

_FILES = {
    "root": ("ca.pem", "ca.key"),
    "device_ca": ("device-ca.pem", "device-ca.key"),
    "server": ("server.pem", "server.key"),
}


def thumbprints(cert_der: bytes) -> tuple[str, str]:
    """SHA-1 and SHA-256 thumbprints (upper-case hex) of a DER certificate, as Azure shows them."""
    return hashlib.sha1(cert_der).hexdigest().upper(), hashlib.sha256(cert_der).hexdigest().upper()


@dataclass(frozen=True)
class DeviceCert:
    """A device certificate: `cert_pem` holds the leaf followed by its chain (if any)."""

    common_name: str
    cert_pem: bytes
    key_pem: bytes

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem).public_bytes(serialization.Encoding.DER)

    @property
    def sha1_thumbprint(self) -> str:
        return thumbprints(self.der)[0]

    @property
    def sha256_thumbprint(self) -> str:
        return thumbprints(self.der)[1]

    def write(self, folder: str | os.PathLike[str], name: str | None = None) -> tuple[Path, Path]:
        """Write NAME.pem and NAME.key (private key readable by the owner only)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        name = name or self.common_name.replace("/", "_")
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        cert_path.write_bytes(self.cert_pem)
        _write_private(key_path, self.key_pem)
        return cert_path, key_path


class DevPKI:
    """Root CA → server certificate, and root CA → device CA → device certificates."""

    def __init__(self, root: trustme.CA, device_ca: trustme.CA, server_chain_pem: bytes, server_key_pem: bytes):
        self.root = root
        self.device_ca = device_ca
        self.server_chain_pem = server_chain_pem
        self.server_key_pem = server_key_pem

    # ---- creation and persistence -------------------------------------------------------

    @classmethod
    def generate(cls, host_names: Iterable[str] = ()) -> DevPKI:
        root = trustme.CA(organization_name="azure-iot-harness", organization_unit_name="development root CA")
        device_ca = root.create_child_ca()
        server_chain, server_key = _issue_server(root, host_names)
        return cls(root, device_ca, server_chain, server_key)

    @classmethod
    def load_or_create(cls, folder: str | os.PathLike[str], host_names: Iterable[str] = ()) -> DevPKI:
        """Load the PKI kept in `folder`, creating what is missing.

        The CAs survive restarts (devices keep trusting them); the server certificate is issued
        again when the configured host names are not all covered by it.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = _server_names(host_names)
        root_paths = [folder / f for f in _FILES["root"]]
        if all(p.exists() for p in root_paths):
            root = trustme.CA.from_pem(root_paths[0].read_bytes(), root_paths[1].read_bytes())
        else:
            root = trustme.CA(organization_name="azure-iot-harness", organization_unit_name="development root CA")
            root_paths[0].write_bytes(root.cert_pem.bytes())
            _write_private(root_paths[1], root.private_key_pem.bytes())
        dev_paths = [folder / f for f in _FILES["device_ca"]]
        if all(p.exists() for p in dev_paths):
            device_ca = trustme.CA.from_pem(dev_paths[0].read_bytes(), dev_paths[1].read_bytes())
            device_ca.parent_cert = root
        else:
            device_ca = root.create_child_ca()
            dev_paths[0].write_bytes(device_ca.cert_pem.bytes())
            _write_private(dev_paths[1], device_ca.private_key_pem.bytes())
        srv_paths = [folder / f for f in _FILES["server"]]
        if all(p.exists() for p in srv_paths) and _covers(srv_paths[0].read_bytes(), names, root):
            chain, key = srv_paths[0].read_bytes(), srv_paths[1].read_bytes()
        else:
            chain, key = _issue_server(root, names)
            srv_paths[0].write_bytes(chain)
            _write_private(srv_paths[1], key)
        return cls(root, device_ca, chain, key)

    def write_ca(self, folder: str | os.PathLike[str]) -> Path:
        """Write the root CA certificate (what clients trust) and return its path."""
        path = Path(folder) / _FILES["root"][0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.root_pem)
        return path

    # ---- what clients and servers need --------------------------------------------------

    @property
    def root_pem(self) -> bytes:
        return self.root.cert_pem.bytes()

    @property
    def device_ca_pem(self) -> bytes:
        return self.device_ca.cert_pem.bytes()

    @property
    def device_ca_cert(self) -> x509.Certificate:
        return _certificate(self.device_ca)

    @property
    def server_names(self) -> list[str]:
        """The host names and addresses the server certificate covers (its subjectAltName)."""
        cert = x509.load_pem_x509_certificate(self.server_chain_pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]

    def issue_server_chain(self, host_names: Iterable[str]) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) of another server certificate from the root, for these names
        (and the loopback names): a second host of the hub."""
        return _issue_server(self.root, host_names)

    def issue_device_cert(
        self,
        common_name: str,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> DeviceCert:
        """A client certificate signed by the device CA; the file carries the device CA too."""
        key_pem = serialization.load_pem_private_key(self.device_ca.private_key_pem.bytes(), None)
        return _device_cert(common_name, self.device_ca_cert, key_pem, not_before, not_after)


class EdgePKI:
    """The transparent-gateway chain: root CA → edge device CA → edgeHub server certificate.

    Leaf devices trust the same root as for the hub, so one CA file serves both.
    """

    def __init__(self, edge_ca: trustme.CA, server_chain_pem: bytes, server_key_pem: bytes) -> None:
        self.edge_ca = edge_ca
        self.server_chain_pem = server_chain_pem
        self.server_key_pem = server_key_pem

    @classmethod
    def create(cls, root: trustme.CA, host_names: Iterable[str], folder: str | os.PathLike[str] | None = None) -> EdgePKI:
        """Load the edge CA from `folder` (creating it), and issue the edgeHub certificate when it
        does not cover `host_names`; with no folder everything is fresh."""
        names = _server_names(host_names)
        paths = [Path(folder) / f for f in ("edge-ca.pem", "edge-ca.key", "edge-server.pem", "edge-server.key")] if folder else None
        if paths and paths[0].exists() and paths[1].exists():
            edge_ca = trustme.CA.from_pem(paths[0].read_bytes(), paths[1].read_bytes())
            edge_ca.parent_cert = root
        else:
            edge_ca = root.create_child_ca()
            if paths:
                paths[0].write_bytes(edge_ca.cert_pem.bytes())
                _write_private(paths[1], edge_ca.private_key_pem.bytes())
        if paths and paths[2].exists() and paths[3].exists() and _covers(paths[2].read_bytes(), names, edge_ca):
            return cls(edge_ca, paths[2].read_bytes(), paths[3].read_bytes())
        leaf = edge_ca.issue_cert(*names, common_name=names[-1], organization_name="azure-iot-harness edgeHub")
        chain = leaf.cert_chain_pems[0].bytes() + edge_ca.cert_pem.bytes()
        key = leaf.private_key_pem.bytes()
        if paths:
            paths[2].write_bytes(chain)
            _write_private(paths[3], key)
        return cls(edge_ca, chain, key)


def self_signed_cert(
    common_name: str, *, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
) -> DeviceCert:
    """A self-signed client certificate, for devices registered by thumbprint."""
    return _device_cert(common_name, None, None, not_before, not_after)


# ---- helpers ------------------------------------------------------------------------------


def _certificate(ca: trustme.CA) -> x509.Certificate:
    """A trustme CA's certificate as a `cryptography` object, from its public PEM."""
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes())


def _server_names(host_names: Iterable[str]) -> list[str]:
    names: list[str] = []
    for name in (*LOOPBACK_NAMES, *host_names):
        if name and name not in names and name not in ("0.0.0.0", "::"):
            names.append(name)
    return names


def _issue_server(root: trustme.CA, host_names: Iterable[str]) -> tuple[bytes, bytes]:
    names = _server_names(host_names)
    try:
        leaf = root.issue_cert(*names, common_name=names[0], organization_name="azure-iot-harness")
    except (ValueError, UnicodeError) as exc:
        raise ConfigError(f"cannot issue a server certificate for host names {names}: {exc}") from exc
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes()


def _covers(chain_pem: bytes, names: list[str], root: trustme.CA) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(chain_pem)
        if cert.issuer != _certificate(root).subject:
            return False
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    for name in names:
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            name = name.lower()
        if name not in have:
            return False
    return True


def _device_cert(
    common_name: str,
    issuer: x509.Certificate | None,
    issuer_key,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> DeviceCert:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(hours=1)
    not_after = not_after or now + dt.timedelta(days=365)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    cert = builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    if issuer is not None:
        cert_pem += issuer.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DeviceCert(common_name, cert_pem, key_pem)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
