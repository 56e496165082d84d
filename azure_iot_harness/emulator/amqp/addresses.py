"""Link addresses as the service side routes them. Pure.

Clients name the same node in several ways (`amqps://host:5671/hub/ConsumerGroups/$Default/
Partitions/0`, `hub/ConsumerGroups/…`, `/hub/…`, `/messages/serviceBound/feedback`); one
listener serves IoT Hub's own nodes and the Event Hubs-compatible ones, told apart by path.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

_SCHEME = re.compile(r"^amqps?://[^/]*", re.IGNORECASE)
_PARTITION = re.compile(r"^([^/]+)/consumergroups/([^/]+)/partitions/([^/]+)$", re.IGNORECASE)
_EH_MANAGEMENT = re.compile(r"^([^/]+)/\$management$", re.IGNORECASE)
_DEVICE_TO = re.compile(r"^/?devices/([^/]+)/messages/devicebound/?$", re.IGNORECASE)


def normalize(address: str | None) -> str:
    """Without scheme, host, port and leading slashes; case kept."""
    return _SCHEME.sub("", address or "").lstrip("/")


@dataclass(frozen=True)
class Node:
    kind: str  # cbs, management, events (IoT Hub form: redirect), partition, devicebound, feedback, filenotifications, unknown
    path: str  # the normalized address
    entity: str = ""  # the event hub's name (partition, management)
    consumer_group: str = ""
    partition: str = ""


def classify(address: str | None) -> Node:
    path = normalize(address)
    low = path.lower()
    if low == "$cbs":
        return Node("cbs", path)
    if low == "$management":
        return Node("management", path)
    if low == "messages/events" or low.startswith("messages/events/"):
        return Node("events", path)
    if low == "messages/devicebound":
        return Node("devicebound", path)
    if low == "messages/servicebound/feedback":
        return Node("feedback", path)
    if low == "messages/servicebound/filenotifications":
        return Node("filenotifications", path)
    m = _PARTITION.match(path)
    if m:
        return Node("partition", path, m.group(1), m.group(2), m.group(3))
    m = _EH_MANAGEMENT.match(path)
    if m:
        return Node("management", path, m.group(1))
    return Node("unknown", path)


def device_of(to: str | None) -> str | None:
    """The device id in a C2D message's `to` (`/devices/{id}/messages/devicebound`); the Node
    SDK URL-encodes the id, the Python SDK sends it raw."""
    m = _DEVICE_TO.match(to or "")
    return urllib.parse.unquote(m.group(1)) if m else None
