"""Test helpers that talk to the emulator the way real clients do: paho, raw TLS sockets, HTTPS."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from azure_iot_harness.emulator.app import Emulator
from azure_iot_harness.emulator.protocol import sas


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    *,
    what: str | None = None,
    seen: Callable[[], Any] | None = None,
) -> Any:
    """Poll until predicate() is truthy and return that value. After `timeout` seconds fail with
    what was awaited (`what`) and what was last seen (`seen()`, else predicate()'s last value).
    The timeout only guards against a hang: no test relies on it running out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            last = seen() if seen is not None else value
            raise AssertionError(f"{what or 'condition'} not met within {timeout} s; last seen: {last!r}")
        time.sleep(interval)


def device_token(emu: Emulator, device: str, module: str | None = None, *, key: str | None = None, ttl: int = 3600) -> str:
    doc = emu.registry.get(device, module)
    key = key or doc["authentication"]["symmetricKey"]["primaryKey"]
    uri = f"{emu.host}/devices/{device}" + (f"/modules/{module}" if module else "")
    return sas.generate(uri, key, ttl=ttl)


class PahoDevice:
    """A paho client with the events a test wants to look at."""

    def __init__(
        self,
        emu: Emulator,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        clean_session: bool = False,
        keepalive: int = 60,
        protocol: int = mqtt.MQTTv311,
    ) -> None:
        self.emu = emu
        self.client = mqtt.Client(client_id=client_id, clean_session=clean_session, protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.tls_set(ca_certs=str(emu.ca_file), certfile=certfile, keyfile=keyfile)
        self.keepalive = keepalive
        self.connack: int | None = None
        self.disconnected = threading.Event()
        self.acked: list[int] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, rc: self.disconnected.set()
        self.client.on_publish = lambda c, u, mid: self.acked.append(mid)
        self.client.on_message = lambda c, u, msg: self.messages.append(msg)

    def _on_connect(self, client, userdata, flags, rc) -> None:
        self.connack = rc

    def connect(self, timeout: float = 10.0) -> int:
        """Connect and return the CONNACK return code."""
        self.client.connect("localhost", self.emu.mqtt_port, keepalive=self.keepalive)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None or self.disconnected.is_set(), timeout)
        return self.connack if self.connack is not None else -1

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 1, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sas_device(emu: Emulator, device: str = "device1", module: str | None = None, **kw: Any) -> PahoDevice:
    client_id = f"{device}/{module}" if module else device
    return PahoDevice(
        emu,
        client_id,
        username=f"{emu.host}/{client_id}/?api-version=2021-04-12",
        password=device_token(emu, device, module),
        **kw,
    )


# ---- raw MQTT over TLS, for what no well-behaved client sends ------------------------------------


def _string(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(data)) + data


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _remaining(len(body)) + body


def connect_packet(
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    *,
    proto_name: str = "MQTT",
    level: int = 4,
    keepalive: int = 60,
    clean: bool = True,
    will: tuple[str, bytes] | None = None,
) -> bytes:
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | 0x08  # will, QoS 1
        payload += _string(will[0]) + _string(will[1])
    if username is not None:
        payload += _string(username)
    if password is not None:
        payload += _string(password)
    body = _string(proto_name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == 5:
        body += b"\x00"  # empty MQTT 5 properties
    return packet(1, 0, body + payload)


def publish_packet(topic: str | bytes, payload: bytes = b"", qos: int = 1, packet_id: int = 1, retain: bool = False) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(3, (qos << 1) | (1 if retain else 0), body)


def subscribe_packet(topics: list[tuple[str, int]], packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(t) + bytes([q]) for t, q in topics)
    return packet(8, 2, body)


class RawClient:
    """A TLS socket speaking hand-made MQTT bytes."""

    def __init__(self, emu: Emulator, *, context: ssl.SSLContext | None = None, certfile: str | None = None, keyfile: str | None = None):
        ctx = context or ssl.create_default_context(cafile=str(emu.ca_file))
        if certfile:
            ctx.load_cert_chain(certfile, keyfile)
        raw = socket.create_connection((emu.config.bind, emu.mqtt_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_packet(self, timeout: float = 10.0) -> tuple[int, int, bytes] | None:
        """(type, flags, body), or None when the server closed the connection."""
        self.sock.settimeout(timeout)
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def _parse(self) -> tuple[int, int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(self.buffer):
                return None
            byte = self.buffer[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(self.buffer) < i + length:
            return None
        first, body = self.buffer[0], self.buffer[i : i + length]
        self.buffer = self.buffer[i + length :]
        return first >> 4, first & 0x0F, body

    def connack(self, timeout: float = 10.0) -> int | None:
        """The CONNACK return code, or None if the server closed without one."""
        pkt = self.read_packet(timeout)
        if pkt is None:
            return None
        assert pkt[0] == 2, f"expected CONNACK, got packet type {pkt[0]}"
        return pkt[2][1]

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection (after any packets it still sends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.read_packet(max(0.01, deadline - time.monotonic())) is None:
                return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def raw_sas_connect(emu: Emulator, device: str = "device1", **kw: Any) -> RawClient:
    c = RawClient(emu)
    c.send(connect_packet(device, f"{emu.host}/{device}/?api-version=2021-04-12", device_token(emu, device), **kw))
    assert c.connack() == 0
    return c


# ---- HTTPS -----------------------------------------------------------------------------------------


def https(emu: Emulator, method: str, path: str, body: Any = None, *, token: str | None = None, headers: dict | None = None) -> tuple[int, dict, Any]:
    """(status, headers, parsed JSON body or raw text) of one request to the emulator's HTTPS port."""
    ctx = ssl.create_default_context(cafile=str(emu.ca_file))
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    if token is not False:
        hdrs["Authorization"] = token or emu.service_token()
    hdrs.update(headers or {})
    host = emu.config.bind if emu.config.bind != "127.0.0.1" else "localhost"
    req = urllib.request.Request(f"https://{host}:{emu.https_port}{path}", data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            status, rh, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, rh, raw = err.code, dict(err.headers), err.read()
    try:
        return status, rh, json.loads(raw) if raw else None
    except ValueError:
        return status, rh, raw.decode(errors="replace")
