"""`client dps-rest`: provisioning over DPS's device REST API, as the docs' curl examples do it.

`PUT https://{dps}/{idScope}/registrations/{id}/register?api-version=2021-06-01` with
`Authorization: SharedAccessSignature …skn=registration` (individual or group-derived key) or a
TLS client certificate, then `GET …/operations/{operationId}` after each `Retry-After` until the
registration is assigned. `--then-send N` connects to the assigned hub over MQTT and sends
telemetry with the same credentials.
"""

from __future__ import annotations

import argparse

from .dps_target import add_dps_arguments, provision

HELP = "provisioning over DPS's REST API (SAS header or client certificate), then telemetry with --then-send"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dps_arguments(p, default_port=443)


def run(args: argparse.Namespace) -> int:
    return provision(args, rest=True, name="dps-rest")
