"""`client translator`: brownfield topics onto the hub's telemetry topic.

Subscribes to every topic on the local (site) broker and republishes each message that is not
already on a hub topic onto `devices/{id}/messages/events/`, with the original topic, and what
its levels mean by `--template`, as application properties. `--to hub` publishes straight to
the hub over TLS; `--to local` publishes back onto the local broker, where a Mosquitto bridge
(`client mosquitto-bridge`) forwards `devices/{id}/messages/events/…` as the field does it.
Its own output is on `devices/…`, which it never takes as input: no loops.
"""

from __future__ import annotations

import argparse
import queue

from ..running.errors import CommandError
from .hub_target import DEFAULT_DEVICE, add_hub_arguments, resolve_hub
from .link import MqttLink, hub_link
from .messages import is_json, property_bag, telemetry_topic
from .process import stop_on_signals
from .site_broker import KINDS, SiteBroker
from .workdir import WorkDir

HELP = "republish every local broker topic onto the hub's telemetry topic, directly or behind a Mosquitto bridge"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_hub_arguments(p)
    g = p.add_argument_group("the translation")
    g.add_argument("--source", default="127.0.0.1:1883", metavar="HOST:PORT", help="the local broker, plain MQTT (default: 127.0.0.1:1883)")
    g.add_argument("--site-broker", choices=KINDS, metavar="KIND", help="start the local broker on --source first (port 0: a free one): mosquitto, amqtt, or auto (mosquitto when installed)")
    g.add_argument("--to", choices=("hub", "local"), default="hub", help="hub: to the hub over TLS (default); local: onto the local broker for a Mosquitto bridge")
    g.add_argument("--subscribe", default="#", metavar="FILTER", help="what to take from the local broker (default: #)")
    g.add_argument("--template", metavar="LEVELS", help="names for topic levels, e.g. 'plant/{site}/{line}/{tag}': {name} becomes a property, + skips a level, other words must match")
    g.add_argument("--topic-property", default="mqtt-topic", metavar="NAME", help="the property carrying the original topic (default: mqtt-topic)")
    g.add_argument("--count", type=int, metavar="N", help="stop after N messages are forwarded and acknowledged (default: run until stopped)")
    g.add_argument("--ack-timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the hub's PUBACK (default: 30)")


def match_template(template: str | None, topic: str) -> dict[str, str]:
    """Properties named by the template's {name} levels; empty when the topic does not fit."""
    if not template:
        return {}
    names, levels = template.split("/"), topic.split("/")
    if names and names[-1] == "#":
        names = names[:-1]
        if len(levels) < len(names):
            return {}
        levels = levels[: len(names)]
    if len(names) != len(levels):
        return {}
    out: dict[str, str] = {}
    for name, level in zip(names, levels):
        if name.startswith("{") and name.endswith("}") and len(name) > 2:
            out[name[1:-1]] = level
        elif name != "+" and name != level:
            return {}
    return out


def should_forward(topic: str) -> bool:
    """Not hub-shaped topics (the bridge forwards those; our own output is one) nor $SYS."""
    return not (topic.startswith("devices/") or topic.startswith("$"))


def translate(topic: str, payload: bytes, device_id: str, template: str | None, topic_property: str) -> str:
    """The hub topic for one local message."""
    props = {topic_property: topic, **match_template(template, topic)}
    return telemetry_topic(device_id, property_bag(props, json_body=is_json(payload)))


def run(args: argparse.Namespace) -> int:
    stop_on_signals()
    host, _, port_text = args.source.rpartition(":")
    if not host or not port_text.isdigit():
        raise CommandError(f"--source wants HOST:PORT, not {args.source!r}", 2)
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1", 2)
    work = WorkDir(None, "translator")
    site = None
    links: list[MqttLink] = []
    try:
        if args.site_broker:
            site = SiteBroker(args.site_broker, host, int(port_text), work.path).start()
            print(f"site broker {site.kind} listening on {site.url}", flush=True)
            port = site.port
        else:
            port = int(port_text)
        if args.to == "hub":
            target = resolve_hub(args, work)
            device_id = target.device_id
            out = hub_link(target)
            out.connect()
            links.append(out)
            print(f"connected to {target.describe()}", flush=True)
        else:
            device_id = args.device_id or DEFAULT_DEVICE
        source = MqttLink(address=host, port=port, client_id=f"translator-{device_id}", what="the local broker")
        inbox: queue.Queue = queue.Queue()
        source.on_message = inbox.put
        source.connect()
        links.append(source)
        if args.to == "local":
            out = source
        source.subscribe(args.subscribe, qos=1)
        print(f"ready: forwarding {args.subscribe} from mqtt://{host}:{port} to {telemetry_topic(device_id)} on {out.what}", flush=True)
        return _pump(inbox, source, out, device_id, args)
    except KeyboardInterrupt:
        return 0
    finally:
        for link in reversed(links):
            link.close()
        if site is not None:
            site.stop()
        work.cleanup()


def _pump(inbox: queue.Queue, source: MqttLink, out: MqttLink, device_id: str, args: argparse.Namespace) -> int:
    forwarded = 0
    while args.count is None or forwarded < args.count:
        try:
            msg = inbox.get(timeout=0.5)
        except queue.Empty:
            if not out.connected:
                raise CommandError(f"{out.what} closed the connection") from None
            if not source.connected:
                raise CommandError("the local broker closed the connection") from None
            continue
        # Retained messages are old news replayed at SUBSCRIBE: forwarding them would repeat them.
        if msg.retain or not should_forward(msg.topic):
            continue
        topic = translate(msg.topic, msg.payload, device_id, args.template, args.topic_property)
        mid = out.publish(topic, msg.payload, qos=1)
        if not out.wait_acked([mid], args.ack_timeout):
            raise CommandError(f"{out.what} did not acknowledge the message from {msg.topic}")
        forwarded += 1
        print(f"forwarded {msg.topic} -> {topic}", flush=True)
    return 0
