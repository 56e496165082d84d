"""Which hub a client program connects to, as whom: the hub flags and `HubTarget`.

Zero-config: without `--host`, everything comes from the emulator running with the data folder
(its endpoints file): host, port, CA file and the well-known identities' keys. With `--host`
(or `--connection-string`) the emulator is not consulted and Azure's defaults apply (port 8883,
the system's CA store), so the same programs work against real Azure.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from pathlib import Path

from ..emulator.protocol import sas
from ..errors import ConfigError, HarnessError
from ..running import connection_strings
from ..running.errors import CommandError
from ..running.lookup import RunningEmulator
from .tls import system_ca_file, tls_context
from .workdir import WorkDir

API_VERSION = "2021-04-12"  # the api-version devices put in their MQTT username
DEFAULT_DEVICE = "device1"
DEFAULT_X509_DEVICE = "x509-device1"
DEFAULT_LEAF_DEVICE = "leaf-device1"  # the child of the emulator's edge device


@dataclass
class HubTarget:
    """One device's connection to the hub (or to a gateway in front of it)."""

    host: str  # the hub's host name: username and SAS audience
    address: str  # where the TCP/TLS connection goes: the hub, the emulator's bind address or a gateway
    port: int
    ca_file: str | None  # None: the system's CA store
    device_id: str
    password: str | None = None  # a SAS token
    cert_file: str | None = None
    key_file: str | None = None
    api_version: str | None = API_VERSION
    via_gateway: bool = False

    @property
    def auth(self) -> str:
        return "X.509" if self.cert_file else "SAS"

    @property
    def peer(self) -> str:
        """Who answers the connection, for messages."""
        return "the gateway" if self.via_gateway else "the hub"

    def username(self, api_version: str | None | bool = True) -> str:
        """`{host}/{device}/?api-version=…`; api_version=False gives the bare `{host}/{device}`."""
        version = self.api_version if api_version is True else api_version
        base = f"{self.host}/{self.device_id}"
        return f"{base}/?api-version={version}" if version else base

    def describe(self) -> str:
        via = f" through gateway {self.address}" if self.via_gateway else ""
        return f"mqtts://{self.address}:{self.port}{via} as {self.device_id} (hub {self.host}, {self.auth})"

    def ssl_context(self) -> ssl.SSLContext:
        return tls_context(self.ca_file, self.cert_file, self.key_file)

    def ca_file_for_tools(self) -> str:
        """A CA file for tools that want one (mosquitto): the given one or the system bundle."""
        return self.ca_file or system_ca_file()


def add_hub_arguments(p: argparse.ArgumentParser, *, ttl: int = 3600, default_device: str = DEFAULT_DEVICE) -> None:
    g = p.add_argument_group("the hub (default: the emulator running with --data-dir)")
    g.add_argument("--host", metavar="NAME", help="the hub's host name, e.g. myhub.azure-devices.net; the emulator is then not consulted")
    g.add_argument("--port", type=int, metavar="N", help="MQTT/TLS port (default: the emulator's, or 8883 with --host)")
    g.add_argument("--gateway", metavar="HOST[:PORT]", help="open the TCP/TLS connection to this gateway (IoT Edge) instead; username and SAS keep the hub's host name")
    g.add_argument("--edge", action="store_true", help=f"through the running emulator's edgeHub (serve --edge), as {DEFAULT_LEAF_DEVICE} unless --device-id says otherwise")
    g.add_argument("--ca-file", metavar="FILE", help="CA certificates to trust (default: the emulator's development CA, or the system's with --host)")
    g.add_argument("--connection-string", metavar="CS", help="HostName=…;DeviceId=…;SharedAccessKey=…[;GatewayHostName=…] or …;x509=true")
    g = p.add_argument_group("the device's identity and credentials")
    g.add_argument("--device-id", metavar="ID", help=f"the device id (default: {default_device}, or {DEFAULT_X509_DEVICE} with --x509)")
    g.add_argument("--sas-key", metavar="KEY", help="the device's key (base64); default: looked up in the emulator")
    g.add_argument("--sas-token", metavar="TOKEN", help="a ready SharedAccessSignature token (used as the password)")
    g.add_argument("--x509", action="store_true", help="authenticate with a certificate; without --cert the emulator's device CA issues one with CN = device id")
    add_cert_arguments(g)
    g.add_argument("--api-version", default=API_VERSION, metavar="V", help=f"api-version in the username (default: {API_VERSION})")
    g.add_argument("--ttl", type=int, default=ttl, metavar="SECONDS", help=f"lifetime of the generated SAS token (default: {ttl})")


