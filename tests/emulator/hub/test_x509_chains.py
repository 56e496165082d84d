"""CA-signed devices presenting chains (leaf + intermediates) over real mutual TLS, to a CA uploaded
to the hub: MQTT on 8883, MQTT over WebSocket, modules; every refusal is CONNACK 5 with one log line
saying why."""

from __future__ import annotations

import datetime as dt
import logging

import paho.mqtt.client as mqtt
import pytest

from azure_iot_harness.certs.chain import issue
from azure_iot_harness.emulator.protocol import chains
from tests.chain_helpers import OwnPki, openssl_chain
from tests.helpers import PahoDevice, https, wait_for

API = "api-version=2021-04-12"


@pytest.fixture
def own():
    return OwnPki.make()


def _ca_device(thread, emu, device_id="chain-dev1"):
    body = {"deviceId": device_id, "authentication": {"type": "certificateAuthority"}}
    thread.call(emu.registry.put_device(body, if_match=None))


def _connack(emu, client_id, certfile, keyfile) -> int:
    dev = PahoDevice(emu, client_id, username=f"{emu.host}/{client_id}/?{API}", certfile=certfile, keyfile=keyfile)
    try:
        return dev.connect()
    finally:
        dev.close()


def _refused_because(caplog, emu, client_id, certfile, keyfile) -> str:
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    caplog.clear()
    assert _connack(emu, client_id, certfile, keyfile) == 5
    return wait_for(lambda: next((m for m in caplog.messages if "CONNACK 5" in m), None), what="the refusal's log line")


def test_paho_with_the_full_chain_to_an_uploaded_verified_root(emulator_thread, emulator, own, tmp_path):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    certfile, keyfile = own.device("chain-dev1", tmp_path)
    dev = PahoDevice(emulator, "chain-dev1", username=f"{emulator.host}/chain-dev1/?{API}", certfile=certfile, keyfile=keyfile)
    assert dev.connect() == 0
    mid = dev.publish("devices/chain-dev1/messages/events/", b"via a chain")
    wait_for(lambda: mid in dev.acked)
    dev.close()
    [msg] = https(emulator, "GET", "/_emulator/telemetry?deviceId=chain-dev1")[2]["messages"]
    assert msg["body"] == "via a chain"


