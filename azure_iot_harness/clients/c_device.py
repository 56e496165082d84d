"""`client c-device`: the project's own firmware-style C device on Eclipse Paho C.

A single-threaded C program (c_device.c) on Debian's libpaho-mqtt-dev, shaped like the Azure
Embedded C SDK's Paho samples: with --dps (or --dps-host) it registers with DPS first, with an
empty payload; then it connects with `model-id` in the username, subscribes to
`devices/+/messages/devicebound/#`, methods and twin topics, sends telemetry with a property bag
at QoS 1, gets the twin, reports properties (--report-buffer pads them with NUL bytes to a fixed
buffer, as a Plug and Play sample does), prints `ready`, then serves C2D messages, desired
updates and method calls (answered 200 with an echo). SAS or X.509; SAS tokens are signed here,
on request of the device, as a secure element would.

The program is compiled with the system's C compiler on first use (--cc or $CC, else cc) into a
cache folder: `.cache/c-device` of a source checkout, else ~/.cache/azure-iot-harness.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .. import __version__
from ..running.errors import CommandError
from .dps_client import DpsTarget
from .dps_target import resolve_dps
from .hub_target import add_hub_arguments, device_sas, resolve_hub
from .messages import add_message_arguments, is_json, message_body, parse_props
from .process import Child, stop_on_signals
from .workdir import WorkDir

HELP = "a firmware-style C device on Paho C: DPS with an empty payload, model-id, C2D on devices/+/…, twin, methods"
SOURCE = Path(__file__).with_name("c_device.c")
LIBRARY = "libpaho-mqtt3cs"  # Paho C, synchronous client with TLS
INSTALL_HINT = "apt-get install libpaho-mqtt-dev gcc"
EMBEDDED_API_VERSION = "2020-09-30"  # what the Embedded C SDK puts in the username
_CHECKOUT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_hub_arguments(p)
    p.set_defaults(api_version=EMBEDDED_API_VERSION)
    add_message_arguments(p)
    g = p.add_argument_group("provisioning first (DPS)")
    g.add_argument("--dps", action="store_true", help="register with the running emulator's DPS first (its well-known symmetric-key group, or X.509 group with --x509)")
    g.add_argument("--dps-host", metavar="NAME", help="register with this DPS first (global.azure-devices-provisioning.net for Azure); needs --id-scope")
    g.add_argument("--dps-port", type=int, metavar="N", help="DPS's MQTT port (default: the emulator's, or 8883 with --dps-host)")
    g.add_argument("--id-scope", metavar="SCOPE", help="the ID scope (default: the emulator's)")
    g.add_argument("--registration-id", metavar="ID", help="(default: dps-device1, or dps-x509-device1 with --x509)")
    g.add_argument("--group-key", metavar="KEY", help="a symmetric-key enrollment group's key: the device key is derived from it")
    g = p.add_argument_group("the firmware")
    g.add_argument("--model-id", metavar="DTMI", help="the Plug and Play model id announced in the username (model-id=…)")
    g.add_argument("--report", default='{"firmware":"c-device 1.0"}', metavar="JSON", help="the reported properties patch (default: %(default)s; '' for none)")
    g.add_argument("--report-buffer", type=int, default=0, metavar="BYTES", help="publish the patch as the whole fixed-size buffer, NUL-padded (default: 0, the JSON only)")
    g.add_argument("--c2d", type=int, default=0, metavar="N", help="after ready, wait for N cloud-to-device messages")
    g.add_argument("--desired", type=int, default=0, metavar="N", help="after ready, wait for N desired-property updates")
    g.add_argument("--methods", type=int, default=0, metavar="N", help="after ready, wait for N direct-method calls (answered 200)")
    g.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for those (default: 60; short of them is a failure)")
    g.add_argument("--serve", type=float, default=0.0, metavar="S", help="without counts: keep serving C2D, desired updates and methods for S seconds")
    g.add_argument("--cc", metavar="COMPILER", help="the C compiler (default: $CC, else cc)")


def run(args: argparse.Namespace) -> int:
    stop_on_signals()
    if args.count < 0 or min(args.c2d, args.desired, args.methods, args.report_buffer) < 0:
        raise CommandError("--count, --c2d, --desired, --methods and --report-buffer must not be negative", 2)
    props = parse_props(args.prop)
    executable = build(args.cc)
    work = WorkDir(None, "c-device")
    try:
        flags, signer = _flags(args, work)
        for seq in range(1, args.count + 1):
            flags += ["--message", message_body(args.data, seq)]
        if args.count and is_json(message_body(args.data, 1)):
            flags.append("--json")
        for name, value in props.items():
            flags += ["--prop", f"{name}={value}"]
        return _talk(Child([str(executable), *flags], talk=True), signer)
    except KeyboardInterrupt:
        return 0
    finally:
        work.cleanup()


def _talk(child: Child, signer: Signer) -> int:
    """Pass the device's lines on and answer its `token?` requests; its exit code (its own
    `error: …` line went to stderr)."""
    try:
        for line in child.read(None):
            if line is None:
                break
            if line.startswith("token? "):
                assert child.proc.stdin is not None
                child.proc.stdin.write(signer(line.removeprefix("token? ")) + "\n")
                child.proc.stdin.flush()
            else:
                print(line, flush=True)
        return child.proc.wait()
    finally:
        child.stop()


def _flags(args: argparse.Namespace, work: WorkDir) -> tuple[list[str], Signer]:
    """The C program's flags, and what signs the SAS tokens it asks for."""
    common = ["--api-version", args.api_version or EMBEDDED_API_VERSION, "--client-type", f"azure-iot-harness-c/{__version__}",
              "--interval", str(args.interval), "--c2d", str(args.c2d), "--desired", str(args.desired), "--methods", str(args.methods),
              "--wait", str(args.wait), "--serve", str(args.serve), "--report-buffer", str(args.report_buffer)]
    if args.report:
        if not is_json(args.report):
            raise CommandError("--report is not JSON", 2)
        common += ["--report", args.report]
    if args.model_id:
        common += ["--model-id", args.model_id]
    if not (args.dps or args.dps_host):
        target = resolve_hub(args, work)
        flags = ["--host", target.host, "--address", target.address, "--port", str(target.port), "--device-id", target.device_id]
        flags += _tls_flags(target.ca_file, target.cert_file, target.key_file)
        return flags + common, Signer(hub_token=target.password)
    if args.connection_string or args.host or args.device_id:
        raise CommandError("with DPS the hub and the device id come from the assignment: no --host, --connection-string or --device-id", 2)
    if args.sas_token:
        raise CommandError("with DPS, give a key (--sas-key or --group-key): a ready --sas-token cannot sign for DPS", 2)
    dps = resolve_dps(args, work, rest=False)
    flags = ["--id-scope", dps.id_scope, "--dps-address", dps.address, "--dps-port", str(dps.port), "--registration-id", dps.registration_id]
    flags += _tls_flags(dps.ca_file, dps.cert_file, dps.key_file)
    if dps.emulator is not None:  # zero-config: the assigned hub is the emulator, at its address
        flags += ["--address", dps.emulator.address, "--port", str(args.port or dps.emulator.info["mqtt"]["port"])]
    elif args.gateway:
        raise CommandError("--gateway with DPS is not supported by c-device", 2)
    else:
        flags += ["--port", str(args.port or 8883)]
    return flags + common, Signer(dps=dps, ttl=args.ttl)


