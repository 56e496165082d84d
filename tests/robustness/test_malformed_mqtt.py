"""Malformed MQTT: a corpus of hand-made bad packets, each with the answer IoT Hub gives, and a
seeded run of random packets. Nothing may be accepted that should not be, nothing may crash the
emulator (an ERROR in its log, a connection it never lets go), and afterwards another device
still connects and publishes."""

from __future__ import annotations

import logging
import os
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from azure_iot_harness.emulator.app import EmulatorThread
from tests.helpers import RawClient, connect_packet, device_token, packet, publish_packet, sas_device, subscribe_packet, wait_for
from tests.robustness.clients import running

DEVICE = "fuzz-dev"
USER = f"localhost/{DEVICE}/?api-version=2021-04-12"
TELEMETRY = f"devices/{DEVICE}/messages/events/"
CONNECT, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, PINGREQ, PINGRESP, DISCONNECT = 1, 3, 4, 8, 9, 10, 12, 13, 14

# The seeded slice of random packets every run sends, and the long run's default.
SLICE_SEED, SLICE_PACKETS = 20261203, 3000
LONG_PACKETS = int(os.environ.get("AZURE_IOT_HARNESS_FUZZ_PACKETS", "50000"))


def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def connect_body(client_id: bytes, username: bytes | None, password: bytes | None, *, flags: int | None = None,
                 name: bytes = b"MQTT", level: int = 4) -> bytes:  # fmt: skip
    if flags is None:
        flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = s(client_id) + (s(username) if username is not None else b"") + (s(password) if password is not None else b"")
    return s(name) + bytes([level, flags]) + b"\x00\x3c" + payload


def _reported(patch: bytes) -> bytes:
    """A reported-properties PATCH, after the subscription its answer needs."""
    return subscribe_packet([("$iothub/twin/res/#", 0)]) + publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=1", patch, qos=0)


@dataclass(frozen=True)
class Bad:
    name: str
    data: Callable[[str], bytes]  # the device's SAS token -> bytes to send
    after_connect: bool = False  # sent on a connection whose CONNECT was accepted
    answer: str = "close"  # close | connack N | incomplete (waits for more) | 400 on the twin topic | ignored


