"""The fault server certificates themselves: what makes each one bad (or big), and the rotated root."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from azure_iot_harness.certs import DevPKI
from azure_iot_harness.certs.server_faults import FAULT_CERTIFICATES, FaultCertificates, RotatedRoot, write_bundle
from azure_iot_harness.errors import ConfigError


@pytest.fixture(scope="module")
def pki() -> DevPKI:
    return DevPKI.generate(["myhub.example"])


@pytest.fixture(scope="module")
def certs(pki: DevPKI) -> FaultCertificates:
    return FaultCertificates(pki.root, RotatedRoot.generate(), pki.server_names)


def _chain(certs: FaultCertificates, name: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(certs.get(name).chain_pem)


def _names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _root_subject(pem: bytes) -> x509.Name:
    return x509.load_pem_x509_certificate(pem).subject


def test_wrong_host_covers_none_of_the_server_names(pki, certs):
    leaf = _chain(certs, "wrong-host")[0]
    assert _names(leaf) == ["wrong-host.invalid"]
    assert leaf.issuer == _root_subject(pki.root_pem)


def test_unknown_root_is_issued_by_neither_development_root(pki, certs):
    leaf = _chain(certs, "unknown-root")[0]
    assert set(pki.server_names) <= set(_names(leaf))
    assert leaf.issuer not in (_root_subject(pki.root_pem), _root_subject(certs.rotated.pem))


@pytest.mark.parametrize("name, past", [("expired", True), ("not-yet-valid", False)])
def test_validity_outside_today(pki, certs, name, past):
    leaf = _chain(certs, name)[0]
    now = dt.datetime.now(dt.UTC)
    assert (leaf.not_valid_after_utc < now) if past else (leaf.not_valid_before_utc > now)
    assert set(pki.server_names) <= set(_names(leaf)) and leaf.issuer == _root_subject(pki.root_pem)


def test_huge_is_over_16_kb_and_valid(pki, certs):
    chain = _chain(certs, "huge")
    assert certs.get("huge").size > 16 * 1024
    assert len(chain) == 5 and chain[-1].issuer == _root_subject(pki.root_pem)
    now = dt.datetime.now(dt.UTC)
    assert chain[0].not_valid_before_utc < now < chain[0].not_valid_after_utc
    assert set(pki.server_names) <= set(_names(chain[0]))


def test_rotated_root_issues_the_same_names_through_an_intermediate(pki, certs):
    leaf, intermediate = _chain(certs, "rotated-root")
    assert set(pki.server_names) <= set(_names(leaf))
    assert intermediate.issuer == _root_subject(certs.rotated.pem) != _root_subject(pki.root_pem)


def test_the_rotated_root_survives_in_a_folder(tmp_path):
    first = RotatedRoot.load_or_create(tmp_path)
    assert RotatedRoot.load_or_create(tmp_path).pem == first.pem
    assert (tmp_path / "ca-rotated.key").stat().st_mode & 0o077 == 0
    bundle = write_bundle(tmp_path, [b"A\n", first.pem])
    assert bundle.read_bytes() == b"A\n" + first.pem


def test_chains_are_issued_once(certs):
    assert certs.get("expired") is certs.get("expired")
    assert set(FAULT_CERTIFICATES) == {"wrong-host", "unknown-root", "expired", "not-yet-valid", "huge", "rotated-root"}


def test_unknown_names_are_refused(certs):
    with pytest.raises(ConfigError, match="one of: wrong-host"):
        certs.get("self-signed")