def _tls_flags(ca_file: str | None, cert: str | None, key: str | None) -> list[str]:
    flags = ["--ca-file", ca_file] if ca_file else []
    return flags + (["--cert", cert, "--key", key or ""] if cert else [])


class Signer:
    """Answers the device's `token? {audience}`: DPS's `{scope}/registrations/{id}` or the hub's
    `{host}/devices/{id}` (with DPS, signed with the registration's key)."""

    def __init__(self, *, hub_token: str | None = None, dps: DpsTarget | None = None, ttl: int = 3600) -> None:
        self.hub_token, self.dps, self.ttl = hub_token, dps, ttl

    def __call__(self, audience: str) -> str:
        if self.dps is not None and audience == f"{self.dps.id_scope}/registrations/{self.dps.registration_id}":
            token = self.dps.token(self.ttl)
        elif self.dps is not None and "/devices/" in audience and self.dps.device_key:
            host, _, device_id = audience.partition("/devices/")
            token = device_sas(host, device_id, self.dps.device_key, self.ttl)
        else:
            token = self.hub_token
        if not token:
            raise CommandError(f"the device asked for a SAS token for {audience}, and there is no key for it")
        return token


# ---- the build ------------------------------------------------------------------------------------


def cache_folder() -> Path:
    """`.cache/c-device` of a source checkout (where Node-RED goes too), else the user's cache."""
    if (_CHECKOUT / "pyproject.toml").is_file() and os.access(_CHECKOUT, os.W_OK):
        return _CHECKOUT / ".cache" / "c-device"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "azure-iot-harness" / "c-device"


def build(cc: str | None = None, folder: Path | None = None) -> Path:
    """The compiled device, built when the source changed (the name carries its hash)."""
    source = SOURCE.read_bytes()
    folder = folder or cache_folder()
    executable = folder / f"c-device-{hashlib.sha256(source).hexdigest()[:16]}"
    if executable.is_file():
        return executable
    compiler = cc or os.environ.get("CC") or "cc"
    if not shutil.which(compiler):
        raise CommandError(f"no C compiler {compiler!r} ({INSTALL_HINT}, or give --cc)", 2)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{executable.name}.{os.getpid()}"  # parallel builds each finish their own
    cmd = [compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE), f"-l{LIBRARY.removeprefix('lib')}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        partial.unlink(missing_ok=True)
        if "MQTTClient.h" in res.stderr or LIBRARY.removeprefix("lib") in res.stderr:
            raise CommandError(f"Paho C is not installed ({INSTALL_HINT})", 2)
        raise CommandError(f"{compiler} could not build {SOURCE.name}: {res.stderr.strip()[-500:]}", 2)
    os.replace(partial, executable)
    return executable
