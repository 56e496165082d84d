"""Crash recovery: `kill -9` of a real `serve` (and of `serve --edge`) under a steady QoS 1 load.
Every message the emulator acknowledged must be readable at the hub after a restart; the edge's
store-and-forward may deliver some twice (at least once), and those duplicates are counted."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import ssl
import threading
import urllib.request
from pathlib import Path

import pytest

from azure_iot_harness.config import WELL_KNOWN_LEAF_DEVICE_KEYS, WELL_KNOWN_POLICIES
from azure_iot_harness.emulator.protocol import sas
from tests.cli_helpers import Serve
from tests.conftest import free_loopback_address
from tests.helpers import connect_packet, publish_packet, wait_for

OWNER_KEY = next(p.key for p in WELL_KNOWN_POLICIES if p.name == "iothubowner")
WINDOW = 100  # QoS 1 messages in flight per device, as an SDK's queue would have


class Publisher:
    """One device publishing QoS 1 messages `{"d": id, "i": n}` as fast as its acknowledgements
    come back; remembers which were acknowledged."""

    def __init__(self, host: str, port: int, ca_file: str, device_id: str, key: str, *, hub: str = "localhost") -> None:
        """Connect to `host:port` (the hub's listener or an edge's) as `device_id` of `hub`."""
        ctx = ssl.create_default_context(cafile=ca_file)
        self.sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=host)
        token = sas.generate(f"{hub}/devices/{device_id}", key)
        self.sock.sendall(connect_packet(device_id, f"{hub}/{device_id}/?api-version=2021-04-12", token, clean=False))
        self.device_id = device_id
        self.buffer = b""
        connack = self._read_packet()
        assert connack[:1] == b"\x20" and connack[-1] == 0, f"{device_id}: CONNACK {connack!r}"
        self.room = threading.Semaphore(WINDOW)
        self.sent: dict[int, int] = {}  # packet id -> sequence number, while in flight
        self.acked: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True), threading.Thread(target=self._receive, daemon=True)]
        for t in self.threads:
            t.start()

    def _read_packet(self) -> bytes:
        """The next whole packet (fixed header included); b"" once the connection is gone."""
        while True:
            if len(self.buffer) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buffer) and i < 5:
                    length |= (self.buffer[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not self.buffer[i - 1] & 0x80:
                        break
                else:
                    i = 0
                if i and len(self.buffer) >= i + length:
                    pkt, self.buffer = self.buffer[: i + length], self.buffer[i + length :]
                    return pkt
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return b""
            if not chunk:
                return b""
            self.buffer += chunk

    def _send(self) -> None:
        topic = f"devices/{self.device_id}/messages/events/"
        n = 0
        while True:
            if not self.room.acquire(timeout=30) or self.stopped.is_set():
                return
            n += 1
            packet_id = n % 65535 or 65535
            with self.lock:
                self.sent[packet_id] = n
            try:
                self.sock.sendall(publish_packet(topic, json.dumps({"d": self.device_id, "i": n}).encode(), packet_id=packet_id))
            except OSError:
                return

    def _receive(self) -> None:
        while True:
            pkt = self._read_packet()
            if not pkt:
                return
            if pkt[0] >> 4 == 4:  # PUBACK
                packet_id = int.from_bytes(pkt[-2:], "big")
                with self.lock:
                    n = self.sent.pop(packet_id, None)
                if n is not None:
                    self.acked.add(n)
                    self.room.release()

    def stop(self) -> None:
        self.stopped.set()
        self.room.release()  # a sender waiting for room sees the stop
        self.sock.close()
        for t in self.threads:
            t.join(30)


def _https(info: dict, method: str, path: str, body: dict | None = None) -> dict:
    host = info["hubHostName"]
    request = urllib.request.Request(
        f"https://{host}:{info['https']['port']}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": sas.generate(host, OWNER_KEY, key_name="iothubowner"), "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=info["caFile"])
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _create_device(info: dict, device_id: str, **extra: object) -> str:
    key = sas.new_key()
    auth = {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}}
    _https(info, "PUT", f"/devices/{device_id}?api-version=2021-04-12", {"deviceId": device_id, "authentication": auth, **extra})
    return key


def _hub_telemetry(info: dict) -> list[dict]:
    out, after = [], 0
    while True:
        page = _https(info, "GET", f"/_emulator/telemetry?after={after}&limit=1000")
        out += page["messages"]
        if len(page["messages"]) < 1000:
            return out
        after = page["last"]


def _kill_under_load(serve: Serve, publishers: list[Publisher], acked_before_kill: int) -> None:
    wait_for(lambda: sum(len(p.acked) for p in publishers) >= acked_before_kill, 60)
    os.kill(serve.proc.pid, signal.SIGKILL)
    serve.proc.wait(30)
    for p in publishers:
        p.stop()


def _count(publishers: list[Publisher], messages: list[dict]) -> tuple[int, int, int]:
    """(acknowledged, lost, duplicates) over the messages the hub holds."""
    seen = collections.Counter((json.loads(m["body"])["d"], json.loads(m["body"])["i"]) for m in messages)
    acked = {(p.device_id, n) for p in publishers for n in p.acked}
    return len(acked), len(acked - set(seen)), sum(c - 1 for c in seen.values() if c > 1)


@pytest.mark.figures("kill -9 of serve under QoS 1 load")
def test_every_acknowledged_message_survives_kill_9_of_serve(tmp_path: Path, figures):
    data = tmp_path / "data"
    with Serve(data) as serve:
        info = serve.info
        devices = {"device1": info["wellKnownIdentities"]["devices"][0]["primaryKey"]}
        devices.update({f"load-{i}": _create_device(info, f"load-{i}") for i in range(2)})
        publishers = [Publisher(info["mqtt"]["host"], info["mqtt"]["port"], info["caFile"], d, k) for d, k in devices.items()]
        _kill_under_load(serve, publishers, 1500)
    with Serve(data) as again:
        acked, lost, duplicates = _count(publishers, _hub_telemetry(again.info))
    figures.tried, figures.lost, figures.duplicates = acked, lost, duplicates
    print(f"\nkill -9 of serve: {acked} acknowledged, {lost} lost, {duplicates} duplicates")
    assert lost == 0 and duplicates == 0  # nothing is resent to the hub: no duplicate is allowed


@pytest.mark.figures("kill -9 of serve --edge under QoS 1 load")
def test_every_acknowledged_message_reaches_the_hub_after_kill_9_of_serve_edge(tmp_path: Path, figures):
    data = tmp_path / "data"
    edge_args = ("--edge", "--edge-bind", free_loopback_address(), "--edge-mqtt-port", "0")
    with Serve(data, *edge_args) as serve:
        info = serve.info
        scope = _https(info, "GET", "/devices/edge-device1?api-version=2021-04-12")["deviceScope"]
        leaves = {"leaf-device1": WELL_KNOWN_LEAF_DEVICE_KEYS[0]}
        leaves.update({f"leaf-{i}": _create_device(info, f"leaf-{i}", deviceScope=scope) for i in range(2)})
        edge = info["edge"]
        publishers = [Publisher(edge["host"], edge["mqtt"]["port"], info["caFile"], d, k) for d, k in leaves.items()]
        _kill_under_load(serve, publishers, 1000)
    with Serve(data, *edge_args) as again:
        # The edge forwards what it had stored and not yet handed to the hub.
        want = {(p.device_id, n) for p in publishers for n in p.acked}
        messages = wait_for(lambda: (m := _hub_telemetry(again.info)) and want <= _keys(m) and m, 120)
        acked, lost, duplicates = _count(publishers, messages)
    figures.tried, figures.lost, figures.duplicates = acked, lost, duplicates
    print(f"\nkill -9 of serve --edge: {acked} acknowledged, {lost} lost, {duplicates} delivered twice by the edge's replay")
    assert lost == 0


def _keys(messages: list[dict]) -> set[tuple[str, int]]:
    return {(b["d"], b["i"]) for b in (json.loads(m["body"]) for m in messages)}
