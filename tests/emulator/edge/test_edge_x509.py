"""The edge with X.509: an edge device CA of one's own (IoT Edge's `[edge_ca]` cert and pk, made
by the convenience scripts' verbs), so leaves trusting only the user's root trust the gateway; and
CA-signed leaves presenting chains through the edge."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from azure_iot_harness.certs.chain import issue
from azure_iot_harness.certs.convenience import ConvenienceCerts
from azure_iot_harness.config import WELL_KNOWN_LEAF_DEVICE, WELL_KNOWN_LEAF_DEVICE_KEYS
from azure_iot_harness.emulator.protocol import sas
from azure_iot_harness.errors import ConfigError
from tests.chain_helpers import OwnPki
from tests.helpers import wait_for

from .edge_helpers import API, edge_scope, hub_messages, start_edge


def _edge_connack(emu, client_id: str, ca_file: Path, *, password=None, certfile=None, keyfile=None) -> int:
    c = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    c.username_pw_set(f"{emu.host}/{client_id}/?{API}", password)
    ctx = ssl.create_default_context(cafile=str(ca_file))  # checks the gateway's name too
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    c.tls_set_context(ctx)
    codes: list[int] = []
    c.on_connect = lambda cl, u, f, rc: codes.append(rc)
    c.connect(emu.edge.bind, emu.edge.mqtt_port)
    c.loop_start()
    try:
        wait_for(lambda: codes)
        if codes[0] == 0:
            info = c.publish(f"devices/{client_id}/messages/events/", b"through the edge", qos=1)
            info.wait_for_publish(10)
        return codes[0]
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    out = tmp_path_factory.mktemp("certgen")
    certs = ConvenienceCerts(out)
    certs.create_root_and_intermediate()
    edge_ca = certs.create_edge_device_ca_certificate("gw")
    return out, edge_ca


def test_bring_your_own_edge_ca(scripts):
    out, edge_ca = scripts
    thread, emu = start_edge(edge_ca_cert=f"file://{edge_ca.full_chain}", edge_ca_key=str(edge_ca.key))
    try:
        root = out / "certs" / "azure-iot-test-only.root.ca.cert.pem"
        password = sas.generate(f"{emu.host}/devices/{WELL_KNOWN_LEAF_DEVICE}", WELL_KNOWN_LEAF_DEVICE_KEYS[0])
        assert _edge_connack(emu, WELL_KNOWN_LEAF_DEVICE, root, password=password) == 0
        wait_for(lambda: hub_messages(emu, WELL_KNOWN_LEAF_DEVICE), what="the leaf's message at the hub")
        # The development root no longer makes the gateway's certificate.
        with pytest.raises(ssl.SSLCertVerificationError):
            _edge_connack(emu, WELL_KNOWN_LEAF_DEVICE, emu.ca_file, password=password)
    finally:
        thread.stop()


def test_edge_ca_that_is_not_a_ca_or_not_its_key(scripts, tmp_path):
    out, edge_ca = scripts
    device = ConvenienceCerts(out).create_device_certificate("not-a-ca")
    with pytest.raises(ConfigError, match="not a CA"):
        start_edge(edge_ca_cert=str(device.full_chain), edge_ca_key=str(device.key))
    with pytest.raises(ConfigError, match="does not belong"):
        start_edge(edge_ca_cert=str(edge_ca.full_chain), edge_ca_key=str(device.key))
    with pytest.raises(ConfigError, match="go together"):
        start_edge(edge_ca_cert=str(edge_ca.full_chain))


def test_ca_signed_leaf_presenting_a_chain_through_the_edge(tmp_path):
    thread, emu = start_edge()
    try:
        own = OwnPki.make()
        thread.call(emu.upload_ca("team-root", own.root.cert_pem, verified=True))
        scope = edge_scope(emu)
        body = {"deviceId": "x509-leaf", "authentication": {"type": "certificateAuthority"}, "deviceScope": scope, "parentScopes": [scope]}
        thread.call(emu.registry.put_device(body, if_match=None))
        certfile, keyfile = own.device("x509-leaf", tmp_path)
        assert _edge_connack(emu, "x509-leaf", emu.ca_file, certfile=certfile, keyfile=keyfile) == 0
        wait_for(lambda: hub_messages(emu, "x509-leaf"), what="the leaf's message at the hub")
        stranger = issue("x509-leaf", issue("Stranger Intermediate", issue("Stranger Root", ca=True), ca=True), ca=False)
        stranger.write(tmp_path / "s.pem", tmp_path / "s.key", full_chain=True)
        assert _edge_connack(emu, "x509-leaf", emu.ca_file, certfile=str(tmp_path / "s.pem"), keyfile=str(tmp_path / "s.key")) == 5
    finally:
        thread.stop()
