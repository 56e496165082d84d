"""The `azure-iot-harness` command line.

`serve` runs the emulator in the foreground. Every other verb finds a running emulator through
the endpoints file (`endpoints.json`) that `serve` writes into its data folder, so `--data-dir`
is the one thing they share. The verbs and their output are a contract (DESIGN.md): scripts
parse them, so change them only by adding.

Exit codes: 0 success; 1 the thing asked about is not there (no running emulator, unknown
device, too few messages); 2 usage or configuration errors, including features the emulator
does not support yet; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .clients.messages import parse_props
from .config import Config
from .errors import ConfigError, HarnessError
from .running import connection_strings
from .running.endpoints import connect_host, read_endpoints
from .running.errors import CommandError
from .running.service import emulator_api, get_identity, https_connection, send_c2d, service_token, unreachable

log = logging.getLogger("azure_iot_harness.cli")


def load_config(args: argparse.Namespace, defaults: dict[str, Any] | None = None, **flags: Any) -> Config:
    """The Config of file/env/flags; verbs other than serve pass only --data-dir."""
    return Config.load(file=getattr(args, "config", None), flags={"data_dir": args.data_dir, **flags}, defaults=defaults)


# ---- serve ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = load_config(
        args,
        {"explorer": True},  # serve shows the explorer page unless told not to
        explorer=args.explorer,
        explorer_bind=args.explorer_bind,
        explorer_port=args.explorer_port,
        edge=args.edge or None,
        edge_bind=args.edge_bind,
        edge_host=args.edge_host,
        edge_mqtt_port=args.edge_mqtt_port,
        edge_routes=args.edge_routes,
        edge_ca_cert=args.edge_ca_cert,
        edge_ca_key=args.edge_ca_key,
        host=args.host,
        host_names=args.host_name,
        bind=args.bind,
        mqtt_port=args.mqtt_port,
        https_port=args.https_port,
        in_memory=args.in_memory,
        log_level=args.log_level,
    )
    level = logging.getLevelName(cfg.log_level.upper())
    if not isinstance(level, int):
        raise ConfigError(f"log_level must be one of debug, info, warning, error, critical, not {cfg.log_level!r}")
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if not cfg.in_memory:
        refuse_second_emulator(cfg.data_dir)
    from .emulator.loops import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(cfg.event_loop)) as runner:
        runner.run(serve(cfg))
    return 0


def refuse_second_emulator(data_dir: Path) -> None:
    """Two emulators on one data folder would share (and fight over) one store."""
    try:
        info = read_endpoints(data_dir)
    except CommandError:
        return  # none, or a stale file that the new emulator overwrites
    try:  # a live pid could be a reused one: the HTTPS port must answer too
        socket.create_connection((connect_host(info), info["https"]["port"]), timeout=2).close()
    except OSError:
        return
    raise CommandError(f"an emulator (pid {info['pid']}) is already running with data folder {data_dir}", 2)


async def serve(cfg: Config) -> None:
    from .emulator.app import Emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
            pass
    emu = Emulator(cfg)
    await emu.start()
    try:
        info = emu.info()
        print_banner(info, cfg)
        await wait_https_answers(info)
        print(f"ready mqtts://{info['mqtt']['host']}:{info['mqtt']['port']} https://{info['https']['host']}:{info['https']['port']}", flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        await emu.stop()


def print_banner(info: dict, cfg: Config) -> None:
    rows = [
        ("data folder", info["dataDir"] or "(in memory: nothing is kept, `info` cannot find this emulator)"),
        ("hub host name", info["hubHostName"]),
        ("MQTT", f"mqtts://{info['mqtt']['host']}:{info['mqtt']['port']}  (bound to {cfg.bind})"),
        ("HTTPS", f"{info['https']['url']}  (port {info['https']['port']}, bound to {cfg.bind})"),
        ("CA file", info["caFile"]),
    ]
    if info.get("eventHub"):
        rows.append(("AMQP", f"amqps://{info['amqp']['host']}:{info['amqp']['port']}  (plain TCP {info['amqp']['plainPort']})"))
        rows.append(("Event Hub", f"{info['eventHub']['name']}  ({len(info['eventHub']['partitions'])} partitions)"))
    if "dps" in info:
        rows.insert(4, ("DPS ID scope", f"{info['dps']['idScope']}  (DPS host {info['dps']['host']}, same ports)"))
    if info.get("edge"):
        edge = info["edge"]
        rows.insert(5, ("edgeHub", f"mqtts://{edge['mqtt']['host']}:{edge['mqtt']['port']}  (edge device {edge['deviceId']}, GatewayHostName={edge['host']})"))
        rows.insert(6, ("edge routes", "; ".join(f"{k}: {v}" for k, v in edge["routes"]["routes"].items()) or "none"))
    if info.get("explorer"):
        explorer = info["explorer"]
        sign_in = "  (asks for the iothubowner connection string)" if explorer["signIn"] else ""
        rows.append(("explorer", f"{explorer['url']}{sign_in}"))
    out = [f"azure-iot-harness {__version__}: IoT Hub emulator, pid {info['pid']}"]
    out += [f"  {name + ':':<16}{value}" for name, value in rows]
    out.append("connection strings:")
    out += [f"  {name + ':':<16}{value}" for name, value in info["connectionStrings"].items()]
    if info.get("eventHub"):
        out.append(f"  {'eventHub:':<16}{info['eventHub']['connectionString']}")
        out.append(f"  {'eventHubLocal:':<16}{info['eventHub']['emulatorConnectionString']}")
    print("\n".join(out), flush=True)


async def wait_https_answers(info: dict, timeout: float = 10.0) -> None:
    """Hypercorn serves from a task of its own: "ready" waits until it answers a request."""
    ctx = ssl.create_default_context(cafile=info["caFile"])
    host, port = connect_host(info), info["https"]["port"]
    request = f"GET /_emulator/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 5)
            try:
                writer.write(request)
                status = await asyncio.wait_for(reader.readline(), 5)
            finally:
                writer.close()
            if status.split(b" ")[1:2] == [b"200"]:
                return
            problem: object = status
        except (TimeoutError, OSError) as exc:
            problem = exc
        if time.monotonic() > deadline:
            raise HarnessError(f"the HTTPS endpoint does not answer: {problem!r}")
        await asyncio.sleep(0.05)


# ---- info, ca, sas-token ----------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(read_endpoints(load_config(args).data_dir), indent=2))
    return 0


def cmd_explorer(args: argparse.Namespace) -> int:
    explorer = read_endpoints(load_config(args).data_dir).get("explorer")
    if not explorer:
        raise CommandError("the running emulator shows no explorer page (serve --no-explorer)")
    print(explorer["url"])
    if args.open:
        import webbrowser

        webbrowser.open(explorer["url"])
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    if getattr(args, "ca_verb", None):
        return cmd_ca_verb(args)
    cfg = load_config(args)
    path = cfg.data_dir / "pki" / "ca.pem"
    if not path.exists():  # before the first serve: create the PKI serve will then load
        from .certs import DevPKI

        DevPKI.load_or_create(cfg.data_dir / "pki", [cfg.host, cfg.bind, *cfg.host_names])
    sys.stdout.write(path.read_text())
    return 0


def add_ca_verbs(parser: argparse.ArgumentParser, data: argparse.ArgumentParser) -> None:
    """`ca upload|verification-code|verify|list|delete`: the CA certificates of the running
    emulator's hub (or, with --dps, its DPS), through the management plane's routes."""
    ca_verbs = parser.add_subparsers(dest="ca_verb", required=False, metavar="VERB")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dps", action="store_true", help="the Device Provisioning Service's certificates, not the hub's")
    p = ca_verbs.add_parser("upload", parents=[data, where], help="upload a CA certificate (unverified unless --verified)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE", help="the CA certificate, PEM")
    p.add_argument("--verified", action="store_true", help="verified on upload (no proof of possession)")
    p = ca_verbs.add_parser("verification-code", parents=[data, where], help="print a new verification code for proof of possession")
    p.add_argument("name", metavar="NAME")
    p = ca_verbs.add_parser("verify", parents=[data, where], help="verify a CA with a certificate it signed whose CN is the code")
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="CERT_FILE", help="the verification certificate, PEM")
    ca_verbs.add_parser("list", parents=[data, where], help="list the CA certificates as JSON")
    p = ca_verbs.add_parser("delete", parents=[data, where], help="delete a CA certificate")
    p.add_argument("name", metavar="NAME")


def cmd_ca_verb(args: argparse.Namespace) -> int:
    from .running.certificates import CaCertificatesApi, show

    api = CaCertificatesApi(read_endpoints(load_config(args).data_dir), dps=args.dps)

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None

    if args.ca_verb == "upload":
        print(show(api.upload(args.name, read(args.file), verified=args.verified)))
    elif args.ca_verb == "verification-code":
        print(api.verification_code(args.name))
    elif args.ca_verb == "verify":
        print(show(api.verify(args.name, read(args.file))))
    elif args.ca_verb == "list":
        print(show({"value": api.list()}))
    else:
        api.delete(args.name)
        print(f"deleted {args.name}")
    return 0


def cmd_sas_token(args: argparse.Namespace) -> int:
    from .emulator.protocol import sas

    print(sas.generate(args.uri, args.key, key_name=args.policy, ttl=args.ttl))
    return 0


# ---- connection-string -------------------------------------------------------------------------


def cmd_connection_string(args: argparse.Namespace) -> int:
    if args.policy is not None and not args.service:
        raise CommandError("--policy goes with --service only", 2)
    if args.emulator and not args.eventhub:
        raise CommandError("--emulator goes with --eventhub only", 2)
    device, module = args.device or args.edge_device, None
    if args.module is not None:
        device, sep, module = args.module.partition("/")
        if not sep or not device or not module or "/" in module:
            raise CommandError(f"--module wants DEVICE/MODULE, not {args.module!r}", 2)
    info = read_endpoints(load_config(args).data_dir)
    if args.dps_service:
        print(connection_strings.dps_service_string(info))
        return 0
    if args.service:
        print(connection_strings.service_string(info, args.policy or "iothubowner"))
        return 0
    if args.eventhub:
        hub = info.get("eventHub")
        if not hub:
            raise CommandError("the running emulator has no Event Hubs-compatible endpoint (an older version?)")
        print(hub["emulatorConnectionString"] if args.emulator else hub["connectionString"])
        return 0
    if args.edge_device is not None and not (get_identity(info, device, None).get("capabilities") or {}).get("iotEdge"):
        raise CommandError(f"{device} is not an IoT Edge device (capabilities.iotEdge is false)")
    print(rest_connection_string(info, device, module))
    return 0


def rest_connection_string(info: dict, device: str, module: str | None) -> str:
    """Ask the running emulator's identity registry (IoT Hub's service REST API)."""
    doc = get_identity(info, device, module)
    auth = doc.get("authentication") or {}
    kind = auth.get("type")
    if kind == "sas":
        return connection_strings.device_string(info["hubHostName"], device, module_id=module, key=auth["symmetricKey"]["primaryKey"])
    if kind in ("selfSigned", "certificateAuthority"):
        return connection_strings.device_string(info["hubHostName"], device, module_id=module)
    raise CommandError(f"{device}{'/' + module if module else ''} has authentication type {kind!r}: no connection string")


# ---- trust -------------------------------------------------------------------------------------


def cmd_trust(args: argparse.Namespace) -> int:
    from .certs import trust

    bundle = Path(args.bundle) if args.bundle else trust.default_bundle()
    if args.undo:
        removed = trust.remove(bundle)
        print(f"{'removed the development CA from' if removed else 'the development CA was not in'} {bundle}")
        return 0
    if args.ca:
        ca = Path(args.ca).read_bytes()
    else:
        from .certs import DevPKI

        cfg = load_config(args)
        ca = DevPKI.load_or_create(cfg.data_dir / "pki", [cfg.host, cfg.bind, *cfg.host_names]).root_pem
    trust.add(bundle, ca)
    print(f"added the development CA to {bundle} (undo: azure-iot-harness trust --undo)")
    return 0


# ---- c2d send ----------------------------------------------------------------------------------


def cmd_c2d_send(args: argparse.Namespace) -> int:
    body = {"data": args.data, "properties": parse_props(args.prop), "ttlSeconds": args.ttl}
    for field, value in (
        ("messageId", args.message_id),
        ("correlationId", args.correlation_id),
        ("contentType", args.content_type),
        ("contentEncoding", args.content_encoding),
        ("ack", args.ack),
    ):
        if value is not None:
            body[field] = value
    info = read_endpoints(load_config(args).data_dir)
    print(send_c2d(info, args.device, body))
    return 0


# ---- fault, trace --------------------------------------------------------------------------------


def cmd_fault_add(args: argparse.Namespace) -> int:
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--param takes KEY=VALUE, not {item!r}")
        params[key] = value
    body = {"kind": args.kind, "deviceId": args.device, "moduleId": args.module, "count": args.count, "durationSeconds": args.duration, "params": params}
    info = read_endpoints(load_config(args).data_dir)
    print(json.dumps(emulator_api(info, "POST", "/_emulator/faults", body, expect=201)))
    return 0


def cmd_fault_list(args: argparse.Namespace) -> int:
    info = read_endpoints(load_config(args).data_dir)
    for fault in emulator_api(info, "GET", "/_emulator/faults"):
        print(json.dumps(fault))
    return 0


def cmd_fault_clear(args: argparse.Namespace) -> int:
    info = read_endpoints(load_config(args).data_dir)
    path = "/_emulator/faults" + (f"/{urllib.parse.quote(args.id, safe='')}" if args.id else "")
    emulator_api(info, "DELETE", path, expect=204)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    info = read_endpoints(load_config(args).data_dir)
    query = {"deviceId": args.device, "moduleId": args.module, "since": args.since}
    path = "/_emulator/trace?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    if not args.follow:
        text = emulator_api(info, "GET", path)
        lines = text.splitlines() if isinstance(text, str) else [json.dumps(text)] if text is not None else []
        for line in lines:
            print(line)
        return 0
    conn = https_connection(info, timeout=None)
    try:
        conn.request("GET", path + "&follow=true", headers={"Authorization": service_token(info)})
        resp = conn.getresponse()
        if resp.status != 200:
            raise CommandError(f"GET /_emulator/trace answered {resp.status}: {resp.read().decode(errors='replace').strip()}")
        for raw in resp:
            if raw.strip():
                print(raw.decode().rstrip("\n"), flush=True)
    except OSError as exc:
        raise unreachable(info, exc) from None
    finally:
        conn.close()
    return 0


# ---- cert issue --------------------------------------------------------------------------------


def cmd_cert_issue(args: argparse.Namespace) -> int:
    from .certs import DevPKI, self_signed_cert

    if args.self_signed:
        cert = self_signed_cert(args.cn)
    else:
        cfg = load_config(args)
        # The same names serve uses, so that the server certificate is not issued again.
        pki = DevPKI.load_or_create(cfg.data_dir / "pki", [cfg.host, cfg.bind, *cfg.host_names])
        cert = pki.issue_device_cert(args.cn)
    cert_path, key_path = cert.write(args.out)
    print(f"certificate {cert_path.resolve()}")
    print(f"key {key_path.resolve()}")
    print(f"sha1 {cert.sha1_thumbprint}")
    print(f"sha256 {cert.sha256_thumbprint}")
    return 0


_CONVENIENCE_VERBS = {
    "create-root-and-intermediate": (None, "a root CA and an intermediate (certs/, private/), as certGen.sh create_root_and_intermediate"),
    "create-device-certificate": ("NAME", "a device certificate from the intermediate, with its full chain"),
    "create-edge-device-ca-certificate": ("NAME", "an IoT Edge device CA from the intermediate, with its full chain"),
    "create-verification-certificate": ("CODE", "a certificate from the root whose CN is a verification code"),
}


def add_convenience_verbs(cert_verbs: Any) -> None:
    """`cert create-…`: the convenience scripts' (certGen.sh) files, names and roles."""
    for verb, (arg, text) in _CONVENIENCE_VERBS.items():
        p = cert_verbs.add_parser(verb, help=text, description=text + ". The files go under DIR/certs and DIR/private.")
        if arg:
            p.add_argument("name", metavar=arg)
        p.add_argument("--out", default=".", metavar="DIR", help="the folder holding certs/ and private/ (default: .)")
        p.set_defaults(func=cmd_cert_convenience, cert_verb=verb)


