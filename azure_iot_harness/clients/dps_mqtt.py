"""`client dps-mqtt`: provisioning over raw MQTT, as a user does it by hand in an MQTT client.

Client id = registration id, username `{idScope}/registrations/{id}/api-version=2019-03-31&…`
(no `?`), password a SAS token with `skn=registration` (individual or group-derived key) or a
client certificate; subscribe `$dps/registrations/res/#`, publish the register request, poll
with the operation id after each `retry-after`, print the assignment. `--then-send N` connects
to the assigned hub with the same credentials and sends telemetry.
"""

from __future__ import annotations

import argparse

from .dps_target import add_dps_arguments, provision

HELP = "provisioning over raw MQTT (SAS individual or group key, or X.509), then telemetry with --then-send"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dps_arguments(p, default_port=8883)


def run(args: argparse.Namespace) -> int:
    return provision(args, rest=False, name="dps-mqtt")
