"""Certificate chains as IoT Hub checks them (protocol.chains): every refusal names what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from azure_iot_harness.certs.chain import issue
from azure_iot_harness.emulator.protocol import chains
from azure_iot_harness.emulator.protocol.chains import Anchor, Trust
from azure_iot_harness.emulator.protocol.x509 import check_ca_signed
from azure_iot_harness.errors import CertificateError

NOW = dt.datetime.now(dt.UTC)
PAST = NOW - dt.timedelta(days=10)


@pytest.fixture(scope="module")
def pki():
    root = issue("Test Root", ca=True)
    inter = issue("Test Intermediate", root, ca=True, path_length=0)
    return root, inter


def trust(*certs, verified=True):
    return Trust(tuple(Anchor(f"ca{i}", c.cert, verified) for i, c in enumerate(certs)))


def refusal(chain, t, cn="dev1") -> str:
    with pytest.raises(CertificateError) as info:
        check_ca_signed([c.der if hasattr(c, "der") else c for c in chain], cn, t, NOW)
    return str(info.value)


def test_leaf_and_intermediate_to_an_uploaded_root(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False)
    verified = check_ca_signed([dev.der, inter.der], "dev1", trust(root), NOW)
    assert [chains.describe(c) for c in verified.path] == ["CN=dev1", "CN=Test Intermediate", "CN=Test Root"]
    assert verified.anchor.name == "ca0" and verified.notes == ()


def test_the_trusted_ca_may_be_the_intermediate(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False)
    assert check_ca_signed([dev.der], "dev1", trust(inter), NOW).path[-1] == inter.cert


def test_full_chain_with_the_root_sent_too(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False)
    assert check_ca_signed([dev.der, inter.der, root.der], "dev1", trust(root), NOW).notes == ()


def test_wrong_order_and_extra_certificates_are_built_around_and_noted(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False)
    stranger = issue("Stranger CA", ca=True)
    verified = check_ca_signed([dev.der, root.der, stranger.der, inter.der], "dev1", trust(root), NOW)
    assert any("out of order" in n for n in verified.notes)
    assert any("not on the path" in n and "Stranger CA" in n for n in verified.notes)


def test_unknown_root(pki):
    root, inter = pki
    other_root = issue("Other Root", ca=True)
    dev = issue("dev1", issue("Other Intermediate", other_root, ca=True), ca=False)
    why = refusal([dev], trust(root))
    assert "no path from the client certificate CN=dev1 to a verified CA" in why and "'ca0'" in why


def test_uploaded_but_unverified_ca(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False)
    assert "uploaded but not verified" in refusal([dev, inter], trust(root, verified=False))


def test_no_ca_at_all(pki):
    root, inter = pki
    assert "no verified CA" in refusal([issue("dev1", inter, ca=False)], Trust())


@pytest.mark.parametrize("when", ["expired", "not yet valid"])
def test_intermediate_out_of_its_validity(pki, when):
    root, _ = pki
    dates = (
        {"not_before": PAST - dt.timedelta(days=1), "not_after": PAST}
        if when == "expired"
        else {"not_before": NOW + dt.timedelta(days=1), "not_after": NOW + dt.timedelta(days=10)}
    )
    inter = issue("Dated Intermediate", root, ca=True, **dates)
    dev = issue("dev1", inter, ca=False)
    why = refusal([dev, inter], trust(root))
    assert "intermediate CN=Dated Intermediate" in why
    assert ("expired at" in why) if when == "expired" else ("not valid before" in why)


def test_intermediate_without_ca_true(pki):
    root, _ = pki
    not_ca = issue("Not A CA", root, ca=False)
    dev = issue("dev1", not_ca, ca=False)
    assert "CN=Not A CA signs another certificate but is not a CA" in refusal([dev, not_ca], trust(root))


def test_intermediate_without_basic_constraints(pki):
    root, _ = pki
    bare = issue("Bare Intermediate", root, ca=True, basic_constraints=False)
    dev = issue("dev1", bare, ca=False)
    assert "Bare Intermediate" in refusal([dev, bare], trust(root))


def test_path_length_exceeded(pki):
    root, inter = pki  # inter has pathlen 0: no CA may follow it
    below = issue("Second Intermediate", inter, ca=True)
    dev = issue("dev1", below, ca=False)
    assert "pathLenConstraint" in refusal([dev, below, inter], trust(root))


def test_issuer_key_usage_without_cert_sign(pki):
    root, _ = pki
    usage = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    inter = issue("Signs Nothing", root, ca=True, key_usage=usage)
    dev = issue("dev1", inter, ca=False)
    assert "keyUsage without keyCertSign" in refusal([dev, inter], trust(root))


def test_leaf_cn_must_be_the_identity(pki):
    root, inter = pki
    assert "CN 'dev2' is not the identity 'dev1'" in refusal([issue("dev2", inter, ca=False), inter], trust(root))


def test_module_cn(pki):
    root, inter = pki
    dev = issue("dev1/mod1", inter, ca=False)
    assert check_ca_signed([dev.der, inter.der], "dev1/mod1", trust(root), NOW)


def test_self_signed_leaf_presenting_a_chain(pki):
    root, inter = pki
    lone = issue("dev1", ca=False)
    assert "no path" in refusal([lone, inter, root], trust(root))
    assert "self-signed" in refusal([lone], trust(root))


def test_expired_leaf(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False, not_before=PAST - dt.timedelta(days=1), not_after=PAST)
    assert "client certificate expired at" in refusal([dev, inter], trust(root))


def test_too_many_certificates(pki):
    root, inter = pki
    dev = issue("dev1", inter, ca=False)
    assert f"at most {chains.MAX_PRESENTED}" in refusal([dev] + [inter] * chains.MAX_PRESENTED, trust(root))


def test_garbage_in_the_chain(pki):
    root, inter = pki
    assert "certificate 2 the client sent cannot be parsed" in refusal([issue("dev1", inter, ca=False).der, b"junk"], trust(root))
