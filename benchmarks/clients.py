"""The load: paho publishers, mosquitto_pub and mosquitto_sub, and raw MQTT-over-TLS connects.

Every wait is bounded; a load that does not finish in time reports what it got, not a number.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from .identities import HOST, Identity

LOAD_TIMEOUT = 300.0


def new_paho(client_id: str) -> mqtt.Client:
    """A paho client with the 1.x callback signatures, on paho 1.6 and 2.x alike."""
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, protocol=mqtt.MQTTv311)
    return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)


class PahoPublisher:
    def __init__(self, ident: Identity, port: int, ca_file: Path, on_ack) -> None:
        self.client = new_paho(ident.client_id)
        self.client.username_pw_set(ident.username, ident.password)
        self.client.tls_set(ca_certs=str(ca_file))
        self.topic = ident.topic
        self.port = port
        self.connack: int | None = None
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid: on_ack()

    def _on_connect(self, client, userdata, flags, rc) -> None:
        self.connack = rc
        self.connected.set()

    def connect(self) -> None:
        self.client.connect(HOST, self.port, keepalive=120)
        self.client.loop_start()
        if not self.connected.wait(30) or self.connack != 0:
            raise RuntimeError(f"paho CONNECT failed: CONNACK {self.connack}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class LoadResult:
    seconds: float
    acked: int
    error: str = ""


class Counter:
    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


class PahoLoad:
    """n paho publishers sharing `messages` QoS 1 publishes; connected before the clock starts."""

    def __init__(self, idents: list[Identity], port: int, ca_file: Path, messages: int, payload: bytes) -> None:
        self.messages, self.payload = messages, payload
        self.acks = Counter(messages)
        self.publishers = [PahoPublisher(i, port, ca_file, self.acks) for i in idents]

    def connect(self) -> None:
        for p in self.publishers:
            p.connect()

    def run(self) -> LoadResult:
        """Publish everything (paho queues beyond its 20 in flight) and wait for every PUBACK."""
        t0 = time.perf_counter()
        n = len(self.publishers)
        for k in range(self.messages):
            p = self.publishers[k % n]
            p.client.publish(p.topic, self.payload, qos=1)
        finished = self.acks.done.wait(LOAD_TIMEOUT)
        seconds = time.perf_counter() - t0
        return LoadResult(seconds, self.acks.count, "" if finished else f"timed out after {LOAD_TIMEOUT:.0f} s")

    def close(self) -> None:
        for p in self.publishers:
            p.close()


class DebugLog:
    """Reads a mosquitto client's `-d` output as it comes and notes when things happen: the
    clients' own exit is no clock (mosquitto_pub idles ~0.1 s after CONNACK and before exit)."""

    def __init__(self, proc: subprocess.Popen, publishes: int = 0) -> None:
        self.proc = proc
        self.publishes = publishes  # the "received PUBLISH" count that completes a subscriber
        self.received = 0
        self.first_publish_sent: float | None = None
        self.disconnect_sent: float | None = None
        self.all_received: float | None = None
        self.subscribed = threading.Event()
        self.done = threading.Event()
        self.tail: list[bytes] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.perf_counter()
            if b"received PUBLISH" in line:
                self.received += 1
                if self.received == self.publishes:
                    self.all_received = now
                    self.done.set()
            elif b"sending PUBLISH" in line:
                if self.first_publish_sent is None:
                    self.first_publish_sent = now
            elif b"sending DISCONNECT" in line:
                self.disconnect_sent = now
            elif b"SUBACK" in line:
                self.subscribed.set()
            elif not line.startswith(b"Client "):
                self.tail = (self.tail + [line])[-10:]
        self.done.set()


def _stdbuf() -> list[str]:
    # Line-buffered stdout: the debug lines arrive when they happen, not a pipe buffer later.
    return ["stdbuf", "-oL"] if shutil.which("stdbuf") else []


