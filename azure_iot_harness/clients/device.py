"""`client device`: the paho device script from the field.

MQTT 3.1.1 over TLS 1.2, client id = device id, username `{hub}/{device}/?api-version=…`, a SAS
token or a client certificate; N messages at QoS 1 to `devices/{id}/messages/events/`, with
`$.ct=application%2Fjson&$.ce=utf-8` when the body is JSON; reports each PUBACK.
"""

from __future__ import annotations

import argparse
import time

from ..running.errors import CommandError
from .hub_target import HubTarget, add_hub_arguments, resolve_hub
from .link import hub_link
from .messages import add_message_arguments, is_json, message_body, parse_props, property_bag, telemetry_topic
from .workdir import WorkDir

HELP = "the paho device script: N telemetry messages at QoS 1, SAS or X.509, direct or through a gateway"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_hub_arguments(p)
    add_message_arguments(p)
    p.add_argument("--ack-timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the last PUBACK (default: 30)")


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CommandError("--count must be at least 1", 2)
    parse_props(args.prop)  # usage errors before connecting
    work = WorkDir(None, "device")
    try:
        return send_telemetry(resolve_hub(args, work), args.count, args)
    finally:
        work.cleanup()


def send_telemetry(target: HubTarget, count: int, args: argparse.Namespace) -> int:
    """Connect, send `count` messages (args: interval, data, prop, ack_timeout), report the PUBACKs."""
    props = parse_props(args.prop)
    link = hub_link(target)
    link.connect()
    print(f"connected to {target.describe()}", flush=True)
    try:
        mids: list[int] = []
        for seq in range(1, count + 1):
            body = message_body(args.data, seq)
            topic = telemetry_topic(target.device_id, property_bag(props, json_body=is_json(body)))
            mids.append(link.publish(topic, body, qos=1))
            print(f"sent {seq}/{count} to {topic}", flush=True)
            if seq < count and args.interval > 0:
                time.sleep(args.interval)
        link.wait_acked(mids, args.ack_timeout)
        acked = sum(1 for m in mids if m in link.acked)
        print(f"acknowledged {acked} of {count} messages", flush=True)
        if acked < count:
            why = "the hub closed the connection" if not link.connected else f"no PUBACK within {args.ack_timeout:g} s"
            raise CommandError(f"{count - acked} of {count} messages were not acknowledged: {why}")
        return 0
    finally:
        link.close()