def test_leaf_and_intermediate_only_to_an_uploaded_intermediate(emulator_thread, emulator, own, tmp_path):
    emulator_thread.call(emulator.upload_ca("team-intermediate", own.intermediate.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    dev = issue("chain-dev1", own.intermediate, ca=False)
    dev.write(tmp_path / "d.pem", tmp_path / "d.key")  # the leaf alone
    assert _connack(emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key")) == 0


def test_module_with_a_chain(emulator_thread, emulator, own, tmp_path):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    body = {"moduleId": "m1", "authentication": {"type": "certificateAuthority"}}
    emulator_thread.call(emulator.registry.put_module("device1", body, if_match=None))
    certfile, keyfile = own.device("device1/m1", tmp_path)
    assert _connack(emulator, "device1/m1", certfile, keyfile) == 0


def test_chain_made_by_openssl(emulator_thread, emulator, tmp_path):
    files = openssl_chain(tmp_path / "openssl", "ossl-dev1")
    emulator_thread.call(emulator.upload_ca("openssl-root", files["root"].read_text(), verified=True))
    _ca_device(emulator_thread, emulator, "ossl-dev1")
    assert _connack(emulator, "ossl-dev1", str(files["full_chain"]), str(files["key"])) == 0


def test_proof_of_possession_then_the_device_connects(emulator_thread, emulator, own, tmp_path, caplog):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem))
    _ca_device(emulator_thread, emulator)
    certfile, keyfile = own.device("chain-dev1", tmp_path)
    assert "uploaded but not verified" in _refused_because(caplog, emulator, "chain-dev1", certfile, keyfile)
    code = emulator_thread.call(emulator.ca_verification_code("team-root"))
    proof = issue(code, own.root, ca=False)
    assert emulator_thread.call(emulator.verify_ca("team-root", proof.cert_pem))["isVerified"] is True
    assert _connack(emulator, "chain-dev1", certfile, keyfile) == 0


def test_unknown_root(emulator_thread, emulator, own, tmp_path, caplog):
    _ca_device(emulator_thread, emulator)
    certfile, keyfile = own.device("chain-dev1", tmp_path)
    why = _refused_because(caplog, emulator, "chain-dev1", certfile, keyfile)
    assert "no path from the client certificate CN=chain-dev1 to a verified CA" in why


def test_leaf_cn_is_not_the_device_id(emulator_thread, emulator, own, tmp_path, caplog):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    certfile, keyfile = own.device("someone-else", tmp_path)
    assert "CN 'someone-else' is not the identity 'chain-dev1'" in _refused_because(caplog, emulator, "chain-dev1", certfile, keyfile)


def test_intermediate_without_ca_true(emulator_thread, emulator, own, tmp_path, caplog):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    not_ca = issue("Not A CA", own.root, ca=False)
    issue("chain-dev1", not_ca, ca=False).write(tmp_path / "d.pem", tmp_path / "d.key", full_chain=True)
    why = _refused_because(caplog, emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key"))
    assert "CN=Not A CA signs another certificate but is not a CA" in why


def test_too_many_certificates(emulator_thread, emulator, own, tmp_path, caplog):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    dev = issue("chain-dev1", own.intermediate, ca=False)
    padding = b"".join(issue(f"Filler {i}", ca=True).cert_pem for i in range(chains.MAX_PRESENTED))
    (tmp_path / "d.pem").write_bytes(dev.full_chain_pem + padding)
    (tmp_path / "d.key").write_bytes(dev.key_pem)
    why = _refused_because(caplog, emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key"))
    assert f"at most {chains.MAX_PRESENTED} are accepted" in why


def test_chain_over_openssls_size_limit_ends_the_handshake_not_the_emulator(emulator_thread, emulator, own, tmp_path, caplog):
    # OpenSSL keeps a client's certificate list under 100 KiB: a larger one fails the handshake
    # (one log line), and the emulator goes on serving.
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    dev = issue("chain-dev1", own.intermediate, ca=False)
    filler = issue("Filler", ca=True).cert_pem
    (tmp_path / "d.pem").write_bytes(dev.full_chain_pem + filler * (200_000 // len(filler) + 1))
    (tmp_path / "d.key").write_bytes(dev.key_pem)
    with pytest.raises(OSError):  # paho sees the connection end inside the handshake
        _connack(emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key"))
    wait_for(lambda: any("EXCESSIVE_MESSAGE_SIZE" in m for m in caplog.messages), what="the handshake failure's log line")
    certfile, keyfile = own.device("chain-dev1", tmp_path)
    assert _connack(emulator, "chain-dev1", certfile, keyfile) == 0


def test_chain_over_websocket(emulator_thread, emulator, own, tmp_path):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    events: dict[str, list] = {"rc": [], "gone": []}
    for cn, expected in (("chain-dev1", 0), ("intruder", 5)):
        events = {"rc": [], "gone": []}
        certfile, keyfile = own.device(cn, tmp_path)
        c = mqtt.Client(client_id="chain-dev1", transport="websockets")
        c.ws_set_options(path="/$iothub/websocket")
        c.username_pw_set(f"{emulator.host}/chain-dev1/?{API}", None)
        c.tls_set(ca_certs=str(emulator.ca_file), certfile=certfile, keyfile=keyfile)
        c.on_connect = lambda cl, u, f, rc, ev=events: ev["rc"].append(rc)
        c.on_disconnect = lambda cl, u, rc, ev=events: ev["gone"].append(rc)
        c.connect("localhost", emulator.https_port)
        c.loop_start()
        wait_for(lambda ev=events: ev["rc"] or ev["gone"])
        assert events["rc"] == [expected]
        c.disconnect()
        c.loop_stop()


def test_self_signed_thumbprint_device_may_send_a_chain(emulator_thread, emulator, own, tmp_path):
    # selfSigned devices are matched by their own certificate's thumbprint; what else they send is ignored.
    lone = issue("thumb-dev", ca=False)
    prints = {"primaryThumbprint": chains_sha1(lone.der), "secondaryThumbprint": None}
    body = {"deviceId": "thumb-dev", "authentication": {"type": "selfSigned", "x509Thumbprint": prints}}
    emulator_thread.call(emulator.registry.put_device(body, if_match=None))
    (tmp_path / "t.pem").write_bytes(lone.cert_pem + own.intermediate.cert_pem + own.root.cert_pem)
    (tmp_path / "t.key").write_bytes(lone.key_pem)
    assert _connack(emulator, "thumb-dev", str(tmp_path / "t.pem"), str(tmp_path / "t.key")) == 0


def chains_sha1(der: bytes) -> str:
    from azure_iot_harness.certs import thumbprints

    return thumbprints(der)[0]


NOW = dt.datetime.now(dt.UTC)


def _dated(root, when):
    if when == "expired":
        return issue("Dated Intermediate", root, ca=True, not_before=NOW - dt.timedelta(days=20), not_after=NOW - dt.timedelta(days=10))
    return issue("Dated Intermediate", root, ca=True, not_before=NOW + dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=10))


@pytest.mark.parametrize(
    "case, expected",
    [
        ("expired intermediate", "intermediate CN=Dated Intermediate expired at"),
        ("not-yet-valid intermediate", "intermediate CN=Dated Intermediate is not valid before"),
        ("pathlen exceeded", "pathLenConstraint is exceeded"),
    ],
)
def test_bad_chains_are_refused_with_the_reason(emulator_thread, emulator, own, tmp_path, caplog, case, expected):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    if case == "pathlen exceeded":
        capped = issue("Capped Intermediate", own.root, ca=True, path_length=0)
        below = issue("Second Intermediate", capped, ca=True)
        dev = issue("chain-dev1", below, ca=False)
    else:
        dev = issue("chain-dev1", _dated(own.root, case.split()[0]), ca=False)
    dev.write(tmp_path / "d.pem", tmp_path / "d.key", full_chain=True)
    assert expected in _refused_because(caplog, emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key"))


def test_chain_out_of_order_with_an_extra_certificate_is_built_around(emulator_thread, emulator, own, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="azure_iot_harness")
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    dev = issue("chain-dev1", own.intermediate, ca=False)
    stranger = issue("Stranger CA", ca=True)
    (tmp_path / "d.pem").write_bytes(dev.cert_pem + own.root.cert_pem + stranger.cert_pem + own.intermediate.cert_pem)
    (tmp_path / "d.key").write_bytes(dev.key_pem)
    assert _connack(emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key")) == 0
    notes = [m for m in caplog.messages if m.startswith("device chain-dev1:")]
    assert any("out of order" in m for m in notes) and any("Stranger CA" in m for m in notes)


def test_self_signed_leaf_with_a_chain_for_a_ca_device(emulator_thread, emulator, own, tmp_path, caplog):
    emulator_thread.call(emulator.upload_ca("team-root", own.root.cert_pem, verified=True))
    _ca_device(emulator_thread, emulator)
    lone = issue("chain-dev1", ca=False)
    (tmp_path / "d.pem").write_bytes(lone.cert_pem + own.intermediate.cert_pem + own.root.cert_pem)
    (tmp_path / "d.key").write_bytes(lone.key_pem)
    assert "no path from the client certificate CN=chain-dev1" in _refused_because(caplog, emulator, "chain-dev1", str(tmp_path / "d.pem"), str(tmp_path / "d.key"))
