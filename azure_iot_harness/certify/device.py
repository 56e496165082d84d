"""The device under test: its identity (made by certify), what it is told (environment variables
and files), and how it runs — a program certify starts with `--run` and may restart, or an
external device (a board on the LAN) that certify only waits for.

The environment of a `--run` program (also written to `device.env` in the work folder, for
external devices):

| Variable | Value |
|---|---|
| `AZURE_IOT_CERTIFY_CONNECTION_STRING` | the device connection string (`…;SharedAccessKey=…` or `…;x509=true`) |
| `AZURE_IOT_CERTIFY_HOST` | the hub host name (username, SAS audience, TLS server name) |
| `AZURE_IOT_CERTIFY_ADDRESS` | where to open the TCP connection (the emulator's address; the gateway's in the edge profile) |
| `AZURE_IOT_CERTIFY_PORT` | the MQTT/TLS port (the gateway's in the edge profile) |
| `AZURE_IOT_CERTIFY_GATEWAY_HOST` | edge profile only: the gateway's host name (`GatewayHostName`: TCP, TLS server name); the username and SAS audience keep the hub's host |
| `AZURE_IOT_CERTIFY_DEVICE_ID` | the device id (with `--module-id`: the edge device's) |
| `AZURE_IOT_CERTIFY_MODULE_ID` | with `--module-id` only: the module under test, a module of the edge device |
| `AZURE_IOT_CERTIFY_AUTH` | `sas` or `x509` |
| `AZURE_IOT_CERTIFY_DEVICE_KEY` | the symmetric key (SAS) |
| `AZURE_IOT_CERTIFY_CERT_FILE`, `…_KEY_FILE`, `…_CHAIN_FILE` | the device certificate, its key, the issuing CA (X.509) |
| `AZURE_IOT_CERTIFY_CA_FILE` | the roots to trust, and only these: the development root and its rotated successor |
| `AZURE_IOT_CERTIFY_PROVISIONING` | `dps` or `none` |
| `AZURE_IOT_CERTIFY_DPS_HOST`, `…_ID_SCOPE`, `…_REGISTRATION_ID` | DPS's global endpoint, ID scope and the registration id (`dps`) |
| `AZURE_IOT_CERTIFY_METHODS` | the direct methods the device is expected to answer, comma-separated |
| `AZURE_IOT_CERTIFY_TELEMETRY_INTERVAL` | seconds between telemetry messages the run expects at most |
| `AZURE_IOT_CERTIFY_WORK_DIR` | the run's work folder (the files above live there) |

The names the Azure SDK samples read are set too: `IOTHUB_DEVICE_CONNECTION_STRING`,
`PROVISIONING_HOST`, `PROVISIONING_IDSCOPE`, `PROVISIONING_REGISTRATION_ID`,
`PROVISIONING_SYMMETRIC_KEY`, `X509_CERT_FILE`, `X509_KEY_FILE`.
"""

from __future__ import annotations

import abc
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..running import connection_strings
from .lab import Lab

ENV_PREFIX = "AZURE_IOT_CERTIFY_"


@dataclass
class DeviceIdentity:
    device_id: str
    auth: str  # sas | x509
    provisioning: str  # dps | none
    key: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    chain_file: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    module_id: str | None = None  # a module of the edge device `device_id` (the edge profile)


