import datetime as dt
import ssl

from cryptography import x509

from azure_iot_harness.certs import DevPKI, self_signed_cert, thumbprints


def _sans(chain_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(chain_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {str(i) for i in san.get_values_for_type(x509.IPAddress)}


def test_server_certificate_covers_loopback_and_configured_names():
    pki = DevPKI.generate(["hub.example", "127.0.0.9"])
    assert {"localhost", "127.0.0.1", "::1", "hub.example", "127.0.0.9"} <= _sans(pki.server_chain_pem)


def test_kept_in_folder_and_reissued_when_names_change(tmp_path):
    first = DevPKI.load_or_create(tmp_path, ["a.example"])
    again = DevPKI.load_or_create(tmp_path, ["a.example"])
    assert again.root_pem == first.root_pem and again.device_ca_pem == first.device_ca_pem
    assert again.server_chain_pem == first.server_chain_pem
    moved = DevPKI.load_or_create(tmp_path, ["b.example"])
    assert moved.root_pem == first.root_pem  # devices keep trusting the same root
    assert moved.server_chain_pem != first.server_chain_pem
    assert "b.example" in _sans(moved.server_chain_pem)
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0


def test_device_certificates():
    pki = DevPKI.generate()
    cert = pki.issue_device_cert("dev:1/mod")
    leaf = x509.load_pem_x509_certificate(cert.cert_pem)
    assert leaf.subject.rfc4514_string() == "CN=dev:1/mod"
    leaf.verify_directly_issued_by(pki.device_ca_cert)
    assert cert.sha1_thumbprint == thumbprints(cert.der)[0] and len(cert.sha256_thumbprint) == 64
    own = self_signed_cert("x")
    leaf = x509.load_pem_x509_certificate(own.cert_pem)
    leaf.verify_directly_issued_by(leaf)


def test_validity_can_be_set_for_expired_certificates():
    now = dt.datetime.now(dt.UTC)
    cert = DevPKI.generate().issue_device_cert("d", not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1))
    assert x509.load_pem_x509_certificate(cert.cert_pem).not_valid_after_utc < now


def test_device_ca_chains_to_root_for_tls_clients(tmp_path):
    pki = DevPKI.generate()
    ctx = ssl.create_default_context(cadata=pki.root_pem.decode())
    certs = ctx.get_ca_certs()
    assert len(certs) == 1
    device_ca = x509.load_pem_x509_certificate(pki.device_ca_pem)
    device_ca.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.root_pem))


def test_device_ca_certificate_is_read_from_its_pem():
    pki = DevPKI.generate()
    assert pki.device_ca_cert == x509.load_pem_x509_certificate(pki.device_ca_pem)
    assert pki.issue_device_cert("dev").der  # signed by it