def device_connection_string(text: str) -> dict[str, str]:
    """The fields of --connection-string: a device's (HostName and DeviceId; no ModuleId)."""
    try:
        fields = connection_strings.parse(text)
    except ConfigError as exc:
        raise CommandError(f"--connection-string: {exc}", 2) from None
    if "HostName" not in fields or "DeviceId" not in fields:
        raise CommandError("--connection-string needs HostName and DeviceId", 2)
    if "ModuleId" in fields:
        raise CommandError("--connection-string: module identities are not supported by the client variants", 2)
    return fields


def resolve_hub(args: argparse.Namespace, work: WorkDir, *, default_device: str = DEFAULT_DEVICE) -> HubTarget:
    """The HubTarget the flags describe, completed from the running emulator where they are silent."""
    cs = device_connection_string(args.connection_string) if args.connection_string else {}
    explicit = bool(args.host or cs)
    emu = RunningEmulator(args.data_dir)
    host = args.host or cs.get("HostName") or emu.info["hubHostName"]
    gateway, gateway_port = split_host_port(args.gateway or cs.get("GatewayHostName"))
    if getattr(args, "edge", False):
        if explicit or gateway:
            raise CommandError("--edge is the running emulator's edgeHub: not with --host, --connection-string or --gateway", 2)
        edge = emu.info.get("edge")
        if not edge:
            raise CommandError("the running emulator has no edgeHub (start it with `azure-iot-harness serve --edge`)")
        gateway, gateway_port = edge["mqtt"]["host"], edge["mqtt"]["port"]
        default_device = DEFAULT_LEAF_DEVICE
    if explicit:
        port = gateway_port or args.port or 8883
        address = gateway or host
        ca_file = args.ca_file
    else:
        port = gateway_port or args.port or emu.info["mqtt"]["port"]
        address = gateway or emu.address
        ca_file = args.ca_file or emu.info["caFile"]
    check_file(ca_file, "--ca-file")
    x509 = args.x509 or bool(args.cert) or cs.get("x509", "").lower() == "true"
    device_id = args.device_id or cs.get("DeviceId") or (DEFAULT_X509_DEVICE if x509 else default_device)
    target = HubTarget(host, address, port, ca_file, device_id, api_version=args.api_version or None, via_gateway=bool(gateway))
    key = args.sas_key or cs.get("SharedAccessKey")
    if args.cert or args.cert_key:
        target.cert_file, target.key_file = cert_flags(args)
    elif x509:
        if explicit:
            raise CommandError("--x509 with --host or --connection-string needs --cert and --cert-key", 2)
        kind = emu.identity(device_id)["authentication"]["type"]
        if kind != "certificateAuthority":
            raise CommandError(f"device {device_id} authenticates with {kind!r}, not certificateAuthority: give --cert and --cert-key", 2)
        target.cert_file, target.key_file = emu.issue_cert(device_id, work.path)
    elif args.sas_token:
        target.password = args.sas_token
    elif key:
        target.password = device_sas(host, device_id, key, args.ttl)
    elif explicit:
        raise CommandError("give the device's credentials: --sas-key, --sas-token or --cert/--cert-key", 2)
    else:
        auth = emu.identity(device_id)["authentication"]
        if auth.get("type") == "sas":
            target.password = device_sas(host, device_id, auth["symmetricKey"]["primaryKey"], args.ttl)
        elif auth.get("type") == "certificateAuthority":
            target.cert_file, target.key_file = emu.issue_cert(device_id, work.path)
        else:
            raise CommandError(f"device {device_id} authenticates with {auth.get('type')!r}: give --cert and --cert-key", 2)
    return target


def split_host_port(value: str | None) -> tuple[str | None, int | None]:
    """`host` or `host:port` (an IPv6 address only in brackets with a port)."""
    if not value:
        return None, None
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and (":" not in host or host.startswith("[")):
        return host.strip("[]"), int(port)
    return value, None


def device_sas(host: str, device_id: str, key: str, ttl: int) -> str:
    try:
        return sas.generate(f"{host}/devices/{device_id}", key, ttl=ttl)
    except HarnessError as exc:
        raise CommandError(f"cannot make a SAS token: {exc}", 2) from None


def add_cert_arguments(g: argparse._ArgumentGroup) -> None:
    """--cert and --cert-key (read by `cert_flags`)."""
    g.add_argument("--cert", metavar="FILE", help="client certificate (PEM, chain after the leaf)")
    g.add_argument("--cert-key", metavar="FILE", help="its private key (PEM)")


def cert_flags(args: argparse.Namespace) -> tuple[str, str]:
    """--cert and --cert-key, which go together, as existing files."""
    if not (args.cert and args.cert_key):
        raise CommandError("--cert and --cert-key go together", 2)
    check_file(args.cert, "--cert")
    check_file(args.cert_key, "--cert-key")
    return args.cert, args.cert_key


def check_file(path: str | None, flag: str) -> None:
    """CommandError(2) when a file named by `flag` is not there; None means not given."""
    if path is not None and not Path(path).is_file():
        raise CommandError(f"{flag}: no file {path}", 2)
