"""Impersonation: one identity's credentials (SAS key, token, X.509 certificate, module, policy,
DPS) presented as another, at the hub over MQTT and WebSocket and at the edge over MQTT. Every
attempt must be refused with IoT Hub's code: CONNACK 5, or 2 for a client id that does not match
its username; after a connection, acting as another identity closes it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from azure_iot_harness.certs import self_signed_cert
from azure_iot_harness.config import (
    WELL_KNOWN_EDGE_DEVICE_KEYS,
    WELL_KNOWN_LEAF_DEVICE_KEYS,
    WELL_KNOWN_POLICIES,
    WELL_KNOWN_SYMMETRIC_GROUP_KEYS,
)
from azure_iot_harness.emulator.app import EmulatorThread
from azure_iot_harness.emulator.protocol import sas
from tests.conftest import free_loopback_address
from tests.robustness.clients import TRANSPORTS, Attempt, Credentials, running

HUB = "localhost"
API = "?api-version=2021-04-12"
A_KEY = "a9Vi5MJXRxvil8e+AwwaVYAmg0BHctGN94xsblra44I="  # device1, the attacker's own identity
B_KEY = sas.new_key()  # victim, the identity the attacker claims
MODULE_A_KEY = "HYjeH3Mg9tpeR6mxoVGUwdOP0TPMep5BbynZcaFbnHg="  # device1/module1
MODULE_B_KEY = sas.new_key()  # victim/mod
POLICY = {p.name: p.key for p in WELL_KNOWN_POLICIES}
DPS_SCOPE = "0ne00000001"


def token(resource: str, key: str, policy: str | None = None) -> str:
    return sas.generate(resource, key, key_name=policy)


def as_device(device: str, password: str | None = None, **extra: str) -> Credentials:
    return Credentials(device, f"{HUB}/{device}/{API}", password, **extra)


@dataclass(frozen=True)
class Case:
    name: str
    credentials: Callable[[World], Credentials]
    expected: int = 5


@dataclass
class World:
    thread: EmulatorThread
    certs: dict[str, tuple[str, str]]  # name -> (certfile, keyfile)

    @property
    def emu(self):
        return self.thread.emulator

    def cert(self, name: str) -> dict[str, str]:
        certfile, keyfile = self.certs[name]
        return {"certfile": certfile, "keyfile": keyfile}


HUB_CASES = [
    Case("A's device token, claiming B", lambda w: as_device("victim", token(f"{HUB}/devices/device1", A_KEY))),
    Case("a token for B signed with A's key", lambda w: as_device("victim", token(f"{HUB}/devices/victim", A_KEY))),
    Case("A's token, client id B with A's username", lambda w: Credentials("victim", f"{HUB}/device1/{API}", token(f"{HUB}/devices/device1", A_KEY)), 2),
    Case("A's token, client id A with B's username", lambda w: Credentials("device1", f"{HUB}/victim/{API}", token(f"{HUB}/devices/victim", B_KEY)), 2),
    Case("no password, claiming SAS device B", lambda w: as_device("victim")),
    Case("A's module token, claiming B's module", lambda w: as_device("victim/mod", token(f"{HUB}/devices/victim/modules/mod", MODULE_A_KEY))),
    Case("A's module token, claiming device A", lambda w: as_device("device1", token(f"{HUB}/devices/device1/modules/module1", MODULE_A_KEY))),
    Case("A's device token, claiming A's module", lambda w: as_device("device1/module1", token(f"{HUB}/devices/device1", A_KEY))),
    Case("A's device token, claiming B's module", lambda w: as_device("victim/mod", token(f"{HUB}/devices/device1", A_KEY))),
    Case("policy `service` (no DeviceConnect), claiming B", lambda w: as_device("victim", token(f"{HUB}/devices/victim", POLICY["service"], "service"))),
    Case("policy `registryReadWrite`, claiming B", lambda w: as_device("victim", token(HUB, POLICY["registryReadWrite"], "registryReadWrite"))),
    Case("policy `device` scoped to A's path, claiming B", lambda w: as_device("victim", token(f"{HUB}/devices/device1", POLICY["device"], "device"))),
    Case("A's device key under skn=device, claiming B", lambda w: as_device("victim", token(f"{HUB}/devices/victim", A_KEY, "device"))),
    Case("A's DPS registration token, claiming B", lambda w: as_device("victim", token(f"{DPS_SCOPE}/registrations/device1", _dps_key("device1"), "registration"))),
    Case("a DPS registration token for B, claiming B", lambda w: as_device("victim", token(f"{DPS_SCOPE}/registrations/victim", _dps_key("victim"), "registration"))),
    Case("B's DPS group-derived key, claiming B (B's keys are its own)", lambda w: as_device("victim", token(f"{HUB}/devices/victim", _dps_key("victim")))),
    Case("the DPS group key itself, claiming B", lambda w: as_device("victim", token(f"{HUB}/devices/victim", WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0]))),
    Case("A's CA-issued certificate, claiming CA device B", lambda w: as_device("x509-victim", **w.cert("x509-device1"))),
    Case("a certificate for B from an untrusted issuer", lambda w: as_device("x509-victim", **w.cert("self-x509-victim"))),
    Case("A's thumbprint certificate, claiming thumbprint device B", lambda w: as_device("thumb-victim", **w.cert("thumb-a"))),
    Case("A's CA-issued certificate, claiming SAS device B", lambda w: as_device("victim", **w.cert("x509-device1"))),
    Case("A's CA-issued certificate and module name, claiming B's module", lambda w: as_device("x509-victim/mod", **w.cert("x509-device1"))),
    Case("A's token with auth-chain through A (not an edge device), claiming B", lambda w: Credentials("victim", f"{HUB}/victim/{API}&auth-chain=victim;device1", token(f"{HUB}/devices/device1", A_KEY))),
    Case("the edge device's token with auth-chain, claiming a device outside its scope", lambda w: Credentials("victim", f"{HUB}/victim/{API}&auth-chain=victim;edge-gw", token(f"{HUB}/devices/edge-gw", w.emu.registry.get("edge-gw")["authentication"]["symmetricKey"]["primaryKey"]))),
]  # fmt: skip

# Connected as A, acting as B: IoT Hub closes the connection.
ACTS = [
    ("publish to B's telemetry topic", "publish", "devices/victim/messages/events/"),
    ("publish to B's module topic", "publish", "devices/victim/modules/mod/messages/events/"),
    ("subscribe to B's cloud-to-device topic", "subscribe", "devices/victim/messages/devicebound/#"),
]


def _dps_key(registration_id: str) -> str:
    return sas.derive_device_key(WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0], registration_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("impersonation")
    with running() as thread:
        emu, call = thread.emulator, thread.call
        sas_auth = {"type": "sas", "symmetricKey": {"primaryKey": B_KEY, "secondaryKey": B_KEY}}
        call(emu.registry.put_device({"deviceId": "victim", "authentication": sas_auth}, if_match=None))
        mod_auth = {"type": "sas", "symmetricKey": {"primaryKey": MODULE_B_KEY, "secondaryKey": MODULE_B_KEY}}
        call(emu.registry.put_module("victim", {"moduleId": "mod", "authentication": mod_auth}, if_match=None))
        ca = {"type": "certificateAuthority"}
        call(emu.registry.put_device({"deviceId": "x509-victim", "authentication": ca}, if_match=None))
        call(emu.registry.put_module("x509-victim", {"moduleId": "mod", "authentication": ca}, if_match=None))
        edge = {"deviceId": "edge-gw", "capabilities": {"iotEdge": True}}
        call(emu.registry.put_device(edge, if_match=None))
        thumb_a, thumb_b = self_signed_cert("thumb-a"), self_signed_cert("thumb-victim")
        prints = {"primaryThumbprint": thumb_b.sha1_thumbprint, "secondaryThumbprint": None}
        call(emu.registry.put_device({"deviceId": "thumb-victim", "authentication": {"type": "selfSigned", "x509Thumbprint": prints}}, if_match=None))
        certs = {
            "x509-device1": emu.pki.issue_device_cert("x509-device1"),
            "self-x509-victim": self_signed_cert("x509-victim"),
            "thumb-a": thumb_a,
        }
        yield World(thread, {name: tuple(str(p) for p in cert.write(folder, name)) for name, cert in certs.items()})


def _telemetry(world: World) -> list:
    async def read() -> list:
        return await world.emu.store.read_telemetry(limit=1000)

    return [t for _, t in world.thread.call(read())]


@pytest.mark.figures("impersonation at the hub, MQTT and WebSocket")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hub_refuses_every_impersonation(world, transport, figures):
    emu = world.emu
    for own_credentials in (as_device("device1", token(f"{HUB}/devices/device1", A_KEY)), as_device("x509-device1", **world.cert("x509-device1"))):
        own = Attempt(emu, transport, own_credentials)
        assert own.code == 0, "the attacker's own credentials work: the harness is sound"
        own.close()
    _refused(world, HUB_CASES, transport, figures)


@pytest.mark.figures("impersonation at the hub, MQTT and WebSocket")
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("act, kind, topic", ACTS, ids=[a[0] for a in ACTS])
def test_acting_as_another_identity_closes_the_connection(world, transport, act, kind, topic, figures):
    emu = world.emu
    attacker = Attempt(emu, transport, as_device("device1", token(f"{HUB}/devices/device1", A_KEY)))
    assert attacker.code == 0
    figures.tried += 1
    if kind == "publish":
        attacker.client.publish(topic, b"forged", qos=1)
    else:
        attacker.client.subscribe(topic, 1)
    attacker.until(attacker.closed.is_set)
    figures.wrongly_accepted += bool(attacker.acked)
    assert not attacker.acked
    attacker.close()
    assert not [m for m in _telemetry(world) if m.device_id == "victim"]



# ---- at the edge ---------------------------------------------------------------------------------

EDGE_CASES = [
    Case("leaf A's token, claiming leaf B", lambda w: as_device("leaf-b", token(f"{HUB}/devices/leaf-device1", WELL_KNOWN_LEAF_DEVICE_KEYS[0]))),
    Case("a token for leaf B signed with leaf A's key, audience the edge host", lambda w: as_device("leaf-b", token(f"{w.emu.edge.host}/devices/leaf-b", WELL_KNOWN_LEAF_DEVICE_KEYS[0]))),
    Case("a device outside the edge's scope, with its own valid token", lambda w: as_device("device1", token(f"{HUB}/devices/device1", A_KEY))),
    Case("the edge device itself, through its own edgeHub", lambda w: as_device("edge-device1", token(f"{HUB}/devices/edge-device1", WELL_KNOWN_EDGE_DEVICE_KEYS[0]))),
    Case("a module's token, claiming another module of the edge", lambda w: as_device("edge-device1/other", token(f"{HUB}/devices/edge-device1/modules/filter", w.emu.registry.get("edge-device1", "filter")["authentication"]["symmetricKey"]["primaryKey"]))),
    Case("a module of another device, with its own valid token", lambda w: as_device("device1/module1", token(f"{HUB}/devices/device1/modules/module1", MODULE_A_KEY))),
    Case("leaf A's token without an api-version", lambda w: Credentials("leaf-device1", f"{HUB}/leaf-device1", token(f"{HUB}/devices/leaf-device1", WELL_KNOWN_LEAF_DEVICE_KEYS[0]))),
    Case("leaf A's token, client id leaf B", lambda w: Credentials("leaf-b", f"{HUB}/leaf-device1/{API}", token(f"{HUB}/devices/leaf-device1", WELL_KNOWN_LEAF_DEVICE_KEYS[0])), 2),
    Case("the DPS group key, claiming leaf B", lambda w: as_device("leaf-b", token(f"{HUB}/devices/leaf-b", WELL_KNOWN_SYMMETRIC_GROUP_KEYS[0]))),
    Case("policy `service`, claiming leaf B", lambda w: as_device("leaf-b", token(f"{HUB}/devices/leaf-b", POLICY["service"], "service"))),
]  # fmt: skip


@pytest.fixture(scope="module")
def edge_world():
    settings = {"edge": True, "edge_bind": free_loopback_address(), "edge_mqtt_port": 0}
    with running(**settings) as thread:
        emu, call = thread.emulator, thread.call
        scope = emu.registry.get("edge-device1")["deviceScope"]
        keys = {"primaryKey": sas.new_key(), "secondaryKey": sas.new_key()}
        leaf_b = {"deviceId": "leaf-b", "authentication": {"type": "sas", "symmetricKey": keys}, "deviceScope": scope}
        call(emu.registry.put_device(leaf_b, if_match=None))
        call(emu.registry.put_module("edge-device1", {"moduleId": "filter"}, if_match=None))
        call(emu.registry.put_module("edge-device1", {"moduleId": "other"}, if_match=None))
        yield World(thread, {})


@pytest.mark.figures("impersonation at the edge, MQTT")
def test_edge_refuses_every_impersonation(edge_world, figures):
    emu = edge_world.emu
    edge = {"host": emu.edge.bind, "port": emu.edge.mqtt_port}
    own = Attempt(emu, "mqtt", as_device("leaf-device1", token(f"{HUB}/devices/leaf-device1", WELL_KNOWN_LEAF_DEVICE_KEYS[0])), **edge)
    assert own.code == 0, "leaf A's own credentials work at the edge: the harness is sound"
    own.client.publish("devices/leaf-b/messages/events/", b"forged", qos=1)
    own.until(own.closed.is_set)  # acting as leaf B closes the connection, as at the hub
    own.close()
    _refused(edge_world, EDGE_CASES, "mqtt", figures, **edge)


def _refused(world: World, cases: list[Case], transport: str, figures, **where: Any) -> None:
    """Try every case; each must get its CONNACK code."""
    wrong = []
    for case in cases:
        attempt = Attempt(world.emu, transport, case.credentials(world), **where)
        figures.tried += 1
        if attempt.code != case.expected:
            wrong.append(f"{case.name}: CONNACK {attempt.code}, expected {case.expected}")
            figures.wrongly_accepted += attempt.code == 0
        attempt.close()
    assert not wrong, wrong