def cmd_cert_convenience(args: argparse.Namespace) -> int:
    from .certs.convenience import ConvenienceCerts

    certs = ConvenienceCerts(args.out)
    try:
        if args.cert_verb == "create-root-and-intermediate":
            root, intermediate, chain = certs.create_root_and_intermediate()
            paths = [root.cert, root.key, intermediate.cert, intermediate.key, chain]
        else:
            make = getattr(certs, args.cert_verb.replace("-", "_"))
            written = make(args.name)
            paths = [p for p in (written.cert, written.full_chain, written.key) if p is not None]
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    for path in paths:
        print(path.resolve())
    return 0


# ---- monitor-events ----------------------------------------------------------------------------


def cmd_monitor_events(args: argparse.Namespace) -> int:
    """Read the Event Hubs-compatible endpoint over AMQP, as `az iot hub monitor-events` does."""
    from .running.eventhub_monitor import monitor

    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1", 2)
    info = read_endpoints(load_config(args).data_dir)
    if not info.get("eventHub"):
        raise CommandError("the running emulator has no Event Hubs-compatible endpoint (an older version?)")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    who = f"device {args.device}" if args.device else "all devices"

    def ready() -> None:
        # Every partition's receiver is attached: tell whoever waits (stderr keeps stdout pure JSON).
        where = f"amqp://{info['amqp']['host']}:{info['amqp']['plainPort']}/{info['eventHub']['name']}"
        print(f"monitoring telemetry from {who} on {where} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    try:
        seen, lost, error, attached = monitor(
            info, device=args.device, from_start=args.from_start, count=args.count, deadline=deadline, emit=lambda line: print(line, flush=True), ready=ready
        )
    except OSError as exc:
        raise unreachable(info, exc) from None
    if lost and not attached:
        raise unreachable(info, OSError(error or "connection closed"))
    if error and not lost:
        raise CommandError(f"the Event Hubs-compatible endpoint refused: {error}")
    if lost and (args.count is None or seen < args.count):
        raise CommandError("the emulator closed the telemetry stream")
    if args.count is not None and seen < args.count:
        raise CommandError(f"received {seen} of {args.count} messages within {args.timeout:g} s")
    return 0


# ---- the parser --------------------------------------------------------------------------------

CERT_ISSUE_HELP = """\
Write NAME.pem (certificate, then the device CA when CA-signed) and NAME.key (PKCS#8, owner
read-only) into --out, then print four lines, in this order:
    certificate /absolute/path/NAME.pem
    key /absolute/path/NAME.key
    sha1 <40 upper-case hex digits>
    sha256 <64 upper-case hex digits>
The thumbprints are those of the leaf certificate, as Azure shows them (register a
self-signed device with them). CA-signed certificates chain to the development device CA of
the data folder, which the emulator trusts for certificateAuthority devices."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azure-iot-harness",
        description="A local, offline emulator of Azure IoT Hub. Every verb but serve finds the "
        "running emulator through the endpoints file in its data folder.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the emulator's data folder (default: $AZURE_IOT_HARNESS_DATA_DIR or ~/.azure-iot-harness)",
    )

    p = verbs.add_parser(
        "serve",
        parents=[data],
        help="run the emulator in the foreground",
        description='Start the emulator; print its endpoints, CA file and the well-known connection strings, then a line starting with "ready" once every listener accepts. Stops cleanly on SIGINT/SIGTERM.',
    )
    p.add_argument("--config", metavar="FILE", help="a TOML file of settings (default: $AZURE_IOT_HARNESS_CONFIG)")
    p.add_argument("--host", metavar="NAME", help="the hub's host name (default: localhost)")
    p.add_argument(
        "--host-name",
        action="append",
        metavar="NAME",
        help="one more name for the server certificate, e.g. global.azure-devices-provisioning.net (repeatable)",
    )
    p.add_argument("--bind", metavar="ADDR", help="the address to listen on (default: 127.0.0.1)")
    p.add_argument("--mqtt-port", type=int, metavar="N", help="MQTT/TLS port, 0 picks a free one (default: 8883)")
    p.add_argument("--https-port", type=int, metavar="N", help="HTTPS port, 0 picks a free one (default: 443)")
    p.add_argument("--in-memory", action="store_true", default=None, help="keep nothing on disk (no endpoints file either)")
    p.add_argument("--edge", action="store_true", help="also run IoT Edge's edgeHub, a transparent gateway")
    p.add_argument("--edge-bind", metavar="ADDR", help="the edgeHub's address (default: 127.0.0.2)")
    p.add_argument("--edge-host", metavar="NAME", help="the gateway host name devices use (default: the edge address)")
    p.add_argument("--edge-mqtt-port", type=int, metavar="N", help="the edgeHub's MQTT port (default: 8883)")
    p.add_argument("--edge-routes", metavar="FILE", help="a JSON file of $edgeHub desired properties (routes)")
    p.add_argument("--edge-ca-cert", metavar="FILE", help="an edge device CA of your own: its certificate chain (IoT Edge's edge_ca cert)")
    p.add_argument("--edge-ca-key", metavar="FILE", help="with --edge-ca-cert: the edge CA's private key (IoT Edge's edge_ca pk)")
    p.add_argument(
        "--explorer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the explorer page on plain HTTP (default: on; --no-explorer turns it off)",
    )
    p.add_argument("--explorer-bind", metavar="ADDR", help="the explorer's address (default: --bind); beyond loopback it asks for the iothubowner connection string")
    p.add_argument("--explorer-port", type=int, metavar="N", help="the explorer's port (default: 0, a free one, printed)")
    p.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error (default: info)")
    p.set_defaults(func=cmd_serve)

    p = verbs.add_parser("explorer", parents=[data], help="print the running emulator's explorer page address")
    p.add_argument("--open", action="store_true", help="also open it in the default browser")
    p.set_defaults(func=cmd_explorer)

    p = verbs.add_parser("info", parents=[data], help="print the running emulator's endpoints as one JSON object")
    p.set_defaults(func=cmd_info)

    p = verbs.add_parser(
        "ca",
        parents=[data],
        help="print the development root CA (PEM); with a verb, manage the CA certificates uploaded to the hub or DPS",
    )
    p.set_defaults(func=cmd_ca)
    add_ca_verbs(p, data)

    p = verbs.add_parser(
        "connection-string",
        parents=[data],
        help="print one connection string in Azure's format",
        description="Print one connection string, exactly in Azure's format. Devices and modules other than the well-known ones are looked up in the running emulator's registry.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--device", metavar="ID")
    which.add_argument("--module", metavar="ID/MOD")
    which.add_argument("--service", action="store_true", help="the hub's service connection string")
    which.add_argument("--dps-service", action="store_true", help="the Device Provisioning Service's service connection string")
    which.add_argument("--edge-device", metavar="ID", help="an IoT Edge device's connection string")
    which.add_argument("--eventhub", action="store_true", help="the Event Hubs-compatible endpoint's connection string (AMQPS)")
    p.add_argument("--policy", metavar="NAME", help="with --service: the shared access policy (default: iothubowner)")
    p.add_argument("--emulator", action="store_true", help="with --eventhub: the plain-TCP form with UseDevelopmentEmulator=true")
    p.set_defaults(func=cmd_connection_string)

    p = verbs.add_parser(
        "trust",
        parents=[data],
        help="make this environment's certifi-reading SDKs (azure-eventhub, azure-iot-hub) trust the development CA",
        description="Add the development root CA to certifi's CA bundle of the Python environment this command runs in "
        "(azure-eventhub and uamqp read only that bundle); --undo takes it out again. Nothing else is changed.",
    )
    p.add_argument("--bundle", metavar="FILE", help="the CA bundle to change (default: certifi.where() of this environment)")
    p.add_argument("--undo", action="store_true", help="remove the development CA from the bundle")
    p.add_argument("--ca", metavar="FILE", help="the CA to trust (default: the data folder's development root CA)")
    p.set_defaults(func=cmd_trust)

    p = verbs.add_parser("sas-token", help="print a shared access signature")
    p.add_argument("--uri", required=True, help="the audience (sr), e.g. myhub.azure-devices.net/devices/dev1")
    p.add_argument("--key", required=True, help="base64 key: a device key or a policy key")
    p.add_argument("--policy", metavar="NAME", help="the policy name (skn), for service tokens")
    p.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="lifetime (default: 3600)")
    p.set_defaults(func=cmd_sas_token)

    p = verbs.add_parser("cert", help="device certificates")
    cert_verbs = p.add_subparsers(dest="cert_verb", required=True, metavar="VERB")
    p = cert_verbs.add_parser(
        "issue",
        parents=[data],
        help="write a device certificate and key; print the thumbprints",
        description=CERT_ISSUE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cn", required=True, metavar="NAME", help="the subject's common name: the device id")
    p.add_argument("--out", default=".", metavar="DIR", help="where to write NAME.pem and NAME.key (default: .)")
    p.add_argument("--self-signed", action="store_true", help="self-signed (thumbprint devices) instead of CA-signed")
    p.set_defaults(func=cmd_cert_issue)
    add_convenience_verbs(cert_verbs)

    p = verbs.add_parser(
        "monitor-events",
        parents=[data],
        help="print telemetry as JSON lines",
        description="Print each telemetry message the running emulator receives as one JSON line "
        "(deviceId, moduleId, body, properties, systemProperties, enqueuedTime, sequenceNumber). "
        "Exits 0 after --count messages, or at --timeout when no --count was given; exits 1 when "
        "--count messages did not arrive within --timeout.",
    )
    p.add_argument("--device", metavar="ID", help="only this device's messages")
    p.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--from-start", action="store_true", help="first print every message kept so far")
    p.set_defaults(func=cmd_monitor_events)

    p = verbs.add_parser("c2d", help="cloud-to-device messages")
    c2d_verbs = p.add_subparsers(dest="c2d_verb", required=True, metavar="VERB")
    p = c2d_verbs.add_parser(
        "send",
        parents=[data],
        help="queue a cloud-to-device message for a device",
        description="Queue a cloud-to-device message (Azure's service SDKs send these over AMQP; the "
        "emulator takes them on POST /_emulator/c2d/{deviceId}). Prints the message id.",
    )
    p.add_argument("--device", required=True, metavar="ID")
    p.add_argument("--data", required=True, metavar="TEXT", help="the message body")
    p.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE", help="an application property (repeatable)")
    p.add_argument("--message-id", metavar="ID")
    p.add_argument("--correlation-id", metavar="ID")
    p.add_argument("--content-type", metavar="TYPE")
    p.add_argument("--content-encoding", metavar="ENC")
    p.add_argument("--ack", choices=["none", "positive", "negative", "full"])
    p.add_argument("--ttl", type=float, metavar="SECONDS", help="time to live (default: 3600)")
    p.set_defaults(func=cmd_c2d_send)

    p = verbs.add_parser("fault", help="fault injection (the same as /_emulator/faults)")
    fault_verbs = p.add_subparsers(dest="fault_verb", required=True, metavar="VERB")
    p = fault_verbs.add_parser(
        "add",
        parents=[data],
        help="ask for a fault; prints it as JSON",
        description="Ask the running emulator for a fault (GET /_emulator/faults/kinds lists the kinds and "
        "their parameters). Without --count or --duration it fires once.",
    )
    p.add_argument("kind", metavar="KIND", help="e.g. drop, refuse-connect, withhold-puback, throttle-twin, dps-throttle, hub-suspend")
    p.add_argument("--device", metavar="ID", help="only this device (default: every device)")
    p.add_argument("--module", metavar="ID", help="only this module of --device")
    p.add_argument("--count", type=int, metavar="N", help="fire N times")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="fire for this long from now")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter of the kind (repeatable)")
    p.set_defaults(func=cmd_fault_add)
    p = fault_verbs.add_parser("list", parents=[data], help="the faults waiting to fire, one JSON object a line")
    p.set_defaults(func=cmd_fault_list)
    p = fault_verbs.add_parser("clear", parents=[data], help="remove one fault, or all")
    p.add_argument("id", nargs="?", metavar="ID", help="the fault's id (default: every fault)")
    p.set_defaults(func=cmd_fault_clear)

    p = verbs.add_parser(
        "trace",
        parents=[data],
        help="print the packet trace, one JSON event a line (GET /_emulator/trace)",
    )
    p.add_argument("--device", metavar="ID")
    p.add_argument("--module", metavar="ID")
    p.add_argument("--since", type=int, metavar="SEQ", help="only events after this sequence number")
    p.add_argument("--follow", action="store_true", help="keep printing new events")
    p.set_defaults(func=cmd_trace)

    # Listed for --help only: main() hands `conformance …` to pytest before argparse sees it.
    verbs.add_parser("conformance", help="run the conformance checks (pytest options pass through; conformance --help)")

    from .clients import add_parser as add_client_parser

    add_client_parser(verbs, data)

    from .certify.command import add_parser as add_certify_parser

    add_certify_parser(verbs, data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:  # its options are pytest's: no argparse in between
        from .conformance.run import main as conformance

        return conformance(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except HarnessError as exc:  # configuration problems and refusals: a message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader is gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