CORPUS = [
    # Before or instead of a valid CONNECT.
    Bad("PUBLISH before CONNECT", lambda t: publish_packet(TELEMETRY, b"x")),
    Bad("PINGREQ before CONNECT", lambda t: packet(PINGREQ, 0, b"")),
    Bad("reserved packet type 0", lambda t: b"\x00\x00"),
    Bad("reserved packet type 15", lambda t: b"\xf0\x00"),
    Bad("CONNECT with fixed-header flags", lambda t: packet(CONNECT, 1, connect_body(DEVICE.encode(), USER.encode(), t.encode()))),
    Bad("CONNECT with the reserved flag", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode(), flags=0xC3))),
    Bad("CONNECT with an empty body", lambda t: packet(CONNECT, 0, b"")),
    Bad("CONNECT cut inside the protocol name", lambda t: packet(CONNECT, 0, b"\x00\x04MQ")),
    Bad("CONNECT whose client id length runs past the end", lambda t: packet(CONNECT, 0, connect_body(b"", None, None)[:-2] + b"\x10\x00")),
    Bad("CONNECT with a username flag and no username", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), None, None, flags=0x82))),
    Bad("CONNECT with a password flag and no password", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), None, flags=0xC2))),
    Bad("CONNECT with a client id that is not UTF-8", lambda t: packet(CONNECT, 0, connect_body(b"\xff\xfe", USER.encode(), t.encode()))),
    Bad("CONNECT with a username that is not UTF-8", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), b"\xc3\x28", t.encode()))),
    Bad("CONNECT with a password that is not UTF-8", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), b"\xff" * 8)), "connack 5"),
    Bad("CONNECT with a NUL in the client id", lambda t: packet(CONNECT, 0, connect_body(b"fuzz\x00dev", USER.encode(), t.encode()))),
    Bad("CONNECT with will QoS 3", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode(), flags=0xDE))),
    Bad("CONNECT with will QoS but no will flag", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode(), flags=0xCA))),
    Bad("CONNECT with an empty protocol name", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode(), name=b"")), "connack 1"),
    Bad("CONNECT of MQTT 3.1 (MQIsdp, level 3)", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode(), name=b"MQIsdp", level=3)), "connack 1"),
    Bad("CONNECT with protocol level 255", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode(), level=255)), "connack 1"),
    Bad("CONNECT with garbage after the payload", lambda t: packet(CONNECT, 0, connect_body(DEVICE.encode(), USER.encode(), t.encode()) + b"\x00" * 9)),
    Bad("CONNECT with a 5-byte remaining length", lambda t: b"\x10\xff\xff\xff\xff\x7f"),
    Bad("CONNECT longer than any packet IoT Hub reads", lambda t: b"\x10\xff\xff\xff\x7f"),
    Bad("CONNECT announcing more bytes than sent", lambda t: b"\x10\x7f" + connect_body(DEVICE.encode(), USER.encode(), t.encode())[:20], answer="incomplete"),
    Bad("a fixed header and nothing else", lambda t: b"\x10", answer="incomplete"),
    Bad("an HTTP request", lambda t: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    Bad("64 KB of random bytes", lambda t: random.Random(1).randbytes(65536)),
    # After an accepted CONNECT.
    Bad("a second CONNECT", lambda t: connect_packet(DEVICE, USER, t), True),
    Bad("PUBLISH with QoS 3", lambda t: packet(PUBLISH, 0x06, s(TELEMETRY) + b"\x00\x01"), True),
    Bad("PUBLISH with QoS 2", lambda t: publish_packet(TELEMETRY, b"x", qos=2), True),
    Bad("PUBLISH QoS 1 with packet id 0", lambda t: publish_packet(TELEMETRY, b"x", packet_id=0), True),
    Bad("PUBLISH whose topic length runs past the end", lambda t: packet(PUBLISH, 0x02, b"\x40\x00" + TELEMETRY.encode()), True),
    Bad("PUBLISH cut before its packet id", lambda t: packet(PUBLISH, 0x02, s(TELEMETRY)), True),
    Bad("PUBLISH with a topic that is not UTF-8", lambda t: publish_packet(TELEMETRY.encode() + b"\xff", b"x"), True),
    Bad("PUBLISH with a wildcard in the topic", lambda t: publish_packet(TELEMETRY + "#", b"x"), True),
    Bad("PUBLISH with an empty topic", lambda t: publish_packet("", b"x"), True),
    Bad("PUBLISH with a NUL in the topic", lambda t: publish_packet(TELEMETRY + "\x00", b"x"), True),
    Bad("PUBLISH to another device's topic", lambda t: publish_packet("devices/device1/messages/events/", b"x"), True),
    Bad("PUBLISH to an unknown $iothub topic", lambda t: publish_packet("$iothub/nothing/here", b"x"), True),
    Bad("PUBLISH to a topic of no IoT Hub family", lambda t: publish_packet("plant/line1/temperature", b"x"), True),
    Bad("PUBLISH with a malformed property bag", lambda t: publish_packet(TELEMETRY + "a=%ZZ&&=x&$.ct", b"x"), True),
    Bad("PUBLISH above 256 KB", lambda t: publish_packet(TELEMETRY, b"x" * (256 * 1024 + 1)), True),
    Bad("reported patch that is not JSON", lambda t: _reported(b"{nope"), True, "400"),
    Bad("reported patch nested 5,000 deep", lambda t: _reported(b"[" * 5000 + b"]" * 5000), True, "400"),
    Bad("reported patch that is not UTF-8", lambda t: _reported(b"\xff\xfe\x00"), True, "400"),
    Bad("method response with a status that is not a number", lambda t: publish_packet("$iothub/methods/res/OK/?$rid=1", b"{}"), True),
    Bad("method response with a 400-digit status", lambda t: publish_packet("$iothub/methods/res/" + "9" * 400 + "/?$rid=1", b"{}"), True),
    Bad("method response for no request", lambda t: publish_packet("$iothub/methods/res/200/?$rid=nobody", b"{}"), True, "ignored"),
    Bad("SUBSCRIBE with fixed-header flags 0", lambda t: packet(SUBSCRIBE, 0, b"\x00\x01" + s("$iothub/twin/res/#") + b"\x00"), True),
    Bad("SUBSCRIBE without topic filters", lambda t: packet(SUBSCRIBE, 2, b"\x00\x01"), True),
    Bad("SUBSCRIBE requesting QoS 3", lambda t: subscribe_packet([("$iothub/twin/res/#", 3)]), True),
    Bad("SUBSCRIBE with a filter that is not UTF-8", lambda t: packet(SUBSCRIBE, 2, b"\x00\x01" + s(b"\xff\xfe") + b"\x00"), True),
    Bad("SUBSCRIBE whose filter length runs past the end", lambda t: packet(SUBSCRIBE, 2, b"\x00\x01\x40\x00abc\x00"), True),
    Bad("SUBSCRIBE to #", lambda t: subscribe_packet([("#", 1)]), True),
    Bad("SUBSCRIBE to another device's messages", lambda t: subscribe_packet([("devices/device1/messages/devicebound/#", 1)]), True),
    Bad("UNSUBSCRIBE without topic filters", lambda t: packet(UNSUBSCRIBE, 2, b"\x00\x01"), True),
    Bad("UNSUBSCRIBE whose filter length runs past the end", lambda t: packet(UNSUBSCRIBE, 2, b"\x00\x01\x40\x00abc"), True),
    Bad("PUBACK with a 3-byte body", lambda t: packet(PUBACK, 0, b"\x00\x01\x02"), True),
    Bad("PUBACK for a delivery never sent", lambda t: packet(PUBACK, 0, b"\x12\x34"), True, "ignored"),
    Bad("PUBREC from a client", lambda t: packet(5, 0, b"\x00\x01"), True),
    Bad("PUBREL from a client", lambda t: packet(6, 2, b"\x00\x01"), True),
    Bad("PUBCOMP from a client", lambda t: packet(7, 0, b"\x00\x01"), True),
    Bad("CONNACK from a client", lambda t: packet(2, 0, b"\x00\x00"), True),
    Bad("SUBACK from a client", lambda t: packet(SUBACK, 0, b"\x00\x01\x00"), True),
    Bad("UNSUBACK from a client", lambda t: packet(11, 0, b"\x00\x01"), True),
    Bad("PINGRESP from a client", lambda t: packet(PINGRESP, 0, b""), True),
    Bad("PINGREQ with flags", lambda t: packet(PINGREQ, 3, b""), True),
    Bad("PINGREQ with a body", lambda t: packet(PINGREQ, 0, b"\x00"), True, "close or ignored"),
    Bad("DISCONNECT with flags", lambda t: packet(DISCONNECT, 1, b""), True),
    Bad("64 KB of random bytes after CONNECT", lambda t: random.Random(2).randbytes(65536), True),
]  # fmt: skip


