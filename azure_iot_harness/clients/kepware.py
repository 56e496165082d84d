"""`client kepware`: a gateway publishing like the Kepware (KEPServerEX) IoT Gateway MQTT agent.

Settings of Kepware's Azure guide: client id = device id, username `{hub}/{device}` with no
api-version, a SAS token as password, MQTT 3.1.1, topic `devices/{id}/messages/events/` with no
property bag (so no content type), and the agent's standard JSON template:
`{"timestamp": ms, "values": [{"id": tag, "v": value, "q": true, "t": ms}, …]}`. IoT Hub
accepts the bare username; edgeHub requires an api-version and refuses it.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from ..running.errors import CommandError
from .hub_target import add_hub_arguments, resolve_hub
from .link import hub_link
from .messages import telemetry_topic
from .workdir import WorkDir

HELP = "Kepware IoT Gateway's standard JSON template, username without api-version"
DEFAULT_TAGS = ("Channel1.Device1.Tag1", "Channel1.Device1.Tag2")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_hub_arguments(p)
    g = p.add_argument_group("the agent")
    g.add_argument("--tag", action="append", metavar="ID", help=f"a tag to publish (repeatable; default: {', '.join(DEFAULT_TAGS)})")
    g.add_argument("--count", type=int, default=3, metavar="N", help="publishes (default: 3)")
    g.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between publishes, Kepware's rate (default: 1)")
    g.add_argument("--qos", type=int, choices=(0, 1), default=1, help="Kepware's QoS setting (default: 1)")
    g.add_argument("--with-api-version", action="store_true", help="send ?api-version= in the username after all (what edgeHub needs)")
    g.add_argument("--ack-timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the last PUBACK (default: 30)")


def standard_template(tags: list[str], seq: int, now_ms: int) -> dict:
    """One publish of the standard template; simulated values (a ramp and a sine, like Kepware's simulator)."""
    values = []
    for i, tag in enumerate(tags):
        value = seq + i if i % 2 == 0 else round(100 * math.sin(seq / 5 + i), 3)
        values.append({"id": tag, "v": value, "q": True, "t": now_ms})
    return {"timestamp": now_ms, "values": values}


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CommandError("--count must be at least 1", 2)
    tags = args.tag or list(DEFAULT_TAGS)
    work = WorkDir(None, "kepware")
    try:
        target = resolve_hub(args, work)
        username = target.username(api_version=True if args.with_api_version else False)
        link = hub_link(target, username)
        try:
            link.connect()
        except CommandError as exc:
            if target.via_gateway and not args.with_api_version and "CONNACK 5" in str(exc):
                raise CommandError(f"{exc}; edgeHub refuses a username without api-version (--with-api-version adds one)") from None
            raise
        print(f"connected to {target.describe()} with username {username}", flush=True)
        try:
            topic = telemetry_topic(target.device_id)
            mids = []
            for seq in range(1, args.count + 1):
                body = json.dumps(standard_template(tags, seq, int(time.time() * 1000)), separators=(",", ":"))
                mids.append(link.publish(topic, body, qos=args.qos))
                print(f"published {seq}/{args.count} to {topic}: {body}", flush=True)
                if seq < args.count and args.interval > 0:
                    time.sleep(args.interval)
            if args.qos == 0:
                time.sleep(0.5)  # QoS 0 has no acknowledgement: give the last one time to leave
                if not link.connected:
                    raise CommandError("the hub closed the connection")
                print(f"sent {args.count} messages at QoS 0 (not acknowledged by MQTT)", flush=True)
                return 0
            link.wait_acked(mids, args.ack_timeout)
            acked = sum(1 for m in mids if m in link.acked)
            print(f"acknowledged {acked} of {args.count} messages", flush=True)
            if acked < args.count:
                raise CommandError(f"{args.count - acked} of {args.count} messages were not acknowledged")
            return 0
        finally:
            link.close()
    finally:
        work.cleanup()
