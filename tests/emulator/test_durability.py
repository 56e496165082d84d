"""Durable before acknowledged: every PUBACKed message survives `kill -9` of the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from azure_iot_harness.emulator.app import EmulatorThread
from tests.helpers import RawClient, connect_packet, device_token, publish_packet

SERVER = """
import asyncio, sys
from azure_iot_harness.emulator.app import Emulator
async def main():
    emu = await Emulator(data_dir=sys.argv[1], mqtt_port=0, https_port=0).start()
    print(emu.mqtt_port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class _Proxy:
    """Just enough of an Emulator for the raw-client helpers."""

    def __init__(self, port: int, ca_file: Path, registry) -> None:
        self.mqtt_port, self.ca_file, self.registry, self.host = port, ca_file, registry, "localhost"
        self.config = type("C", (), {"bind": "127.0.0.1"})()


def test_acknowledged_messages_survive_kill_9(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        # The well-known device's key is published; the registry is only needed for the token.
        with EmulatorThread(in_memory=True, mqtt_port=0, https_port=0) as scratch:
            token = device_token(scratch, "device1")
        emu = _Proxy(port, data / "pki" / "ca.pem", None)
        client = RawClient(emu)
        client.send(connect_packet("device1", "localhost/device1/?api-version=2021-04-12", token, clean=False))
        assert client.connack() == 0

        acked: list[int] = []

        def read_acks() -> None:
            while True:
                pkt = client.read_packet(timeout=30)
                if pkt is None:
                    return
                if pkt[0] == 4:
                    acked.append(int.from_bytes(pkt[2], "big"))

        reader = threading.Thread(target=read_acks, daemon=True)
        reader.start()
        sent = 0
        try:
            for i in range(1, 20001):
                client.send(publish_packet("devices/device1/messages/events/", json.dumps({"i": i}).encode(), packet_id=i % 65535 or 1))
                sent = i
                if len(acked) >= 2000:
                    break
        except OSError:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 1, "nothing was acknowledged before the kill"
    thread = EmulatorThread(data_dir=data, mqtt_port=0, https_port=0)
    emu = thread.start()

    async def read_all():
        return await emu.store.read_telemetry(limit=100000)

    try:
        stored = thread.call(read_all())
    finally:
        thread.stop()
    bodies = {json.loads(t.body)["i"] for _, t in stored}
    missing = [pid for pid in acked if pid not in bodies]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    print(f"sent {sent}, acknowledged {len(acked)}, stored {len(bodies)}")

