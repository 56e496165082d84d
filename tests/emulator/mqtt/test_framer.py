"""The sans-IO framer the server's read loop splits a connection's bytes with."""

from __future__ import annotations

import pytest

from azure_iot_harness.emulator.mqtt import codec
from azure_iot_harness.errors import ProtocolViolation

PUBLISH = codec.encode_publish("devices/d1/messages/events/", b"x" * 300, 1, 7)  # a 2-byte remaining length
PINGREQ = bytes([0xC0, 0])
PUBACK = codec.encode_puback(9)
STREAM = PUBLISH + PINGREQ + PUBACK + PUBLISH


def frames(framer: codec.Framer) -> list[codec.Frame]:
    out = []
    while (frame := framer.next()) is not None:
        out.append(frame)
    return out


def expected() -> list[codec.Frame]:
    publish = codec.Frame(codec.PUBLISH, PUBLISH[0] & 0x0F, PUBLISH[3:])
    return [publish, codec.Frame(codec.PINGREQ, 0, b""), codec.Frame(codec.PUBACK, 0, PUBACK[2:]), publish]


def test_several_packets_in_one_read():
    framer = codec.Framer(1024)
    framer.feed(STREAM)
    assert frames(framer) == expected()


def test_a_packet_split_anywhere_comes_out_whole():
    for cut in range(1, len(STREAM)):
        framer = codec.Framer(1024)
        framer.feed(STREAM[:cut])
        got = frames(framer)
        framer.feed(STREAM[cut:])
        assert got + frames(framer) == expected(), cut


def test_one_byte_at_a_time():
    framer = codec.Framer(1024)
    got = []
    for i in range(len(STREAM)):
        framer.feed(STREAM[i : i + 1])
        got += frames(framer)
    assert got == expected()


def test_an_oversized_packet_is_refused_before_its_body_arrives():
    framer = codec.Framer(100)
    framer.feed(PUBLISH[:3])  # the fixed header says 300-odd bytes follow
    with pytest.raises(ProtocolViolation, match="exceeds the 100-byte limit"):
        framer.next()


def test_a_fifth_length_byte_is_refused():
    framer = codec.Framer(1 << 30)
    framer.feed(bytes([0x30, 0xFF, 0xFF, 0xFF]))
    assert framer.next() is None  # four length bytes: still a valid header, waiting
    framer.feed(bytes([0xFF]))
    with pytest.raises(ProtocolViolation, match="longer than 4 bytes"):
        framer.next()


def test_reserved_flags_are_refused():
    framer = codec.Framer(1024)
    framer.feed(bytes([0x82, 0x05]))  # SUBSCRIBE must carry flags 2: this one is fine so far
    assert framer.next() is None
    framer = codec.Framer(1024)
    framer.feed(bytes([0x80, 0x05]))  # SUBSCRIBE with flags 0
    with pytest.raises(ProtocolViolation, match="SUBSCRIBE with reserved flags 0x0"):
        framer.next()