@pytest.fixture(scope="module")
def thread():
    with running() as thread:
        emu = thread.emulator
        key = emu.registry.get("device1")["authentication"]["symmetricKey"]
        thread.call(emu.registry.put_device({"deviceId": DEVICE, "authentication": {"type": "sas", "symmetricKey": key}}, if_match=None))
        yield thread


def _connected(emu, token: str) -> RawClient:
    client = RawClient(emu)
    client.send(connect_packet(DEVICE, USER, token))
    assert client.connack() == 0
    return client


def _send(client: RawClient, data: bytes) -> None:
    """Send what the server may no longer read: it closes the connection at the first fault."""
    try:
        client.send(data)
    except OSError:
        pass


def _outcome(client: RawClient, ping: bool) -> tuple[str, list[tuple[int, int, bytes]]]:
    """'closed' or 'open' (a PINGREQ sent after the bad packet is still answered), with what
    came back before; a server that does neither fails the read's timeout."""
    got = []
    if ping:
        _send(client, packet(PINGREQ, 0, b""))
    while True:
        try:
            pkt = client.read_packet(timeout=10)
        except TimeoutError:
            return "hung", got
        if pkt is None:
            return "closed", got
        if pkt[0] == PINGRESP:
            return "open", got
        got.append(pkt)


