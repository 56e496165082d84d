"""AMQP 1.0 frame boundaries and the padding of short performatives. Pure functions, no sockets.

Proton leaves trailing null fields out of a performative's list, as the spec allows; the
pure-Python AMQP stack inside azure-eventhub 5.15.1 and older reads performative fields by
position and crashes on such short frames. `OutputFramer` cuts proton's output into frames and
re-encodes each short performative list with explicit nulls, so every client reads them.
"""

from __future__ import annotations

import struct

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
HEADER_SIZE = 8

# Performative descriptor → number of fields in its list (AMQP 1.0, part 2.7).
FIELD_COUNTS = {
    0x10: 10,  # open
    0x11: 8,  # begin
    0x12: 14,  # attach
    0x13: 11,  # flow
    0x14: 11,  # transfer
    0x15: 6,  # disposition
    0x16: 3,  # detach
    0x17: 1,  # end
    0x18: 1,  # close
}
_NULL = 0x40


def frame(body: bytes, frame_type: int, channel: int = 0) -> bytes:
    """One frame: size, data offset 2 (no extended header), type, channel, body."""
    return struct.pack(">IBBH", HEADER_SIZE + len(body), 2, frame_type, channel) + body


def pad_performative(fr: bytes) -> bytes:
    """The frame with its performative list carrying every field (explicit nulls), or unchanged
    when it already does or is not an AMQP performative this knows."""
    if len(fr) < HEADER_SIZE + 4:
        return fr
    _, doff, ftype, channel = struct.unpack_from(">IBBH", fr)
    body = fr[doff * 4 :]
    if ftype != 0 or len(body) < 4 or body[0] != 0x00:
        return fr
    if body[1] == 0x53:  # smallulong descriptor
        code, p = body[2], 3
    elif body[1] == 0x80 and len(body) >= 10:  # ulong descriptor
        code, p = struct.unpack_from(">Q", body, 2)[0], 10
    else:
        return fr
    want = FIELD_COUNTS.get(code)
    if want is None or p >= len(body):
        return fr
    ctor = body[p]
    if ctor == 0x45:  # list0
        count, items, end = 0, b"", p + 1
    elif ctor == 0xC0:  # list8: size, count, items
        size, count = body[p + 1], body[p + 2]
        items, end = body[p + 3 : p + 2 + size], p + 2 + size
    elif ctor == 0xD0:  # list32
        size, count = struct.unpack_from(">II", body, p + 1)
        items, end = body[p + 9 : p + 5 + size], p + 5 + size
    else:
        return fr
    if count >= want:
        return fr
    items = bytes(items) + bytes([_NULL]) * (want - count)
    if len(items) + 1 <= 255:
        encoded = bytes([0xC0, len(items) + 1, want]) + items
    else:
        encoded = b"\xd0" + struct.pack(">II", len(items) + 4, want) + items
    return frame(bytes(body[:p]) + encoded + bytes(body[end:]), ftype, channel)


class OutputFramer:
    """Cuts a byte stream of a protocol header and frames into whole frames, padded."""

    def __init__(self) -> None:
        self._buffer = b""
        self._header_seen = False

    def feed(self, data: bytes) -> bytes:
        """What may be written now: the header and every complete frame so far."""
        buf = self._buffer + data
        out: list[bytes] = []
        if not self._header_seen:
            if len(buf) < HEADER_SIZE:
                self._buffer = buf
                return b""
            out.append(buf[:HEADER_SIZE])
            buf = buf[HEADER_SIZE:]
            self._header_seen = True
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = struct.unpack_from(">I", buf, pos)
            if size < HEADER_SIZE or len(buf) - pos < size:
                break
            out.append(pad_performative(buf[pos : pos + size]))
            pos += size
        self._buffer = buf[pos:]
        return b"".join(out)
