"""Telemetry as the client programs send it: the --count/--interval/--data/--prop flags, the
bodies, IoT Hub's property bag and the telemetry topic."""

from __future__ import annotations

import argparse
import json
import urllib.parse

from ..running.errors import CommandError

JSON_BAG = "$.ct=application%2Fjson&$.ce=utf-8"


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
            raise CommandError(f"--prop wants KEY=VALUE, not {item!r}", 2)
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
