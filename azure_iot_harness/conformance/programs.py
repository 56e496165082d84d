"""The client variants that are programs (`azure-iot-harness client VARIANT`), run by the checks
as subprocesses with explicit flags made from a target's credentials (host, port or gateway, CA
file, device id, key or certificate): no data folder is consulted, so the same rows run against
the in-process emulator, an external one or real Azure."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import pytest

from ..clients.link import MqttLink
from ..clients.process import Child
from ..clients.tools import find_tool
from ..running.errors import CommandError
from .credentials import DeviceCredentials
from .provisioning import DpsEndpoint, Registrant

# variant → the tool it needs besides Python ("" : none)
NEEDS = {"mosquitto-bridge": "mosquitto", "translator": "", "kepware": "", "node-red": "node-red", "mqtt-cli": "mosquitto-clients",
         "c-device": "paho-c"}
WRONG_KEY = "d3JvbmcgMzIgYnl0ZXMgb2Yga2V5IG1hdGVyaWFsIQ=="


def require_tool(variant: str) -> None:
    """Skip with one reason when the variant's tool is not installed."""
    try:
        if NEEDS[variant] == "mosquitto":
            find_tool("mosquitto", None, "apt-get install mosquitto")
        elif NEEDS[variant] == "mosquitto-clients":
            for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub"):
                find_tool(tool, None, "apt-get install mosquitto mosquitto-clients")
        elif NEEDS[variant] == "node-red":
            from ..clients.node_red import find_node_red

            find_node_red(None)
        elif NEEDS[variant] == "paho-c":
            from ..clients.c_device import build

            build()  # compiled once, then cached
    except CommandError as exc:
        pytest.skip(f"client {variant}: {exc}; bash scripts/install-tools installs it")


def command(variant: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "azure_iot_harness", "client", variant, *flags]


def hub_flags(creds: DeviceCredentials, *, key: str | None = None) -> list[str]:
    """The flags that point a variant at the credentials' hub (or gateway), as a device."""
    flags = ["--host", creds.host, "--device-id", creds.device_id]
    if creds.gateway_host:
        flags += ["--gateway", f"{creds.mqtt_address}:{creds.mqtt_port}"]
    else:
        flags += ["--port", str(creds.mqtt_port)]
    if creds.ca_file:
        flags += ["--ca-file", creds.ca_file]
    if creds.cert_file:
        flags += ["--cert", creds.cert_file, "--cert-key", creds.key_file or ""]
    else:
        flags += ["--sas-key", key or creds.key or ""]
    return flags


def dps_flags(dps: DpsEndpoint, reg: Registrant) -> list[str]:
    flags = ["--dps-host", dps.host, "--dps-port", str(dps.mqtt_port), "--id-scope", dps.id_scope, "--registration-id", reg.registration_id]
    if dps.ca_file:
        flags += ["--ca-file", dps.ca_file]
    if reg.cert_file:
        flags += ["--cert", reg.cert_file, "--cert-key", reg.key_file or ""]
    else:
        flags += ["--sas-key", reg.key or ""]
    return flags


def run(variant: str, *flags: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a variant to its end."""
    require_tool(variant)
    return subprocess.run(command(variant, *flags), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr.strip()[-500:]}"
    return res.stdout


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one `error: …` line of a variant that failed (exit 1)."""
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert res.returncode == 1 and len(errors) == 1, f"exit {res.returncode}, wanted 1 and one error line: {res.stderr.strip()[-500:]}"
    return errors[0]


def connack_code(line: str) -> int | None:
    m = re.search(r"CONNACK (\d+)", line)
    return int(m.group(1)) if m else None


class Running:
    """A long-running variant (bridge, translator) once it printed its ready line; a context manager."""

    def __init__(self, variant: str, *flags: str, ready: str = "ready", timeout: float = 30) -> None:
        require_tool(variant)
        self.variant = variant
        self.child = Child(command(variant, *flags))
        deadline = time.monotonic() + timeout
        for line in self.child.read(deadline):
            if line is None:
                code = self.child.proc.wait()
                raise AssertionError(f"client {variant} exited with code {code} before it was ready: {self.child.tail()}")
            if line.startswith(ready):
                return
        self.child.stop()
        raise AssertionError(f"client {variant} was not ready within {timeout:g} s: {self.child.tail()}")

    @property
    def local_port(self) -> int:
        for line in self.child.seen:
            m = re.search(r"mqtt://127\.0\.0\.1:(\d+)", line)
            if m:
                return int(m.group(1))
        raise AssertionError(f"client {self.variant} named no local port: {self.child.tail()}")

    def wait(self, timeout: float) -> int:
        self.child.proc.wait(timeout)
        return self.child.proc.returncode

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.child.stop()


def publish_local(port: int, topic: str, payload: str) -> None:
    """A brownfield device: plain MQTT 3.1.1 to the local broker, QoS 1, acknowledged."""
    link = MqttLink(address="127.0.0.1", port=port, client_id="", what="the local broker")
    link.connect()
    try:
        mid = link.publish(topic, payload, qos=1)
        assert link.wait_acked([mid], 10), f"the local broker did not acknowledge {topic}"
    finally:
        link.close()