def create_identity(lab: Lab, device_id: str, *, auth: str, provisioning: str, work: Path, methods: list[str],
                    telemetry_interval: float, gateway: bool = False, module_id: str | None = None) -> DeviceIdentity:
    """The device's identity in the emulator (or its DPS enrollment), its files in `work`, and
    the environment that tells a device program all of it. `gateway`: the device is a child of
    the emulator's edge device and is told to connect through the edge gateway; `module_id`: the
    device under test is that module of the edge device `device_id` (SAS), through the gateway."""
    work.mkdir(parents=True, exist_ok=True)
    ca = work / "ca.pem"
    shutil.copyfile(lab.device_ca_file, ca)
    ident = DeviceIdentity(device_id, auth, provisioning, module_id=module_id)
    parent = lab.edge_scope() if gateway and not module_id else None
    if auth == "x509":
        ident.cert_file, ident.key_file, ident.chain_file = lab.issue_device_cert(device_id, work)
    if provisioning == "dps":
        lab.delete_device(device_id)  # DPS creates it at registration
        if auth == "x509":
            assert ident.cert_file is not None
            lab.create_enrollment(device_id, certificate_pem=ident.cert_file.read_text())
        else:
            import base64

            ident.key = base64.b64encode(os.urandom(32)).decode()
            lab.create_enrollment(device_id, key=ident.key)
    elif module_id:
        ident.key = lab.create_sas_module(device_id, module_id)
    elif auth == "x509":
        lab.create_ca_device(device_id, parent_scope=parent)
    else:
        ident.key = lab.create_sas_device(device_id, parent_scope=parent)
    edge = lab.edge if gateway else None
    gateway_host = str(edge["host"]) if edge else None
    cs = connection_strings.device_string(lab.hub_host, device_id, module_id=module_id, key=ident.key, gateway=gateway_host)
    env = {
        "CONNECTION_STRING": cs,
        "HOST": lab.hub_host,
        "ADDRESS": lab.address,
        "PORT": str(lab.mqtt_port),
        "DEVICE_ID": device_id,
        "AUTH": auth,
        "CA_FILE": str(ca),
        "PROVISIONING": provisioning,
        "METHODS": ",".join(methods),
        "TELEMETRY_INTERVAL": f"{telemetry_interval:g}",
        "WORK_DIR": str(work),
    }
    if module_id:
        env["MODULE_ID"] = module_id
    if edge:  # through the gateway: TCP and TLS to it, the hub's host name in the username and token
        env.update(ADDRESS=str(edge["host"]), PORT=str(edge["mqtt"]["port"]), GATEWAY_HOST=str(edge["host"]))
    if ident.key:
        env["DEVICE_KEY"] = ident.key
    if ident.cert_file:
        env.update(CERT_FILE=str(ident.cert_file), KEY_FILE=str(ident.key_file), CHAIN_FILE=str(ident.chain_file))
    if provisioning == "dps":
        env.update(DPS_HOST=lab.info["dps"]["host"], ID_SCOPE=lab.id_scope, REGISTRATION_ID=device_id)
    ident.env = {ENV_PREFIX + k: v for k, v in env.items()}
    # The names the Azure SDKs' samples read.
    samples = {"IOTHUB_DEVICE_CONNECTION_STRING": cs}
    if provisioning == "dps":
        samples.update(PROVISIONING_HOST=lab.info["dps"]["host"], PROVISIONING_IDSCOPE=lab.id_scope,
                       PROVISIONING_REGISTRATION_ID=device_id)
        if ident.key:
            samples["PROVISIONING_SYMMETRIC_KEY"] = ident.key
    if ident.cert_file:
        samples.update(X509_CERT_FILE=str(ident.cert_file), X509_KEY_FILE=str(ident.key_file))
    ident.env.update(samples)
    (work / "device.env").write_text("".join(f"{k}={v}\n" for k, v in sorted(ident.env.items())))
    return ident


class DeviceUnderTest(abc.ABC):
    """The device: `start()`, `restart()` (where a check needs it), `stop()`."""

    external = False

    def __init__(self, identity: DeviceIdentity) -> None:
        self.identity = identity

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def restart(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def output_tail(self, lines: int = 20) -> list[str]:
        return []


class DeviceProgram(DeviceUnderTest):
    """A program certify starts (`--run "COMMAND"`, run by the shell) with the device's
    environment; its output goes to `device.log` in the work folder."""

    def __init__(self, identity: DeviceIdentity, command: str, work: Path, log: Callable[[str], None]) -> None:
        super().__init__(identity)
        self.command = command
        self.log_file = work / "device.log"
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, **self.identity.env, "PYTHONUNBUFFERED": "1"}
        out = open(self.log_file, "ab")  # noqa: SIM115 -- handed to the child, closed below
        try:
            self.starts += 1
            out.write(f"---- start {self.starts}: {self.command}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command, shell=True, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends the shell and what it started
            )
        finally:
            out.close()
        self._log(f"device program started (pid {self.proc.pid}): {self.command}")

    def stop(self) -> None:
        """SIGTERM to the program's process group (the shell and what it started), SIGKILL to
        whatever of it is left after a grace period."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        group = proc.pid  # start_new_session: the shell leads its own group
        if not _signal_group(group, signal.SIGTERM):
            proc.wait()
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _signal_group(group, 0):
            proc.poll()  # reap the shell, so that it does not count as alive
            time.sleep(0.05)
        _signal_group(group, signal.SIGKILL)
        proc.wait()

    def restart(self) -> None:
        self._log("restarting the device program")
        self.stop()
        self.start()

    @property
    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def output_tail(self, lines: int = 20) -> list[str]:
        try:
            return self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


class ExternalDevice(DeviceUnderTest):
    """A device certify does not start: it prints what to configure, then waits for it."""

    external = True

    def __init__(self, identity: DeviceIdentity, say: Callable[[str], None]) -> None:
        super().__init__(identity)
        self._say = say

    def start(self) -> None:
        self._say("configure the device with these settings (also in device.env), then start it:")
        for key, value in sorted(self.identity.env.items()):
            if key.startswith(ENV_PREFIX):
                self._say(f"  {key[len(ENV_PREFIX):].lower():<20} {value}")

    def restart(self) -> None:
        self._say("restart the device now (power-cycle or reset it): this check needs a fresh start")

    def stop(self) -> None:
        pass


def _signal_group(group: int, sig: int) -> bool:
    """Signal a process group; False when none of it is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left
        return False
    return True


def python_command(*args: str) -> str:
    """A --run command for a Python program with this interpreter (tests, the reference devices)."""
    import shlex

    return " ".join(shlex.quote(a) for a in (sys.executable, *args))