class MosquittoPub:
    """mosquitto_pub sending one QoS 1 message per line of a file; timed from its first PUBLISH
    to the DISCONNECT it sends after the last PUBACK."""

    def __init__(self, binary: str, ident: Identity, port: int, ca_file: Path, lines_file: Path) -> None:
        with open(lines_file, "rb") as stdin:
            self.proc = subprocess.Popen(
                [*_stdbuf(), binary, "-h", HOST, "-p", str(port), "--cafile", str(ca_file), "--tls-version", "tlsv1.2",
                 "-V", "mqttv311", "-q", "1", "-i", ident.client_id, "-u", ident.username, "-P", ident.password,
                 "-t", ident.topic, "-l", "-d"],
                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.log = DebugLog(self.proc)

    def wait(self, timeout: float) -> tuple[float, float]:
        """(start, end) of the publishing; RuntimeError when it failed."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"mosquitto_pub did not finish in {timeout:.0f} s") from None
        self.log.done.wait(10)
        start, end = self.log.first_publish_sent, self.log.disconnect_sent
        if rc != 0 or start is None or end is None:
            raise RuntimeError(f"mosquitto_pub exited {rc}: {b''.join(self.log.tail)[-300:]!r}")
        return start, end


class MosquittoSub:
    """The brokers' one subscriber (QoS 1): mosquitto_sub -C N, done when the N-th message
    arrives."""

    def __init__(self, binary: str, ident: Identity, topic: str, port: int, ca_file: Path, count: int) -> None:
        self.count = count
        self.proc = subprocess.Popen(
            [*_stdbuf(), binary, "-h", HOST, "-p", str(port), "--cafile", str(ca_file), "--tls-version", "tlsv1.2",
             "-V", "mqttv311", "-q", "1", "-i", ident.client_id, "-u", ident.username, "-P", ident.password,
             "-t", topic, "-C", str(count), "-d"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log = DebugLog(self.proc, publishes=count)

    def wait_subscribed(self, timeout: float = 30) -> None:
        if not self.log.subscribed.wait(timeout):
            raise RuntimeError(f"mosquitto_sub did not subscribe: {b''.join(self.log.tail)[-500:]!r}")

    def wait(self, timeout: float) -> float | None:
        """When the last message arrived, or None if it did not within timeout."""
        self.log.done.wait(timeout)
        return self.log.all_received

    @property
    def received(self) -> int:
        return self.log.received

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# ---- raw MQTT CONNECT over TLS -----------------------------------------------------------------


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_bytes(client_id: str, username: str, password: str, keepalive: int = 60) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, with username and password."""
    body = _string("MQTT") + bytes([4, 0x02 | 0x80 | 0x40]) + struct.pack("!H", keepalive)
    body += _string(client_id) + _string(username) + _string(password)
    return bytes([0x10]) + _remaining(len(body)) + body


def connect_packet(ident: Identity, keepalive: int = 60) -> bytes:
    return connect_bytes(ident.client_id, ident.username, ident.password, keepalive)


DISCONNECT = b"\xe0\x00"


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def connected(ctx: ssl.SSLContext, port: int, client_id: str, username: str, password: str, keepalive: int = 60) -> ssl.SSLSocket:
    """A TLS socket whose CONNECT got CONNACK 0 (RuntimeError otherwise)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname=HOST)
    try:
        sock.sendall(connect_bytes(client_id, username, password, keepalive))
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                raise RuntimeError(f"{client_id}: connection closed before CONNACK")
            connack += chunk
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"{client_id}: CONNACK {connack!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def connect_once(ctx: ssl.SSLContext, port: int, ident: Identity) -> None:
    """TLS handshake, CONNECT, CONNACK 0, DISCONNECT: one sequential connection."""
    with connected(ctx, port, ident.client_id, ident.username, ident.password) as sock:
        sock.sendall(DISCONNECT)


async def open_connected(ctx: ssl.SSLContext, port: int, ident: Identity, keepalive: int = 60):
    """One connected MQTT client (asyncio streams); returns (reader, writer, seconds taken)."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=HOST, ssl_handshake_timeout=60)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(connect_packet(ident, keepalive))
    connack = await reader.readexactly(4)
    if connack[0] != 0x20 or connack[3] != 0:
        writer.close()
        raise RuntimeError(f"{ident.client_id}: CONNACK {connack!r}")
    return reader, writer, time.perf_counter() - t0


async def close_all(writers) -> None:
    for w in writers:
        try:
            w.write(DISCONNECT)
            w.close()
        except Exception:
            pass
    for w in writers:
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except Exception:
            pass


# ---- packets over asyncio streams (the DPS storm) ----------------------------------------------


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(type, flags, body) of the next packet."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first >> 4, first & 0x0F, await reader.readexactly(length) if length else b""


def subscribe_packet(topic: str, packet_id: int = 1, qos: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + _string(topic) + bytes([qos])
    return bytes([0x82]) + _remaining(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int | None) -> bytes:
    """QoS 1 when packet_id is given, else QoS 0."""
    body = _string(topic) + (struct.pack("!H", packet_id) if packet_id else b"") + payload
    return bytes([0x32 if packet_id else 0x30]) + _remaining(len(body)) + body


def puback_packet(packet_id: int) -> bytes:
    return struct.pack("!BBH", 0x40, 2, packet_id)


def decode_publish(flags: int, body: bytes) -> tuple[str, int | None, bytes]:
    (n,) = struct.unpack_from("!H", body)
    topic = body[2 : 2 + n].decode()
    if (flags >> 1) & 3:
        (pid,) = struct.unpack_from("!H", body, 2 + n)
        return topic, pid, body[4 + n :]
    return topic, None, body[2 + n :]
