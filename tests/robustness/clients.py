"""Helpers of the robustness suite: an emulator for a module's tests, and one MQTT attempt over
TLS or WebSocket with any credentials."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from azure_iot_harness.emulator.app import Emulator, EmulatorThread
from tests.helpers import wait_for

TRANSPORTS = ("mqtt", "websocket")


@contextlib.contextmanager
def running(**settings: Any) -> Iterator[EmulatorThread]:
    """An in-memory emulator on ephemeral ports (more settings as keywords), stopped at the end."""
    thread = EmulatorThread(in_memory=True, mqtt_port=0, https_port=0, **settings)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@dataclass(frozen=True)
class Credentials:
    client_id: str
    username: str
    password: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


class Attempt:
    """A paho connection with the given credentials: its CONNACK, and whether it is still open."""

    def __init__(self, emu: Emulator, transport: str, creds: Credentials, *, host: str | None = None, port: int | None = None):
        self.client = mqtt.Client(
            client_id=creds.client_id, clean_session=True, protocol=mqtt.MQTTv311,
            transport="websockets" if transport == "websocket" else "tcp",
        )  # fmt: skip
        if transport == "websocket":
            self.client.ws_set_options(path="/$iothub/websocket")
        self.client.username_pw_set(creds.username, creds.password)
        self.client.tls_set(ca_certs=str(emu.ca_file), certfile=creds.certfile, keyfile=creds.keyfile)
        self.connack: int | None = None
        self.closed = threading.Event()
        self.acked: list[int] = []
        self.client.on_connect = lambda c, u, f, rc: setattr(self, "connack", rc)
        self.client.on_disconnect = lambda c, u, rc: self.closed.set()
        self.client.on_publish = lambda c, u, mid: self.acked.append(mid)
        default_port = emu.https_port if transport == "websocket" else emu.mqtt_port
        try:
            self.client.connect(host or "localhost", port or default_port, keepalive=60)
        except OSError:
            self.closed.set()  # refused at the TLS handshake (a certificate the server rejects)
            return
        self.until(lambda: self.connack is not None or self.closed.is_set())

    def until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Run paho's network loop on this thread until predicate() holds (paho's own thread
        would add up to a second to every close)."""

        def pumped() -> object:
            if not self.closed.is_set():
                self.client.loop(timeout=0.01)
            return predicate()

        wait_for(pumped, timeout, interval=0)

    @property
    def code(self) -> int | None:
        """The CONNACK return code, or None when the server closed without one."""
        return self.connack

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(timeout=0.01)
