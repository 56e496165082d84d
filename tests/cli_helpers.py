"""Run the real command line in subprocesses: `python -m azure_iot_harness ...`."""

from __future__ import annotations

import json
import os
import queue
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt

from azure_iot_harness.config import WELL_KNOWN_SAS_DEVICE_KEYS
from azure_iot_harness.emulator.protocol import sas
from tests.helpers import wait_for

CLI = [sys.executable, "-m", "azure_iot_harness"]


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without AZURE_IOT_HARNESS_* settings that could leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_IOT_HARNESS_")}
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env or cli_env(), cwd=cwd
    )


class _Lines:
    """Lines of a child's pipe, read on a thread so the pipe never fills and reads can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float) -> str | None:
        """The next line, or None at end of stream; AssertionError after timeout."""
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout} s; so far: {self.seen}") from None
        if line is not None:
            self.seen.append(line)
        return line

    def until(self, prefix: str, timeout: float = 60) -> list[str]:
        """Lines up to and including the first one starting with prefix."""
        out = []
        while True:
            line = self.next(timeout)
            if line is None:
                raise AssertionError(f"stream ended before a line starting with {prefix!r}: {out}")
            out.append(line)
            if line.startswith(prefix):
                return out

    def rest(self, timeout: float = 30) -> str:
        """Everything until end of stream."""
        while self.next(timeout) is not None:
            pass
        return "\n".join(self.seen)


class CliProcess:
    """A long-running CLI verb (serve, monitor-events) with its output lines."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or cli_env()
        )
        self.stdout = _Lines(self.proc.stdout)  # type: ignore[arg-type]
        self.stderr = _Lines(self.proc.stderr)  # type: ignore[arg-type]

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


class Serve(CliProcess):
    """`serve` on ephemeral ports with its own data folder; `banner` holds the lines up to "ready"."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        super().__init__("serve", "--data-dir", str(data_dir), "--mqtt-port", "0", "--https-port", "0", *extra)
        self.banner: list[str] = []

    def wait_ready(self, timeout: float = 60) -> list[str]:
        self.banner = self.stdout.until("ready", timeout)
        return self.banner

    @property
    def info(self) -> dict:
        return json.loads((self.data_dir / "endpoints.json").read_text())

    def __enter__(self) -> Serve:
        try:
            self.wait_ready()
        except BaseException:
            self.terminate()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def device1_client(info: dict) -> mqtt.Client:
    """A connected paho client for the well-known device1 of an emulator known only by `info`.

    Built here rather than with tests.helpers.PahoDevice, which wants an in-process Emulator.
    """
    host = info["hubHostName"]
    client = mqtt.Client(client_id="device1", clean_session=True, protocol=mqtt.MQTTv311)
    client.username_pw_set(
        f"{host}/device1/?api-version=2021-04-12",
        sas.generate(f"{host}/devices/device1", WELL_KNOWN_SAS_DEVICE_KEYS[0]),
    )
    client.tls_set_context(ssl.create_default_context(cafile=info["caFile"]))
    connack: list[int] = []
    client.on_connect = lambda c, u, flags, rc: connack.append(rc)
    client.connect("localhost", info["mqtt"]["port"], keepalive=60)
    client.loop_start()
    wait_for(lambda: connack, 15)
    assert connack == [0], f"CONNACK {connack}"
    return client


def publish_all(client: mqtt.Client, messages: list[tuple[str, str]], timeout: float = 15) -> None:
    """Publish (topic, payload) pairs at QoS 1 and wait until each is acknowledged."""
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout)
        assert info.is_published()


def no_traceback(text: Any) -> bool:
    return "Traceback" not in str(text)
