"""The client variants from the field, each a small runnable program: `azure-iot-harness client VARIANT`.

Each variant module has `HELP`, `add_arguments(parser)` and `run(args) -> exit code`; failures are
`CommandError`s, printed as one `error: …` line. Variant modules import nothing heavy at the top,
so the command line works without paho, amqtt, mosquitto or node: each is needed only by the
variants that run it.

What the variants share, one module each:
- `hub_target`: the hub flags and `HubTarget`, resolved from the flags or the running emulator;
- `dps_target`: the DPS flags and `DpsTarget`, the assignment printed, the assigned hub;
- `dps_client`: the one DPS device client (MQTT and REST), also used by the conformance suite;
- `link`: a paho connection with blocking connect/publish/subscribe;
- `messages`: telemetry bodies, property bags and topics, and their flags;
- `tls`, `failures`: client TLS contexts; one-line reasons for failed connections (CONNACK texts);
- `tools`, `process`, `workdir`, `site_broker`: external tools, child processes, work folders,
  the plain local broker.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..running.errors import CommandError

# variant name → module, in the order `client --help` lists them
VARIANTS = {
    "device": "device",
    "dps-mqtt": "dps_mqtt",
    "dps-rest": "dps_rest",
    "mosquitto-bridge": "mosquitto_bridge",
    "translator": "translator",
    "node-red": "node_red",
    "kepware": "kepware",
    "mqtt-cli": "mqtt_cli",
    "c-device": "c_device",
    "reference-device": "reference_device",
}


def _module(variant: str):
    return importlib.import_module(f"{__name__}.{VARIANTS[variant]}")


def add_parser(verbs: argparse._SubParsersAction, data: argparse.ArgumentParser) -> None:
    """Add `client VARIANT [options]` to the command line; `data` carries --data-dir."""
    p = verbs.add_parser(
        "client",
        help="run one of the client variants from the field",
        description="Run a client variant against the emulator running with --data-dir (zero configuration), "
        "or against any hub given by --host and credentials (real Azure included).",
    )
    variants = p.add_subparsers(dest="variant", required=True, metavar="VARIANT")
    for name in VARIANTS:
        mod = _module(name)
        sub = variants.add_parser(name, parents=[data], help=mod.HELP, description=mod.__doc__.strip().split("\n\n", 1)[-1])
        mod.add_arguments(sub)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _module(args.variant).run(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.code