def _accepted(got: list[tuple[int, int, bytes]], after_connect: bool) -> bool:
    """Whether the server answered as if the bad packet were fine."""
    if not after_connect:
        return any(kind == 2 and body[1:2] == b"\x00" for kind, _, body in got)  # CONNACK 0
    return any(kind in (PUBACK, SUBACK, 11) for kind, _, _ in got)


@pytest.mark.figures("malformed MQTT packets (corpus)")
def test_every_malformed_packet_is_refused_and_nothing_crashes(thread, caplog, figures):
    emu = thread.emulator
    token = device_token(emu, DEVICE)
    wrong = []
    for bad in CORPUS:
        client = _connected(emu, token) if bad.after_connect else RawClient(emu)
        _send(client, bad.data(token))
        if bad.answer == "incomplete":  # the server waits for the rest, as it should; then EOF
            client.sock.shutdown(socket.SHUT_WR)
        outcome, got = _outcome(client, ping=bad.answer != "incomplete")
        client.close()
        figures.tried += 1
        refusal_expected = bad.answer in ("close", "incomplete") or bad.answer.startswith("connack")
        if refusal_expected and _accepted(got, bad.after_connect):
            figures.wrongly_accepted += 1
            wrong.append(f"{bad.name}: accepted ({got})")
        elif bad.answer.startswith("connack"):
            if not got or got[0][0] != 2 or got[0][2][1] != int(bad.answer.split()[1]) or outcome != "closed":
                wrong.append(f"{bad.name}: {outcome} after {got}, expected {bad.answer}")
        elif bad.answer == "400":
            if outcome != "open" or not any(b"twin/res/400" in body for _, _, body in got):
                wrong.append(f"{bad.name}: {outcome} after {got}, expected a 400 on the twin topic")
        elif bad.answer == "ignored":
            if outcome != "open":
                wrong.append(f"{bad.name}: {outcome}, expected the connection to go on")
        elif bad.answer == "close or ignored":
            if outcome == "hung":
                wrong.append(f"{bad.name}: hung")
        elif outcome != "closed":
            wrong.append(f"{bad.name}: {outcome} after {got}, expected the connection closed")
    figures.crashes = _crashes(caplog)
    _still_serves(emu)
    assert not wrong, "\n".join(wrong)
    assert figures.crashes == 0, _errors(caplog)


# ---- random packets ------------------------------------------------------------------------------


def _templates(token: str) -> list[bytes]:
    """Valid packets to mutate: what a device sends in a normal session."""
    return [
        publish_packet(TELEMETRY + "$.ct=application%2Fjson&k=v", b'{"t": 1}', qos=1, packet_id=7),
        publish_packet(TELEMETRY, b"plain", qos=0),
        publish_packet("$iothub/twin/GET/?$rid=1", b"", qos=0),
        publish_packet("$iothub/twin/PATCH/properties/reported/?$rid=2", b'{"a": {"b": [1, 2]}}', qos=0),
        publish_packet("$iothub/methods/res/200/?$rid=3", b"{}", qos=0),
        subscribe_packet([("$iothub/twin/res/#", 0), ("$iothub/methods/POST/#", 1)], packet_id=9),
        packet(UNSUBSCRIBE, 2, b"\x00\x0a" + s("$iothub/twin/res/#")),
        packet(PUBACK, 0, b"\x00\x07"),
        packet(PINGREQ, 0, b""),
        connect_packet(DEVICE, USER, token),
    ]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    how = rng.randrange(7)
    if how == 0:  # flip a few bytes anywhere
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif how == 1:  # a new first byte: another type or other flags
        buf[0] = rng.randrange(256)
    elif how == 2:  # cut short, keeping the announced length
        del buf[rng.randrange(1, len(buf)) :]
    elif how == 3:  # bytes added at the end
        buf += rng.randbytes(rng.randint(1, 64))
    elif how == 4:  # another remaining length
        buf[1] = rng.randrange(256)
    elif how == 5:  # bytes inserted in the middle
        at = rng.randrange(len(buf))
        buf[at:at] = rng.randbytes(rng.randint(1, 16))
    else:  # random bytes of the right framing
        return packet(rng.randrange(16), rng.randrange(16), rng.randbytes(rng.randint(0, 128)))
    return bytes(buf)


