"""MQTT 3.1.1 packets on amqtt's codec: the only module that imports amqtt's packet classes.

Framing reads the fixed header first, so an oversized packet is refused before its body is
read. The hot path is done here rather than by amqtt: the fixed header, PUBLISH (amqtt also
turns a topic that is not UTF-8 into the repr of its bytes instead of refusing it), PUBACK.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import NamedTuple

from amqtt.adapters import BufferReader, ReaderAdapter
from amqtt.errors import AMQTTError, NoDataError
from amqtt.mqtt.connack import ConnackPacket, ConnackVariableHeader
from amqtt.mqtt.connect import ConnectPayload, ConnectVariableHeader
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
    MQTTFixedHeader,
    PacketIdVariableHeader,
)
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.suback import SubackPacket
from amqtt.mqtt.subscribe import SubscribePayload
from amqtt.mqtt.unsuback import UnsubackPacket
from amqtt.mqtt.unsubscribe import UnubscribePayload

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


_EOF = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)


async def read_frame(reader: ReaderAdapter, max_body: int) -> Frame | None:
    """The next packet, or None at end of stream. Raises ProtocolViolation for bad framing.

    The fixed header is parsed here rather than by amqtt, which reads it a byte at a time:
    every packet is at least two bytes, so one read gets the type and (mostly) the length.
    """
    try:
        head = await reader.read(2)
        if len(head) < 2:
            return None
        first, byte = head[0], head[1]
        length, shift = byte & 0x7F, 7
        while byte & 0x80:
            if shift > 21:
                raise ProtocolViolation("bad fixed header: remaining length longer than 4 bytes")
            more = await reader.read(1)
            if not more:
                return None
            byte = more[0]
            length |= (byte & 0x7F) << shift
            shift += 7
    except _EOF:
        return None
    packet_type, flags = first >> 4, first & 0x0F
    if length > max_body:
        raise ProtocolViolation(f"{PACKET_NAMES.get(packet_type)} of {length} bytes exceeds the {max_body}-byte limit")
    required = _REQUIRED_FLAGS.get(packet_type)
    if required is not None and flags != required:
        raise ProtocolViolation(f"{PACKET_NAMES[packet_type]} with reserved flags {flags:#x}")
    try:
        body = await reader.read(length) if length else b""
    except Exception:  # IncompleteReadError and friends: the peer went away mid-packet
        return None
    if len(body) < length:
        return None
    return Frame(packet_type, flags, body)


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
    vh = decode_connect_header(body)
    if vh.reserved_flag:
        raise ProtocolViolation("CONNECT with the reserved flag set")
    reader = BufferReader(body[len(vh.to_bytes()) :])
    try:
        payload = await ConnectPayload.from_stream(reader, None, vh)
    except (AMQTTError, NoDataError, struct.error) as exc:
        raise ProtocolViolation(f"malformed CONNECT payload: {exc}") from None
    if vh.username_flag and payload.username is None or vh.password_flag and payload.password is None:
        raise ProtocolViolation("truncated CONNECT payload")
    return Connect(
        proto_name=vh.proto_name,
        proto_level=vh.proto_level,
        clean_session=vh.clean_session_flag,
        keep_alive=vh.keep_alive,
        client_id="" if payload.client_id_is_random else (payload.client_id or ""),
        username=payload.username,
        password=payload.password,
        will_topic=payload.will_topic,
        will_message=bytes(payload.will_message) if payload.will_message is not None else None,
        will_qos=vh.will_qos,
        will_retain=vh.will_retain_flag,
    )


def encode_connack(return_code: int, session_present: bool = False) -> bytes:
    return ConnackPacket(variable_header=ConnackVariableHeader(1 if session_present else 0, return_code)).to_bytes()


# ---- PUBLISH ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
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
    if len(body) < 3:
        raise ProtocolViolation("SUBSCRIBE without topic filters")
    packet_id = struct.unpack_from("!H", body)[0]
    fh = MQTTFixedHeader(SUBSCRIBE, 2, len(body))
    payload = await SubscribePayload.from_stream(BufferReader(body[2:]), fh, PacketIdVariableHeader(packet_id))
    if not payload.topics:
        raise ProtocolViolation("SUBSCRIBE without topic filters")
    for topic, qos in payload.topics:
        if qos > 2:
            raise ProtocolViolation(f"SUBSCRIBE to {topic!r} with QoS {qos}")
    return packet_id, payload.topics


async def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    if len(body) < 3:
        raise ProtocolViolation("UNSUBSCRIBE without topic filters")
    packet_id = struct.unpack_from("!H", body)[0]
    fh = MQTTFixedHeader(UNSUBSCRIBE, 2, len(body))
    payload = await UnubscribePayload.from_stream(BufferReader(body[2:]), fh, PacketIdVariableHeader(packet_id))
    return packet_id, payload.topics


def encode_suback(packet_id: int, return_codes: list[int]) -> bytes:
    return SubackPacket.build(packet_id, return_codes).to_bytes()


def encode_unsuback(packet_id: int) -> bytes:
    return UnsubackPacket.build(packet_id).to_bytes()


def encode_pingresp() -> bytes:
    return b"\xd0\x00"
