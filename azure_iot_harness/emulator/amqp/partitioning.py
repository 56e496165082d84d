"""Which partition of the Event Hubs-compatible endpoint a device's messages go to. Pure.

IoT Hub places a device's messages by a hash of its device id. The hash is the one Event Hubs
uses for partition keys — Bob Jenkins' lookup3 `hashlittle2` over the key's UTF-8 bytes, the
two halves XORed into a signed 16-bit value, then `|h % n|` with the sign of C#'s remainder —
as Azure's .NET SDK ports it from the service.
"""

from __future__ import annotations

import functools

_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = ((a - c) & _MASK) ^ _rot(c, 4)
    c = (c + b) & _MASK
    b = ((b - a) & _MASK) ^ _rot(a, 6)
    a = (a + c) & _MASK
    c = ((c - b) & _MASK) ^ _rot(b, 8)
    b = (b + a) & _MASK
    a = ((a - c) & _MASK) ^ _rot(c, 16)
    c = (c + b) & _MASK
    b = ((b - a) & _MASK) ^ _rot(a, 19)
    a = (a + c) & _MASK
    c = ((c - b) & _MASK) ^ _rot(b, 4)
    b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> tuple[int, int, int]:
    c = ((c ^ b) - _rot(b, 14)) & _MASK
    a = ((a ^ c) - _rot(c, 11)) & _MASK
    b = ((b ^ a) - _rot(a, 25)) & _MASK
    c = ((c ^ b) - _rot(b, 16)) & _MASK
    a = ((a ^ c) - _rot(c, 4)) & _MASK
    b = ((b ^ a) - _rot(a, 14)) & _MASK
    c = ((c ^ b) - _rot(b, 24)) & _MASK
    return a, b, c


def lookup3(data: bytes, seed1: int = 0, seed2: int = 0) -> tuple[int, int]:
    """lookup3's `hashlittle2`: the primary and secondary 32-bit hashes of `data`."""
    a = b = c = (0xDEADBEEF + len(data) + seed1) & _MASK
    c = (c + seed2) & _MASK
    pos, rest = 0, len(data)
    while rest > 12:
        a = (a + int.from_bytes(data[pos : pos + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[pos + 4 : pos + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[pos + 8 : pos + 12], "little")) & _MASK
        a, b, c = _mix(a, b, c)
        pos += 12
        rest -= 12
    if rest == 0:
        return c, b
    tail = data[pos:] + b"\0" * (12 - rest)  # the missing bytes of the last word count as zero
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    a, b, c = _final(a, b, c)
    return c, b


def hash_code(key: str) -> int:
    """The signed 16-bit hash Event Hubs computes for a partition key."""
    if not key:
        return 0
    h1, h2 = lookup3(key.encode("utf-8"))
    value = (h1 ^ h2) & 0xFFFF
    return value - 0x10000 if value >= 0x8000 else value


@functools.lru_cache(maxsize=65536)
def partition_of(device_id: str, count: int) -> int:
    """The partition (0 … count-1) of a device's messages."""
    h = hash_code(device_id)
    remainder = abs(h) % count  # C#'s % keeps the dividend's sign; Math.Abs then drops it
    return remainder
