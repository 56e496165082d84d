"""What every benchmark gets: options, a scratch folder, the brokers' TLS files, progress output."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .servers import AmqttServer, EmulatorServer, MosquittoServer, Server, TlsFiles, mosquitto_binaries


@dataclass
class Options:
    repeat: int = 3
    messages: int = 20_000
    payload_bytes: int = 200
    publishers: int = 10
    connections: int = 500
    memory_devices: int = 1_000
    startup_repeat: int = 5
    connect_repeat: int = 5
    suite_repeat: int = 1
    dps_devices: int = 1_000
    dps_concurrency: int = 20
    # Scale: devices connected and idle; devices publishing `rate_per_device` msg/s for `rate_seconds`.
    idle_devices: int = 10_000
    rate_devices: int = 1_000
    rate_per_device: float = 10.0
    rate_seconds: float = 60.0
    scale_repeat: int = 1
    settle: float = 1.0  # seconds a server gets to settle before memory is read or after connects
    profile: Path | None = None  # py-spy flame graphs of every emulator started
    servers: tuple[str, ...] = ("emulator", "emulator-normal", "mosquitto", "mosquitto-default", "amqtt")


@dataclass
class Context:
    options: Options
    workdir: Path
    tls: TlsFiles = field(init=False)

    def __post_init__(self) -> None:
        self.tls = TlsFiles(self.workdir / "broker-pki")
        self.mosquitto = mosquitto_binaries()

    def wants(self, server: str) -> bool:
        return server in self.options.servers

    def log(self, msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    # Servers by name; each call starts nothing (use as a context manager).
    def emulator(self, durability: str = "full") -> EmulatorServer:
        return EmulatorServer(self.workdir, durability=durability, profile_dir=self.options.profile)

    def mosquitto_server(self, *, nodelay: bool, devices: int) -> MosquittoServer:
        return MosquittoServer(self.workdir, self.tls, nodelay=nodelay, devices=devices)

    def amqtt(self) -> AmqttServer:
        return AmqttServer(self.workdir, self.tls)

    def comparison_servers(self, devices: int, *, default_mosquitto: bool) -> list[Server]:
        out: list[Server] = []
        if self.mosquitto is not None and self.wants("mosquitto"):
            out.append(self.mosquitto_server(nodelay=True, devices=devices))
        if self.mosquitto is not None and default_mosquitto and self.wants("mosquitto-default"):  # Nagle's 40 ms stall: slow
            out.append(self.mosquitto_server(nodelay=False, devices=devices))
        if self.wants("amqtt"):
            out.append(self.amqtt())
        return out
