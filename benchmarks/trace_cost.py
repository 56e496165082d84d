"""What the packet trace costs per telemetry message, counted in instructions rather than time
(timings mean little on a shared machine): run under valgrind's callgrind (or any instruction
counter) with the trace on and off, at two message counts, and take the difference of the
differences. `python -m benchmarks.trace_cost --messages N --trace on|off`; one emulator and one
TLS client in one process, QoS 1, 100 messages in flight.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m benchmarks.trace_cost --messages 1000 --trace on
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import struct

from azure_iot_harness.emulator.app import Emulator
from azure_iot_harness.emulator.protocol import sas

WINDOW = 100


def _string(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    n, length = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return bytes([(kind << 4) | flags]) + length + body


async def run(messages: int, trace: bool) -> None:
    async with Emulator(in_memory=True, mqtt_port=0, https_port=0, trace=trace, durability="normal") as emu:
        key = emu.registry.get("device1")["authentication"]["symmetricKey"]["primaryKey"]
        token = sas.generate(f"{emu.host}/devices/device1", key, ttl=3600)
        ctx = ssl.create_default_context(cafile=str(emu.ca_file))
        reader, writer = await asyncio.open_connection(emu.config.bind, emu.mqtt_port, ssl=ctx, server_hostname="localhost")
        body = _string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
        body += _string("device1") + _string(f"{emu.host}/device1/?api-version=2021-04-12") + _string(token)
        writer.write(_packet(1, 0, body))
        assert (await reader.readexactly(4))[3] == 0
        topic = _string("devices/device1/messages/events/")
        payload = b"x" * 64
        sent = acked = 0
        while acked < messages:
            while sent < messages and sent - acked < WINDOW:
                sent += 1
                writer.write(_packet(3, 2, topic + struct.pack("!H", sent % 65535 + 1) + payload))
            await writer.drain()
            await reader.readexactly(4)
            acked += 1
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--trace", choices=["on", "off"], default="on")
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.trace == "on"))


if __name__ == "__main__":
    main()