def fuzz(thread: EmulatorThread, seed: int, packets: int, figures) -> int:
    """Send `packets` packets, a third of them mutated or random, in bursts on connections of
    which most start with a valid CONNECT; each connection ends with the server closing it (at
    its first fault, at the latest at EOF), so the packets after a fault are sent but not read.
    Returns the number of connections."""
    emu = thread.emulator
    rng = random.Random(seed)
    token = device_token(emu, DEVICE)
    templates = _templates(token)
    sent = connections = 0
    while sent < packets:
        connections += 1
        connected = rng.random() < 0.7
        client = _connected(emu, token) if connected else RawClient(emu)
        burst = min(packets - sent, rng.randint(1, 40))
        # Mostly mutations of valid packets; some valid ones in between keep a session going.
        data = b"".join(_mutate(rng, rng.choice(templates)) if rng.random() < 0.3 else rng.choice(templates[:-1]) for _ in range(burst))
        _send(client, data)
        sent += burst
        client.sock.shutdown(socket.SHUT_WR)  # the server may be waiting for the rest of a packet
        while client.read_packet(timeout=30) is not None:
            pass
        client.close()
    figures.tried += sent
    return connections


@pytest.mark.figures("random MQTT packets, seeded slice")
def test_a_seeded_slice_of_random_packets(thread, caplog, figures, capsys):
    _fuzz_run(thread, SLICE_SEED, SLICE_PACKETS, "seeded slice", caplog, figures, capsys)


@pytest.mark.robustness_long
@pytest.mark.figures("random MQTT packets, long run")
def test_a_long_run_of_random_packets(thread, caplog, figures, capsys):
    seed = int(os.environ.get("AZURE_IOT_HARNESS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    _fuzz_run(thread, seed, LONG_PACKETS, "long run", caplog, figures, capsys)


def _fuzz_run(thread: EmulatorThread, seed: int, packets: int, what: str, caplog, figures, capsys) -> None:
    with capsys.disabled():  # the seed is shown whatever the outcome
        print(f"\nrandom MQTT packets, {what}: seed {seed}, {packets} packets (AZURE_IOT_HARNESS_FUZZ_SEED={seed} repeats it)")
    connections = fuzz(thread, seed, packets, figures)
    figures.notes.append(f"{what}: seed {seed}, {connections} connections")
    figures.crashes = _crashes(caplog)
    _still_serves(thread.emulator)
    assert figures.crashes == 0, f"seed {seed}: {_errors(caplog)}"


# ---- what counts as a crash ----------------------------------------------------------------------


def _errors(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def _crashes(caplog) -> int:
    """ERROR records (an internal error closing a connection, an exception in a callback)."""
    return len(_errors(caplog))


def _still_serves(emu) -> None:
    """Every fuzzed connection is gone from the emulator, and a device connects and publishes."""
    wait_for(lambda: not emu.mqtt.connections, 30)
    dev = sas_device(emu, "device1")
    assert dev.connect() == 0
    mid = dev.publish("devices/device1/messages/events/", b"after the storm")
    wait_for(lambda: mid in dev.acked)
    dev.close()
