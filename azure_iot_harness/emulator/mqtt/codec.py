"""MQTT 3.1.1 packets on amqtt's codec: the only module that imports amqtt's packet classes.

Framing is sans-IO (`Framer`): an oversized packet is refused once its fixed header is in,
before its body is waited for. The hot path is done here rather than by amqtt: the fixed
header, PUBLISH (amqtt also turns a topic that is not UTF-8 into the repr of its bytes instead
of refusing it), PUBACK; and so are the CONNECT payload and the SUBSCRIBE/UNSUBSCRIBE filters, which amqtt reads without
refusing malformed ones.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from amqtt.mqtt.connack import ConnackPacket, ConnackVariableHeader
from amqtt.mqtt.connect import ConnectVariableHeader
from amqtt.mqtt.packet import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
)
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.suback import SubackPacket
from amqtt.mqtt.unsuback import UnsubackPacket

from ...errors import ProtocolViolation

__all__ = [
    "CONNECT",
    "DISCONNECT",
    "PINGREQ",
    "PUBACK",
    "PUBCOMP",
    "PUBLISH",
    "PUBREC",
    "PUBREL",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
]

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
    8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT", 0: "reserved packet type 0", 15: "reserved packet type 15",
}  # fmt: skip

# Fixed-header flags MQTT 3.1.1 requires for each packet type (PUBLISH carries its own).
_REQUIRED_FLAGS = {CONNECT: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, UNSUBSCRIBE: 2, PINGREQ: 0, DISCONNECT: 0}


class Frame(NamedTuple):
    packet_type: int
    flags: int
    body: bytes


class Framer:
    """Packets out of a byte stream, sans-IO: `feed` the bytes as they arrive, then take each
    complete packet with `next()` (None until one is complete).

    The server's read loop reads whatever the transport has (often several PUBLISHes at once)
    and splits it here, instead of awaiting the fixed header, a length byte and the body one by
    one. A bad fixed header (a fifth length byte, reserved flags, a body over `max_body`) raises
    ProtocolViolation as soon as the header is in, before the body is waited for.
    """

    __slots__ = ("_buf", "_pos", "_max")

    def __init__(self, max_body: int) -> None:
        self._buf = b""
        self._pos = 0  # where the next packet starts in _buf
        self._max = max_body

    def feed(self, data: bytes) -> None:
        if self._pos < len(self._buf):  # a packet's start is still here: keep it
            self._buf = self._buf[self._pos :] + data
        else:
            self._buf = data
        self._pos = 0

    def next(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        n = len(buf)
        if n - pos < 2:
            return None
        first, byte = buf[pos], buf[pos + 1]
        length, shift, i = byte & 0x7F, 7, pos + 2
        while byte & 0x80:
            if shift > 21:
                raise ProtocolViolation("bad fixed header: remaining length longer than 4 bytes")
            if i >= n:
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
        packet_type, flags = first >> 4, first & 0x0F
        if length > self._max:
            raise ProtocolViolation(f"{PACKET_NAMES.get(packet_type)} of {length} bytes exceeds the {self._max}-byte limit")
        required = _REQUIRED_FLAGS.get(packet_type)
        if required is not None and flags != required:
            raise ProtocolViolation(f"{PACKET_NAMES[packet_type]} with reserved flags {flags:#x}")
        end = i + length
        if end > n:
            return None
        if end == n:  # all taken: an idle connection keeps no copy of its last read
            self._buf, self._pos = b"", 0
        else:
            self._pos = end
        return Frame(packet_type, flags, buf[i:end])


# Bytes asked of a stream per read: whatever it holds, up to this, split by a Framer.
READ_SIZE = 64 * 1024


async def read_frame(read: Callable[[int], Awaitable[bytes]], framer: Framer) -> Frame | None:
    """The next packet out of `framer`, fed from `read` (a stream's `read`) as needed; None at
    the end of the stream or when the connection is lost (a partial packet is dropped)."""
    while (frame := framer.next()) is None:
        try:
            data = await read(READ_SIZE)
        except (ConnectionError, asyncio.IncompleteReadError):
            return None
        if not data:
            return None
        framer.feed(data)
    return frame


# ---- CONNECT ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    proto_name: str
    proto_level: int
    clean_session: bool
    keep_alive: int
    client_id: str
    username: str | None
    password: str | None
    will_topic: str | None
    will_message: bytes | None
    will_qos: int
    will_retain: bool


def decode_connect_header(body: bytes) -> ConnectVariableHeader:
    """Protocol name, level, flags and keep-alive: enough to refuse a wrong protocol version
    before the payload (whose layout differs in MQTT 5) is parsed."""
    if len(body) < 2:
        raise ProtocolViolation("truncated CONNECT")
    (name_len,) = struct.unpack_from("!H", body)
    if len(body) < 2 + name_len + 4:
        raise ProtocolViolation("truncated CONNECT")
    name = body[2 : 2 + name_len].decode("utf-8", "replace")
    level, flags = body[2 + name_len], body[3 + name_len]
    (keep_alive,) = struct.unpack_from("!H", body, 4 + name_len)
    return ConnectVariableHeader(flags, keep_alive, name, level)


async def decode_connect(body: bytes) -> Connect:
    """The CONNECT of MQTT 3.1.1, read strictly: every announced field present, strings UTF-8
    without U+0000, no will QoS or retain without a will, nothing after the payload. (amqtt's
    payload class turns a string that is not UTF-8 into the repr of its bytes and ignores what
    follows the payload.) The password is binary in MQTT; a SAS token is text, so bytes that are
    not UTF-8 are replaced and the token then fails to parse (CONNACK 5)."""
    vh = decode_connect_header(body)
    if vh.reserved_flag:
        raise ProtocolViolation("CONNECT with the reserved flag set")
    if not vh.will_flag and (vh.will_qos or vh.will_retain_flag):
        raise ProtocolViolation("CONNECT with a will QoS or retain flag but no will (MQTT 3.1.1, 3.1.2.6)")
    if vh.will_qos == 3:
        raise ProtocolViolation("CONNECT with will QoS 3")
    fields = _Fields(body, len(vh.to_bytes()))
    client_id = fields.text("client id")
    will_topic = fields.text("will topic") if vh.will_flag else None
    will_message = fields.data("will message") if vh.will_flag else None
    username = fields.text("username") if vh.username_flag else None
    password = fields.data("password").decode("utf-8", "replace") if vh.password_flag else None
    if fields.at != len(body):
        raise ProtocolViolation(f"CONNECT with {len(body) - fields.at} bytes after its payload")
    return Connect(
        proto_name=vh.proto_name,
        proto_level=vh.proto_level,
        clean_session=vh.clean_session_flag,
        keep_alive=vh.keep_alive,
        client_id=client_id,
        username=username,
        password=password,
        will_topic=will_topic,
        will_message=will_message,
        will_qos=vh.will_qos,
        will_retain=vh.will_retain_flag,
    )


class _Fields:
    """Length-prefixed fields of a packet body, read in order from `at`."""

    def __init__(self, body: bytes, at: int) -> None:
        self.body, self.at = body, at

    def data(self, what: str) -> bytes:
        if self.at + 2 > len(self.body):
            raise ProtocolViolation(f"CONNECT cut before its {what}")
        (length,) = struct.unpack_from("!H", self.body, self.at)
        start, self.at = self.at + 2, self.at + 2 + length
        if self.at > len(self.body):
            raise ProtocolViolation(f"CONNECT {what} runs past the end of the packet")
        return self.body[start : self.at]

    def text(self, what: str) -> str:
        try:
            value = self.data(what).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(f"CONNECT {what} is not UTF-8") from None
        if "\x00" in value:
            raise ProtocolViolation(f"CONNECT {what} holds U+0000")
        return value


def encode_connack(return_code: int, session_present: bool = False) -> bytes:
    return ConnackPacket(variable_header=ConnackVariableHeader(1 if session_present else 0, return_code)).to_bytes()


# ---- PUBLISH ----------------------------------------------------------------------------------


class Publish(NamedTuple):
    """A PUBLISH from a client (a tuple: made for every message, and a frozen dataclass's
    __init__ sets each field through object.__setattr__)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


def decode_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolViolation("PUBLISH with QoS 3")
    if len(body) < 2:
        raise ProtocolViolation("truncated PUBLISH")
    (topic_len,) = struct.unpack_from("!H", body)
    end = 2 + topic_len
    if len(body) < end + (2 if qos else 0):
        raise ProtocolViolation("truncated PUBLISH")
    try:
        topic = body[2:end].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("PUBLISH topic is not UTF-8") from None
    if not topic or "\x00" in topic:
        raise ProtocolViolation("PUBLISH topic is empty or holds U+0000")
    if "#" in topic or "+" in topic:
        raise ProtocolViolation(f"PUBLISH topic {topic!r} holds a wildcard")
    packet_id = None
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, end)
        end += 2
        if packet_id == 0:
            raise ProtocolViolation("PUBLISH with packet id 0")
    return Publish(topic, body[end:], qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)


