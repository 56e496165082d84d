"""What the DPS variants share: the registration's credentials, the answers, the hub afterwards.

Zero-config: the emulator's ID scope and well-known symmetric-key enrollment group (a device's
key is HMAC-SHA256(group key, registration id)) or its X.509 enrollment group (a certificate
from the data folder's device CA with CN = registration id). With --dps-host the emulator is not
consulted: real DPS is `global.azure-devices-provisioning.net`.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import urllib.parse
from dataclasses import dataclass

from .. import __version__
from ..errors import HarnessError
from .common import (
    ClientError,
    HubTarget,
    RunningEmulator,
    WorkDir,
    add_message_arguments,
    check_file,
    device_sas,
    split_host_port,
    tls_context,
)

DPS_API_VERSION = "2019-03-31"  # what the Python SDK and DPS's MQTT docs use
REST_API_VERSION = "2021-06-01"
GLOBAL_HOST = "global.azure-devices-provisioning.net"
DEFAULT_REGISTRATION = "dps-device1"
DEFAULT_X509_REGISTRATION = "dps-x509-device1"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/?$rid={rid}"
POLL_TOPIC = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"
RESPONSE_FILTER = "$dps/registrations/res/#"
_RESPONSE = re.compile(r"^\$dps/registrations/res/(\d+)/\?(.*)$")


@dataclass
class DpsTarget:
    address: str  # where the connection goes (and the TLS name)
    port: int
    ca_file: str | None
    id_scope: str
    registration_id: str
    device_key: str | None = None  # individual key, or derived from the group key
    cert_file: str | None = None
    key_file: str | None = None
    emulator: RunningEmulator | None = None  # zero-config: the hub after assignment is the emulator's

    @property
    def auth(self) -> str:
        return "X.509" if self.cert_file else "SAS"

    def token(self, ttl: int) -> str | None:
        if self.device_key is None:
            return None
        from ..emulator.protocol import sas

        return sas.generate(f"{self.id_scope}/registrations/{self.registration_id}", self.device_key, key_name="registration", ttl=ttl)

    def mqtt_username(self) -> str:
        client = urllib.parse.quote(f"azure-iot-harness/{__version__}", safe="")
        return f"{self.id_scope}/registrations/{self.registration_id}/api-version={DPS_API_VERSION}&ClientVersion={client}"

    def ssl_context(self):
        return tls_context(self.ca_file, self.cert_file, self.key_file)

    def describe(self, scheme: str) -> str:
        return f"{scheme}://{self.address}:{self.port} as registration {self.registration_id} (ID scope {self.id_scope}, {self.auth})"


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
    g.add_argument("--cert", metavar="FILE", help="client certificate (PEM, chain after the leaf)")
    g.add_argument("--cert-key", metavar="FILE", help="its private key (PEM)")
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
    explicit = bool(args.dps_host)
    emu = RunningEmulator(args, "--dps-host, --id-scope (and credentials)")
    x509 = args.x509 or bool(args.cert)
    rid = args.registration_id or (DEFAULT_X509_REGISTRATION if x509 else DEFAULT_REGISTRATION)
    if explicit:
        if not args.id_scope:
            raise ClientError("--dps-host needs --id-scope", 2)
        address, port, ca_file = args.dps_host, args.dps_port or (443 if rest else 8883), args.ca_file
    else:
        info = emu.info
        if "dps" not in info:
            raise ClientError("the running emulator has no Device Provisioning Service (it is older than this client)")
        address = emu.address
        port = args.dps_port or (info["https"]["port"] if rest else info["mqtt"]["port"])
        ca_file = args.ca_file or info["caFile"]
    check_file(ca_file, "--ca-file")
    target = DpsTarget(address, port, ca_file, args.id_scope or (None if explicit else emu.info["dps"]["idScope"]), rid)
    target.emulator = None if explicit else emu
    if args.cert or args.cert_key:
        if not (args.cert and args.cert_key):
            raise ClientError("--cert and --cert-key go together", 2)
        target.cert_file, target.key_file = check_file(args.cert, "--cert"), check_file(args.cert_key, "--cert-key")
    elif x509:
        if explicit:
            raise ClientError("--x509 with --dps-host needs --cert and --cert-key", 2)
        target.cert_file, target.key_file = emu.issue_cert(rid, work.path)
    elif args.sas_key:
        try:
            base64.b64decode(args.sas_key, validate=True)
        except ValueError:
            raise ClientError("--sas-key is not a base64 key", 2) from None
        target.device_key = args.sas_key
    else:
        group_key = args.group_key
        if group_key is None:
            if explicit:
                raise ClientError("give the registration's credentials: --group-key, --sas-key or --cert/--cert-key", 2)
            group_key = well_known_group_key(emu.info)
        from ..emulator.protocol import sas

        try:
            target.device_key = sas.derive_device_key(group_key, rid)
        except HarnessError as exc:  # a key that is not base64
            raise ClientError(f"--group-key: {exc}", 2) from None
    return target


def well_known_group_key(info: dict) -> str:
    for group in info.get("wellKnownIdentities", {}).get("dps", {}).get("enrollmentGroups", []):
        if group.get("attestation") == "symmetricKey" and group.get("primaryKey"):
            return group["primaryKey"]
    raise ClientError("the running emulator publishes no symmetric-key enrollment group: give --group-key or --sas-key", 2)


def registration_body(args: argparse.Namespace, registration_id: str) -> bytes:
    payload = None
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise ClientError(f"--payload is not JSON: {exc}", 2) from None
    return json.dumps({"registrationId": registration_id, "payload": payload}).encode()


def parse_response_topic(topic: str) -> tuple[int, dict[str, str]] | None:
    """(status, query) of `$dps/registrations/res/{status}/?$rid=…[&retry-after=…]`."""
    m = _RESPONSE.match(topic)
    if not m:
        return None
    params = dict(part.partition("=")[::2] for part in m.group(2).split("&") if part)
    return int(m.group(1)), params


def dps_failure(status: int, body: object) -> ClientError:
    """A DPS error answer, naming its status, error code and message."""
    if isinstance(body, dict):
        code, message = body.get("errorCode"), body.get("message") or body.get("Message")
        if code is not None:
            return ClientError(f"DPS answered {status} with error {code}: {message}")
    return ClientError(f"DPS answered {status}: {str(body)[:300]}")


def assignment_result(body: dict) -> dict:
    """The registrationState of a final answer; ClientError when it is not `assigned`."""
    state = body.get("registrationState") or {}
    status = body.get("status") or state.get("status")
    if status == "assigned":
        return state
    if status == "failed":
        raise ClientError(f"DPS could not assign the registration: error {state.get('errorCode')}: {state.get('errorMessage')}")
    raise ClientError(f"DPS answered with status {status!r}: {json.dumps(body)[:300]}")


def print_assignment(state: dict) -> None:
    print(f"assigned to {state.get('assignedHub')} as device {state.get('deviceId')} ({state.get('substatus')})", flush=True)
    print("registrationState " + json.dumps(state), flush=True)


def hub_after_assignment(dps: DpsTarget, state: dict, args: argparse.Namespace) -> HubTarget:
    """The assigned hub with the registration's credentials (the same key or certificate)."""
    host, device_id = state.get("assignedHub"), state.get("deviceId")
    if not host or not device_id:
        raise ClientError(f"the assignment names no hub or device: {json.dumps(state)}")
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


def send_after_assignment(dps: DpsTarget, state: dict, args: argparse.Namespace) -> int:
    if args.then_send < 1:
        return 0
    from .device import send_telemetry

    target = hub_after_assignment(dps, state, args)
    return send_telemetry(target, args.then_send, args)
