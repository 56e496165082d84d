"""Which DPS a provisioning program registers with, as whom, and the hub it is sent to: the DPS
flags, their `DpsTarget`, and the assigned hub with the registration's credentials.

Zero-config: the emulator's ID scope and well-known symmetric-key enrollment group (a device's
key is HMAC-SHA256(group key, registration id)) or its X.509 enrollment group (a certificate
from the data folder's device CA with CN = registration id). With --dps-host the emulator is not
consulted: real DPS is `global.azure-devices-provisioning.net`.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

from ..emulator.protocol import sas
from ..errors import HarnessError
from ..running.errors import CommandError
from ..running.lookup import RunningEmulator
from .device import send_telemetry
from .dps_client import GLOBAL_HOST, DpsTarget, register_mqtt, register_rest, registration_body
from .hub_target import HubTarget, add_cert_arguments, cert_flags, check_file, device_sas, split_host_port
from .messages import add_message_arguments
from .workdir import WorkDir

DEFAULT_REGISTRATION = "dps-device1"
DEFAULT_X509_REGISTRATION = "dps-x509-device1"


def add_dps_arguments(p: argparse.ArgumentParser, *, default_port: int) -> None:
    g = p.add_argument_group("the Device Provisioning Service (default: the emulator running with --data-dir)")
    g.add_argument("--dps-host", metavar="NAME", help=f"DPS's host name ({GLOBAL_HOST} for Azure); the emulator is then not consulted")
    g.add_argument("--dps-port", type=int, metavar="N", help=f"DPS's port (default: the emulator's, or {default_port} with --dps-host)")
    g.add_argument("--id-scope", metavar="SCOPE", help="the ID scope (default: the emulator's)")
    g.add_argument("--ca-file", metavar="FILE", help="CA certificates to trust (default: the emulator's development CA, or the system's with --dps-host)")
    g = p.add_argument_group("the registration's credentials")
    g.add_argument("--registration-id", metavar="ID", help=f"(default: {DEFAULT_REGISTRATION}, or {DEFAULT_X509_REGISTRATION} with --x509)")
    g.add_argument("--group-key", metavar="KEY", help="a symmetric-key enrollment group's key: the device key is derived from it (default: the emulator's well-known group)")
    g.add_argument("--sas-key", metavar="KEY", help="an individual enrollment's key, or a device key already derived")
    g.add_argument("--x509", action="store_true", help="attest with a certificate; without --cert the emulator's device CA issues one with CN = registration id (its X.509 enrollment group trusts it)")
    add_cert_arguments(g)
    g.add_argument("--payload", metavar="JSON", help="the registration's payload (custom allocation data)")
    g.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="lifetime of the generated SAS tokens (default: 3600)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds for the whole registration (default: 60)")
    g = p.add_argument_group("then, on the assigned hub")
    g.add_argument("--then-send", type=int, default=0, metavar="N", help="connect to the assigned hub and send N telemetry messages (default: 0)")
    g.add_argument("--hub-port", type=int, metavar="N", help="the assigned hub's MQTT port (default: the emulator's, or 8883)")
    g.add_argument("--gateway", metavar="HOST[:PORT]", help="reach the assigned hub through this gateway (IoT Edge)")
    g.add_argument("--ack-timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the last PUBACK (default: 30)")
    add_message_arguments(p, count=None)


def resolve_dps(args: argparse.Namespace, work: WorkDir, *, rest: bool) -> DpsTarget:
    """The DpsTarget the flags describe, completed from the running emulator where they are silent."""
    explicit = bool(args.dps_host)
    emu = RunningEmulator(args.data_dir, "--dps-host, --id-scope (and credentials)")
    x509 = args.x509 or bool(args.cert)
    rid = args.registration_id or (DEFAULT_X509_REGISTRATION if x509 else DEFAULT_REGISTRATION)
    if explicit:
        if not args.id_scope:
            raise CommandError("--dps-host needs --id-scope", 2)
        address, port, ca_file = args.dps_host, args.dps_port or (443 if rest else 8883), args.ca_file
    else:
        info = emu.info
        if "dps" not in info:
            raise CommandError("the running emulator has no Device Provisioning Service (it is older than this client)")
        address = emu.address
        port = args.dps_port or (info["https"]["port"] if rest else info["mqtt"]["port"])
        ca_file = args.ca_file or info["caFile"]
    check_file(ca_file, "--ca-file")
    target = DpsTarget(address, port, ca_file, args.id_scope or emu.info["dps"]["idScope"], rid)
    target.emulator = None if explicit else emu
    if args.cert or args.cert_key:
        target.cert_file, target.key_file = cert_flags(args)
    elif x509:
        if explicit:
            raise CommandError("--x509 with --dps-host needs --cert and --cert-key", 2)
        target.cert_file, target.key_file = emu.issue_cert(rid, work.path)
    elif args.sas_key:
        try:
            base64.b64decode(args.sas_key, validate=True)
        except ValueError:
            raise CommandError("--sas-key is not a base64 key", 2) from None
        target.device_key = args.sas_key
    else:
        group_key = args.group_key
        if group_key is None:
            if explicit:
                raise CommandError("give the registration's credentials: --group-key, --sas-key or --cert/--cert-key", 2)
            group_key = well_known_group_key(emu.info)
        try:
            target.device_key = sas.derive_device_key(group_key, rid)
        except HarnessError as exc:  # a key that is not base64
            raise CommandError(f"--group-key: {exc}", 2) from None
    return target


def well_known_group_key(info: dict[str, Any]) -> str:
    for group in info.get("wellKnownIdentities", {}).get("dps", {}).get("enrollmentGroups", []):
        if group.get("attestation") == "symmetricKey" and group.get("primaryKey"):
            return str(group["primaryKey"])
    raise CommandError("the running emulator publishes no symmetric-key enrollment group: give --group-key or --sas-key", 2)


def request_body(args: argparse.Namespace, registration_id: str) -> bytes:
    """The register request, with --payload when given."""
    payload = None
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise CommandError(f"--payload is not JSON: {exc}", 2) from None
    return registration_body(registration_id, payload)


def provision(args: argparse.Namespace, *, rest: bool, name: str) -> int:
    """A DPS variant's run: register over REST or MQTT, printing each step and the assignment,
    then `--then-send`; the exit code."""
    work = WorkDir(None, name)
    try:
        dps = resolve_dps(args, work, rest=rest)
        register = register_rest if rest else register_mqtt
        state = register(dps, request_body(args, dps.registration_id), timeout=args.timeout, ttl=args.ttl, log=print_step)
        print_assignment(state)
        return send_after_assignment(dps, state, args)
    finally:
        work.cleanup()


def print_step(line: str) -> None:
    print(line, flush=True)


def print_assignment(state: dict[str, Any]) -> None:
    print(f"assigned to {state.get('assignedHub')} as device {state.get('deviceId')} ({state.get('substatus')})", flush=True)
    print("registrationState " + json.dumps(state), flush=True)


def hub_after_assignment(dps: DpsTarget, state: dict[str, Any], args: argparse.Namespace) -> HubTarget:
    """The assigned hub with the registration's credentials (the same key or certificate)."""
    host, device_id = state.get("assignedHub"), state.get("deviceId")
    if not host or not device_id:
        raise CommandError(f"the assignment names no hub or device: {json.dumps(state)}")
    if dps.emulator is not None:
        address, port = dps.emulator.address, args.hub_port or dps.emulator.info["mqtt"]["port"]
    else:
        address, port = host, args.hub_port or 8883
    gateway, gateway_port = split_host_port(args.gateway)
    target = HubTarget(host, gateway or address, gateway_port or port, dps.ca_file, device_id, via_gateway=bool(gateway))
    if dps.cert_file:
        target.cert_file, target.key_file = dps.cert_file, dps.key_file
    else:
        assert dps.device_key is not None
        target.password = device_sas(host, device_id, dps.device_key, args.ttl)
    return target


def send_after_assignment(dps: DpsTarget, state: dict[str, Any], args: argparse.Namespace) -> int:
    """`--then-send N`: N telemetry messages on the assigned hub; the program's exit code."""
    if args.then_send < 1:
        return 0
    return send_telemetry(hub_after_assignment(dps, state, args), args.then_send, args)