def encode_publish(topic: str, payload: bytes, qos: int, packet_id: int | None, *, dup: bool = False) -> bytes:
    return PublishPacket.build(topic, payload, packet_id if qos else None, dup, qos, False).to_bytes()


def decode_packet_id(body: bytes) -> int:
    if len(body) != 2:
        raise ProtocolViolation("packet id field is not 2 bytes")
    return struct.unpack("!H", body)[0]


def encode_puback(packet_id: int) -> bytes:
    # By hand: one per QoS 1 message, and amqtt builds three objects for these four bytes.
    return _PUBACK.pack(0x40, 2, packet_id)


_PUBACK = struct.Struct("!BBH")


# ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------------


async def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    packet_id, filters = _topic_filters(body, "SUBSCRIBE", with_qos=True)
    for topic, qos in filters:
        if qos > 2:
            raise ProtocolViolation(f"SUBSCRIBE to {topic!r} with QoS {qos}")
    return packet_id, filters


async def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    packet_id, filters = _topic_filters(body, "UNSUBSCRIBE", with_qos=False)
    return packet_id, [topic for topic, _ in filters]


def _topic_filters(body: bytes, kind: str, *, with_qos: bool) -> tuple[int, list[tuple[str, int]]]:
    """A packet id and one or more (filter, requested QoS) pairs that fill the body exactly: a
    length running past the end, bytes left over or a filter that is not UTF-8 is malformed
    (amqtt's payload classes read such packets without complaint)."""
    if len(body) < 3:
        raise ProtocolViolation(f"{kind} without topic filters")
    (packet_id,) = struct.unpack_from("!H", body)
    filters, at = [], 2
    while at < len(body):
        if at + 2 > len(body):
            raise ProtocolViolation(f"{kind} cut inside a topic filter length")
        (length,) = struct.unpack_from("!H", body, at)
        end = at + 2 + length + (1 if with_qos else 0)
        if end > len(body):
            raise ProtocolViolation(f"{kind} topic filter runs past the end of the packet")
        try:
            topic = body[at + 2 : at + 2 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(f"{kind} topic filter is not UTF-8") from None
        filters.append((topic, body[end - 1] if with_qos else 0))
        at = end
    return packet_id, filters


def encode_suback(packet_id: int, return_codes: list[int]) -> bytes:
    return SubackPacket.build(packet_id, return_codes).to_bytes()


def encode_unsuback(packet_id: int) -> bytes:
    return UnsubackPacket.build(packet_id).to_bytes()


def encode_pingresp() -> bytes:
    return b"\xd0\x00"
