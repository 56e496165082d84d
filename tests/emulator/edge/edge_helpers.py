"""What the edge tests share: an emulator with an edge, children in its scope, and clients that
talk to the edge's MQTT port (paho, and raw TLS for what a well-behaved client never sends)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time

from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from azure_iot_harness.emulator.clock import SYSTEM_CLOCK
from azure_iot_harness.emulator.protocol import sas
from tests.conftest import free_loopback_address
from tests.helpers import PahoDevice, RawClient, connect_packet, https, wait_for

API = "api-version=2021-04-12"


def start_edge(routes: dict | None = None, **settings) -> tuple[EmulatorThread, Emulator]:
    """An in-memory emulator with an edge on its own loopback address (any setting overridable)."""
    options = dict(in_memory=True, mqtt_port=0, https_port=0, edge=True, edge_bind=free_loopback_address(), edge_mqtt_port=0)
    options.update(settings)
    thread = EmulatorThread(clock=options.pop("clock", SYSTEM_CLOCK), **options)
    emu = thread.start()
    if routes is not None:
        emu.edge.router.replace(routes)
    return thread, emu


class EdgeClient(PahoDevice):
    """A paho client pointed at the edge's listener (the gateway), trusting the same root CA."""

    def connect(self, timeout: float = 10.0) -> int:
        self.client.connect(self.emu.edge.bind, self.emu.edge.mqtt_port, keepalive=self.keepalive)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None or self.disconnected.is_set(), timeout)
        return self.connack if self.connack is not None else -1


class RawEdgeClient(RawClient):
    """A TLS socket to the edge's MQTT port, speaking hand-made MQTT bytes."""

    def __init__(self, emu: Emulator) -> None:
        ctx = ssl.create_default_context(cafile=str(emu.ca_file))
        raw = socket.create_connection((emu.edge.bind, emu.edge.mqtt_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=emu.edge.host)
        self.buffer = b""

    def puback_or_close(self, timeout: float = 10.0) -> str:
        """'puback' or 'closed', whichever the edge answers a QoS 1 PUBLISH with."""
        pkt = self.read_packet(timeout)
        if pkt is None:
            return "closed"
        assert pkt[0] == 4, f"expected PUBACK, got packet type {pkt[0]}"
        return "puback"


def edge_scope(emu: Emulator) -> str:
    return emu.registry.get(emu.edge.device_id)["deviceScope"]


def add_leaf(thread: EmulatorThread, emu: Emulator, device_id: str) -> dict:
    """A SAS device in the edge device's scope."""
    scope = edge_scope(emu)
    body = {"deviceId": device_id, "deviceScope": scope, "parentScopes": [scope]}
    return thread.call(emu.registry.put_device(body, if_match=None))


def add_module(thread: EmulatorThread, emu: Emulator, module_id: str) -> dict:
    return thread.call(emu.registry.put_module(emu.edge.device_id, {"moduleId": module_id}, if_match=None))


def token(emu: Emulator, device_id: str, module_id: str | None = None, *, expiry: float | None = None) -> str:
    doc = emu.registry.get(device_id, module_id)
    key = doc["authentication"]["symmetricKey"]["primaryKey"]
    uri = f"{emu.host}/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
    return sas.generate(uri, key, expiry=int(expiry if expiry is not None else emu.clock.time() + 3600))


def leaf_client(emu: Emulator, device_id: str, **kw) -> EdgeClient:
    return EdgeClient(emu, device_id, username=f"{emu.host}/{device_id}/?{API}", password=token(emu, device_id), **kw)


def connected_leaf(thread: EmulatorThread, emu: Emulator, device_id: str, filters: tuple[str, ...] = ()) -> EdgeClient:
    """A leaf in the edge's scope (created when missing), connected with paho and subscribed (at
    QoS 0) to `filters`."""
    if emu.registry.get(device_id) is None:
        add_leaf(thread, emu, device_id)
    leaf = leaf_client(emu, device_id)
    assert leaf.connect() == 0
    if filters:
        leaf.client.subscribe([(f, 0) for f in filters])
        wait_for(lambda: set(filters) <= set(getattr(emu.edge.hub.sessions.get((device_id, None)), "subscriptions", {})))
    return leaf


def upstream_depth(emu: Emulator) -> int:
    """Messages waiting for `$upstream`, as the status route shows them."""
    return edge_status(emu)["queues"].get("$upstream", {"messages": 0})["messages"]


def module_client(emu: Emulator, module_id: str, **kw) -> EdgeClient:
    edge = emu.edge.device_id
    return EdgeClient(emu, f"{edge}/{module_id}", username=f"{emu.host}/{edge}/{module_id}/?{API}", password=token(emu, edge, module_id), **kw)


def raw_connect(emu: Emulator, device_id: str, module_id: str | None = None, *, password: str | None = None) -> RawEdgeClient:
    """A raw client connected through the edge (CONNACK 0 checked)."""
    client_id = f"{device_id}/{module_id}" if module_id else device_id
    c = RawEdgeClient(emu)
    c.send(connect_packet(client_id, f"{emu.host}/{client_id}/?{API}", password or token(emu, device_id, module_id)))
    assert c.connack() == 0
    return c


def hub_messages(emu: Emulator, device_id: str | None = None) -> list[dict]:
    query = f"&deviceId={device_id}" if device_id else ""
    return https(emu, "GET", f"/_emulator/telemetry?limit=1000{query}")[2]["messages"]


def edge_status(emu: Emulator) -> dict:
    status, _, body = https(emu, "GET", "/_emulator/edge")
    assert status == 200, body
    return body


class ShiftedClock:
    """The system clock, moved forward by `offset` seconds when a test says so."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset
