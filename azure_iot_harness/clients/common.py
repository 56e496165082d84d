"""What the client variants share: where the hub is, which credentials to use, clear errors.

Zero-config: without `--host`, everything comes from the emulator running with the data folder
(its `endpoints.json`): host, port, CA file and the well-known identities' keys. With `--host`
(or `--connection-string`) the emulator is not consulted and Azure's defaults apply (port 8883,
the system's CA store), so the same programs work against real Azure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HarnessError

API_VERSION = "2021-04-12"
DEFAULT_DEVICE = "device1"
DEFAULT_X509_DEVICE = "x509-device1"
DEFAULT_LEAF_DEVICE = "leaf-device1"  # the child of the emulator's edge device
JSON_BAG = "$.ct=application%2Fjson&$.ce=utf-8"

CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ClientError(HarnessError):
    """A failure to report as one line, `error: MESSAGE`; the process exits with `code`
    (1: the run failed, 2: usage, configuration or a missing tool)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def connack_text(rc: int) -> str:
    return f"CONNACK {rc} ({CONNACK_CODES.get(rc, 'unknown return code')})"


# ---- the running emulator -------------------------------------------------------------------


class RunningEmulator:
    """The running emulator of a data folder, read lazily: only when a value is not given."""

    def __init__(self, args: argparse.Namespace, other: str = "--host (and credentials)") -> None:
        self._args = args
        self._other = other  # what to give instead, for the error message
        self._info: dict | None = None

    @property
    def info(self) -> dict:
        if self._info is None:
            from ..cli import CliError, load_config, read_endpoints

            try:
                self._info = read_endpoints(load_config(self._args).data_dir)
            except CliError as exc:
                raise ClientError(f"{exc}; or give {self._other} to use another one") from None
        return self._info

    @property
    def address(self) -> str:
        """Where to connect: the bind address, which the server certificate covers."""
        from ..cli import connect_host

        return connect_host(self.info)

    @property
    def data_dir(self) -> Path:
        return Path(self.info["dataDir"])

    def identity(self, device_id: str) -> dict:
        """The registry entry of a device: well-known ones from endpoints.json, others over REST."""
        for dev in self.info.get("wellKnownIdentities", {}).get("devices", []):
            if dev.get("deviceId") == device_id:
                if dev.get("authentication") == "sas":
                    return {"authentication": {"type": "sas", "symmetricKey": dev}}
                return {"authentication": {"type": dev.get("authentication")}}
        from ..cli import CliError, get_identity

        try:
            return get_identity(self.info, device_id, None)
        except CliError as exc:
            raise ClientError(str(exc)) from None

    def issue_cert(self, common_name: str, folder: Path) -> tuple[str, str]:
        """A certificate from the data folder's device CA (trusted for certificateAuthority
        devices and the X.509 enrollment group), written into `folder`."""
        from ..certs import DevPKI

        # The names serve already uses, so that its server certificate is never issued again.
        pki = DevPKI.load_or_create(self.data_dir / "pki", [self.info["hubHostName"], self.info.get("bind") or ""])
        cert, key = pki.issue_device_cert(common_name).write(folder)
        return str(cert), str(key)


# ---- work folders ------------------------------------------------------------------------------


class WorkDir:
    """`--work-dir DIR` (kept), or a temporary folder removed when the program ends."""

    def __init__(self, path: str | None, prefix: str) -> None:
        self._tmp = None if path else tempfile.TemporaryDirectory(prefix=f"azure-iot-harness-{prefix}-")
        self.path = Path(path) if path else Path(self._tmp.name)  # type: ignore[union-attr]
        self.path.mkdir(parents=True, exist_ok=True)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


# ---- the hub connection ------------------------------------------------------------------------


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
    g.add_argument("--cert", metavar="FILE", help="client certificate (PEM, chain after the leaf)")
    g.add_argument("--cert-key", metavar="FILE", help="its private key (PEM)")
    g.add_argument("--api-version", default=API_VERSION, metavar="V", help=f"api-version in the username (default: {API_VERSION})")
    g.add_argument("--ttl", type=int, default=ttl, metavar="SECONDS", help=f"lifetime of the generated SAS token (default: {ttl})")


def parse_connection_string(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.strip().strip(";").split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ClientError(f"--connection-string: {part!r} is not KEY=VALUE", 2)
        fields[key.strip()] = value.strip()
    if "HostName" not in fields or "DeviceId" not in fields:
        raise ClientError("--connection-string needs HostName and DeviceId", 2)
    if "ModuleId" in fields:
        raise ClientError("--connection-string: module identities are not supported by the client variants", 2)
    return fields


def resolve_hub(args: argparse.Namespace, work: WorkDir, *, default_device: str = DEFAULT_DEVICE) -> HubTarget:
    """The HubTarget the flags describe, completed from the running emulator where they are silent."""
    cs = parse_connection_string(args.connection_string) if args.connection_string else {}
    explicit = bool(args.host or cs)
    emu = RunningEmulator(args)
    host = args.host or cs.get("HostName") or emu.info["hubHostName"]
    gateway, gateway_port = split_host_port(args.gateway or cs.get("GatewayHostName"))
    if getattr(args, "edge", False):
        if explicit or gateway:
            raise ClientError("--edge is the running emulator's edgeHub: not with --host, --connection-string or --gateway", 2)
        edge = emu.info.get("edge")
        if not edge:
            raise ClientError("the running emulator has no edgeHub (start it with `azure-iot-harness serve --edge`)")
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
        if not (args.cert and args.cert_key):
            raise ClientError("--cert and --cert-key go together", 2)
        target.cert_file, target.key_file = check_file(args.cert, "--cert"), check_file(args.cert_key, "--cert-key")
    elif x509:
        if explicit:
            raise ClientError("--x509 with --host or --connection-string needs --cert and --cert-key", 2)
        kind = emu.identity(device_id)["authentication"]["type"]
        if kind != "certificateAuthority":
            raise ClientError(f"device {device_id} authenticates with {kind!r}, not certificateAuthority: give --cert and --cert-key", 2)
        target.cert_file, target.key_file = emu.issue_cert(device_id, work.path)
    elif args.sas_token:
        target.password = args.sas_token
    elif key:
        target.password = device_sas(host, device_id, key, args.ttl)
    elif explicit:
        raise ClientError("give the device's credentials: --sas-key, --sas-token or --cert/--cert-key", 2)
    else:
        auth = emu.identity(device_id)["authentication"]
        if auth.get("type") == "sas":
            target.password = device_sas(host, device_id, auth["symmetricKey"]["primaryKey"], args.ttl)
        elif auth.get("type") == "certificateAuthority":
            target.cert_file, target.key_file = emu.issue_cert(device_id, work.path)
        else:
            raise ClientError(f"device {device_id} authenticates with {auth.get('type')!r}: give --cert and --cert-key", 2)
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
    from ..emulator.protocol import sas

    try:
        return sas.generate(f"{host}/devices/{device_id}", key, ttl=ttl)
    except HarnessError as exc:
        raise ClientError(f"cannot make a SAS token: {exc}", 2) from None


def check_file(path: str | None, flag: str) -> Any:
    if path is not None and not Path(path).is_file():
        raise ClientError(f"{flag}: no file {path}", 2)
    return path


# ---- TLS ---------------------------------------------------------------------------------------


def tls_context(ca_file: str | None, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """TLS 1.2 with host name checking, as the Azure SDKs pin it."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(f"cannot load CA file {ca_file}: {exc}", 2) from None
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot load certificate {cert_file} with key {key_file}: {exc}", 2) from None
    return ctx


def system_ca_file() -> str:
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ClientError("no CA file: give --ca-file", 2)


def tls_failure(exc: BaseException, address: str, port: int, ca_file: str | None, what: str = "") -> ClientError:
    """A one-line reason for a failed connection: unreachable, untrusted, or refused by TLS."""
    where = f"{what} at {address}:{port}" if what else f"{address}:{port}"
    trust = f"the CA file {ca_file}" if ca_file else "the system's CA store"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if "mismatch" in reason or "match" in reason:
            return ClientError(f"the certificate of {where} does not cover the name {address}: {reason}")
        return ClientError(f"TLS: the certificate of {where} is not trusted by {trust} ({reason}); wrong --ca-file?")
    if isinstance(exc, ssl.SSLError):
        return ClientError(f"TLS handshake with {where} failed: {exc.reason or exc}")
    if isinstance(exc, socket.gaierror):
        return ClientError(f"cannot resolve {address}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return ClientError(f"cannot reach {where}: connection refused (is it running, on that port?)")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ClientError(f"cannot reach {where}: timed out")
    if isinstance(exc, OSError):
        return ClientError(f"cannot reach {where}: {exc.strerror or exc}")
    return ClientError(f"connection to {where} failed: {exc}")


# ---- messages ----------------------------------------------------------------------------------


def add_message_arguments(p: argparse.ArgumentParser, *, count: int | None = 3, interval: float = 1.0) -> None:
    """--count (unless None), --interval, --data, --prop."""
    g = p.add_argument_group("telemetry")
    if count is not None:
        g.add_argument("--count", type=int, default=count, metavar="N", help=f"messages to send (default: {count})")
    g.add_argument("--interval", type=float, default=interval, metavar="S", help=f"seconds between messages (default: {interval:g})")
    g.add_argument("--data", metavar="TEXT", help='the body; {seq} is replaced by the message number (default: {"temperature": …, "seq": N})')
    g.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE", help="an application property (repeatable)")


def parse_props(items: list[str]) -> dict[str, str]:
    props: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ClientError(f"--prop wants KEY=VALUE, not {item!r}", 2)
        props[key] = value
    return props


def message_body(template: str | None, seq: int) -> str:
    if template is None:
        return json.dumps({"temperature": round(20 + (seq % 10) * 0.5, 1), "seq": seq})
    return template.replace("{seq}", str(seq))


def is_json(body: str | bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def property_bag(props: dict[str, str], *, json_body: bool = False) -> str:
    """An IoT Hub property bag: every name and value percent-encoded, system properties first."""
    parts = [JSON_BAG] if json_body else []
    parts += [f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in props.items()]
    return "&".join(parts)


def telemetry_topic(device_id: str, bag: str = "") -> str:
    return f"devices/{device_id}/messages/events/{bag}"


# ---- external tools ----------------------------------------------------------------------------


def find_tool(name: str, flag_value: str | None, install_hint: str) -> str:
    """The path of an executable: the flag's, or the one on PATH; ClientError(2) when missing."""
    if flag_value:
        if Path(flag_value).is_file() and os.access(flag_value, os.X_OK):
            return flag_value
        found = shutil.which(flag_value)
        if found:
            return found
        raise ClientError(f"{flag_value} is not an executable ({install_hint})", 2)
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None)
    if not found:
        raise ClientError(f"{name} is not installed ({install_hint})", 2)
    return found


def wait_listening(bind: str, port: int, timeout: float = 10.0) -> bool:
    """Whether something accepts TCP on bind:port within the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((bind, port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def free_port(bind: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (tools such as mosquitto cannot pick one themselves)."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


def probe_tls(
    address: str, port: int, ca_file: str | None, cert_file: str | None = None, key_file: str | None = None, what: str = ""
) -> ClientError | None:
    """Why a tool could not connect, found by doing its TCP and TLS steps ourselves; None when
    both work (then the MQTT step is what failed)."""
    ctx = tls_context(ca_file, cert_file, key_file)
    try:
        with socket.create_connection((address, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=address):
                pass
    except (OSError, ssl.SSLError) as exc:
        return tls_failure(exc, address, port, ca_file, what)
    return None
