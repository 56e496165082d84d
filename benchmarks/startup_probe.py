"""Run in a fresh interpreter: time an in-process Emulator from construction (fresh PKI, in
memory) until every listener accepts — an MQTT TLS handshake completes and HTTPS answers
/_emulator/health — and print one JSON line."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

t_import = time.perf_counter()
from azure_iot_harness.emulator.app import Emulator  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - t_import


async def main() -> None:
    t0 = time.perf_counter()
    emu = Emulator(in_memory=True, mqtt_port=0, https_port=0)
    await emu.start()
    started = time.perf_counter() - t0
    try:
        ctx = ssl.create_default_context(cafile=str(emu.ca_file))
        _, w = await asyncio.open_connection("127.0.0.1", emu.mqtt_port, ssl=ctx, server_hostname="localhost")
        w.close()
        while True:
            r, w = await asyncio.open_connection("127.0.0.1", emu.https_port, ssl=ctx, server_hostname="localhost")
            w.write(b"GET /_emulator/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            status = await r.readline()
            w.close()
            if b" 200 " in status:
                break
            await asyncio.sleep(0.001)
        accepting = time.perf_counter() - t0
    finally:
        await emu.stop()
    print(json.dumps({"import": IMPORT_SECONDS, "start": started, "accepting": accepting}))


if __name__ == "__main__":
    asyncio.run(main())
