"""`azure-iot-harness certify …`: the command line of a certification run."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import ConfigError
from ..running.errors import CommandError
from .profiles import BUILT_IN
from .runner import FEATURES, RunOptions, run

HELP = "judge a device against Azure's rules; JUnit, JSON and HTML reports"
DESCRIPTION = """\
Certify a device: start an emulator (a fresh data folder unless --data-dir; the standard ports
unless --mqtt-port/--https-port; or the one running with --data-dir given --use-running), create
the device's identity (or DPS enrollment), start the device program given by --run with its
settings in AZURE_IOT_CERTIFY_* environment variables (or print them and wait for an external
device), then run the profile's checks in their fixed order, each with a timeout.

Exit code: 0 every mandatory check passed; 1 a mandatory check failed; 2 a mandatory check
could not be judged (ERROR), or a usage error. `--catalogue` prints the checks."""


def add_parser(verbs: argparse._SubParsersAction, data: argparse.ArgumentParser) -> None:
    p = verbs.add_parser("certify", parents=[data], help=HELP, description=DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogue", action="store_true", help="print the check catalogue (Markdown) and exit")
    p.add_argument("--device-id", metavar="ID", help="the device's id (created in the emulator)")
    p.add_argument("--module-id", metavar="ID", help="the edge profile: certify this module of the edge device --device-id (SAS)")
    p.add_argument("--auth", choices=["sas", "x509"], default="sas", help="symmetric key (default) or a CA-signed certificate")
    p.add_argument("--provisioning", choices=["dps", "none"], default="none", help="register through DPS first (an enrollment is created)")
    p.add_argument("--run", metavar="COMMAND", help="the device program, run by the shell with the AZURE_IOT_CERTIFY_* variables; "
                   "without it, certify waits for an external device")
    p.add_argument("--profile", default="basic", metavar="|".join(BUILT_IN) + "|FILE", help="the checks to run (default: basic)")
    p.add_argument("--check", action="extend", nargs="+", default=[], metavar="ID", help="run only these checks")
    p.add_argument("--method", action="extend", nargs="+", default=[], metavar="NAME", help="direct methods the device answers")
    p.add_argument("--without", action="extend", nargs="+", default=[], metavar="FEATURE", choices=FEATURES,
                   help=f"features the device does not support ({', '.join(FEATURES)}): their checks SKIP")
    p.add_argument("--telemetry-interval", type=float, metavar="S", help="seconds between the device's messages, at most (default: 5)")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="the long run's length (soak.accounting; profile full)")
    p.add_argument("--timeout", action="append", default=[], metavar="ID=S", help="a check's timeout in seconds (repeatable)")
    p.add_argument("--connect-timeout", type=float, metavar="S", help="how long to wait for the device's first connection")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--json", metavar="FILE", help="write a JSON report")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--no-publish", dest="publish", action="store_false",
                   help="keep the report from the emulator (by default an emulator with a data folder keeps it; its explorer shows it)")
    g = p.add_argument_group("the emulator")
    g.add_argument("--use-running", action="store_true", help="use the emulator running with --data-dir instead of starting one")
    g.add_argument("--bind", default="127.0.0.1", metavar="ADDR", help="where to listen, e.g. 0.0.0.0 for a board on the LAN (default: 127.0.0.1)")
    g.add_argument("--host", metavar="NAME", help="the hub's host name devices use (default: localhost, or the --bind address)")
    g.add_argument("--mqtt-port", type=int, default=8883, metavar="N", help="MQTT/TLS port (default: 8883; 0 picks a free one)")
    g.add_argument("--https-port", type=int, default=443, metavar="N", help="HTTPS port (default: 443; 0 picks a free one)")
    g.add_argument("--edge-bind", default="127.0.0.2", metavar="ADDR",
                   help="the edge profile: where the edge gateway listens; its address is the GatewayHostName (default: 127.0.0.2)")
    g.add_argument("--edge-mqtt-port", type=int, default=8883, metavar="N", help="the edge gateway's MQTT/TLS port (default: 8883)")
    g.add_argument("--work-dir", metavar="DIR", help="where the device's files go (default: a temporary folder)")
    p.set_defaults(func=cmd_certify)


def _timeouts(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            raise CommandError(f"--timeout wants ID=SECONDS, not {item!r}", 2) from None
        if not sep:
            raise CommandError(f"--timeout wants ID=SECONDS, not {item!r}", 2)
    return out


def cmd_certify(args: argparse.Namespace) -> int:
    if args.catalogue:
        from .report import catalogue_markdown

        sys.stdout.write(catalogue_markdown())
        return 0
    if not args.device_id:
        raise CommandError("--device-id is required", 2)
    # The emulator's own log lines (refusals the checks provoke) would drown the progress lines.
    logging.getLogger("azure_iot_harness").addHandler(logging.NullHandler())
    options = RunOptions(
        device_id=args.device_id, module_id=args.module_id, auth=args.auth, provisioning=args.provisioning, run=args.run, profile=args.profile,
        checks=args.check, methods=args.method, without=args.without, telemetry_interval=args.telemetry_interval,
        duration=args.duration, timeouts=_timeouts(args.timeout), use_running=args.use_running, data_dir=args.data_dir,
        bind=args.bind, host=args.host, mqtt_port=args.mqtt_port, https_port=args.https_port, work_dir=args.work_dir,
        connect_timeout=args.connect_timeout, edge_bind=args.edge_bind, edge_mqtt_port=args.edge_mqtt_port,
    )
    options.publish = args.publish
    try:
        report = run(options)
    except ConfigError as exc:
        raise CommandError(str(exc), 2) from None
    for path, write in ((args.junit, report.write_junit), (args.json, report.write_json), (args.html, report.write_html)):
        if path:
            write(path)
    print(report.summary(), flush=True)
    return report.exit_code
