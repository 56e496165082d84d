"""The IoT Hub MQTT grammar: CONNECT usernames, topic names and property bags. Pure functions.

Device and module ids in usernames and topics are taken literally (IoT Hub does not unescape
them); property bags are percent-decoded with `+` kept literal (never a space).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from ...errors import ProtocolViolation, UsernameError


@dataclass(frozen=True)
class HubUsername:
    host: str
    device_id: str
    module_id: str | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def api_version(self) -> str | None:
        return self.params.get("api-version")

    @property
    def client_id(self) -> str:
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id


@dataclass(frozen=True)
class DpsUsername:
    id_scope: str
    registration_id: str
    params: dict[str, str] = field(default_factory=dict)


def parse_username(username: str | None) -> HubUsername | DpsUsername:
    """Parse a CONNECT username in every form seen in the field.

    Hub: `{host}/{device}[/{module}]` followed by `/?{query}`, `/{query}` (legacy, no `?`,
    the query starting with `api-version=`) or nothing. DPS: `{scope}/registrations/{id}/api-version=…`.
    Raises UsernameError with the reason when it is none of these.
    """
    if not username:
        raise UsernameError("no username")
    path, query = username, ""
    if "/?" in username:
        path, _, query = username.partition("/?")
    else:
        m = re.search(r"/(api-version=.*)$", username)
        if m:
            path, query = username[: m.start()], m.group(1)
    path = path.rstrip("/") if not query else path
    params = _parse_query(query)
    parts = path.split("/")
    if any(p == "" for p in parts):
        raise UsernameError(f"empty segment in username {username!r}")
    if len(parts) == 3 and parts[1] == "registrations":
        return DpsUsername(parts[0], parts[2], params)
    if len(parts) == 2:
        return HubUsername(parts[0], parts[1], None, params)
    if len(parts) == 3:
        return HubUsername(parts[0], parts[1], parts[2], params)
    raise UsernameError(f"username {username!r} is not '{{host}}/{{deviceId}}[/{{moduleId}}]/?api-version=…'")


def _parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            params[urllib.parse.unquote(name)] = urllib.parse.unquote(value)
    return params


# ---- telemetry topics -------------------------------------------------------------------------


@dataclass(frozen=True)
class TelemetryTopic:
    device_id: str
    module_id: str | None
    bag: str  # still percent-encoded


_EVENTS = "/messages/events"


def parse_telemetry_topic(topic: str) -> TelemetryTopic | None:
    """`devices/{d}/messages/events/{bag}` or `devices/{d}/modules/{m}/messages/events/{bag}`.

    The trailing slash after `events` may be missing when there is no bag (edgeHub accepts that
    too). Returns None for any other topic.
    """
    if not topic.startswith("devices/"):
        return None
    idx = topic.find(_EVENTS)
    if idx < 0:
        return None
    head, tail = topic[len("devices/") : idx], topic[idx + len(_EVENTS) :]
    if tail and not tail.startswith("/"):
        return None
    bag = tail[1:]
    parts = head.split("/")
    if len(parts) == 1 and parts[0]:
        return TelemetryTopic(parts[0], None, bag)
    if len(parts) == 3 and parts[1] == "modules" and parts[0] and parts[2]:
        return TelemetryTopic(parts[0], parts[2], bag)
    return None


# ---- subscriptions -----------------------------------------------------------------------------


def c2d_filters(device_id: str) -> frozenset[str]:
    """The filters a device may subscribe to for its cloud-to-device messages.

    The documented one names the device; the Embedded C SDK (and with it most microcontroller
    firmware) subscribes with `+` in its place, which IoT Hub narrows to the connection's own
    device. Either one delivers that device's messages only.
    """
    return frozenset({f"devices/{device_id}/messages/devicebound/#", "devices/+/messages/devicebound/#"})


# Characters IoT Hub takes unescaped in a property bag; everything else (':' and spaces are the
# ones seen in the field) makes it drop the connection.
_BAG_CHARS = re.compile(r"[A-Za-z0-9\-._~!*'()$%,;@&=]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_property_bag(bag: str) -> list[tuple[str, str | None]]:
    """`k=v&k2&k3=` → [('k','v'), ('k2', None), ('k3', '')], percent-decoded, `+` literal.

    Raises ProtocolViolation for characters that must be escaped, broken escapes, escapes that
    are not UTF-8 and empty names.
    """
    if bag.endswith("/"):
        bag = bag[:-1]
    if not bag:
        return []
    if not _BAG_CHARS.fullmatch(bag):
        bad = sorted({c for c in bag if not _BAG_CHARS.fullmatch(c)})
        raise ProtocolViolation(f"property bag has characters that must be percent-encoded: {''.join(bad)!r}")
    if _BAD_ESCAPE.search(bag):
        raise ProtocolViolation("property bag has a malformed percent escape")
    out: list[tuple[str, str | None]] = []
    for part in bag.split("&"):
        raw_name, sep, raw_value = part.partition("=")
        name = _unescape(raw_name)
        if not name:
            raise ProtocolViolation(f"property bag entry {part!r} has no name")
        out.append((name, _unescape(raw_value) if sep else None))
    return out


def _unescape(text: str) -> str:
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ProtocolViolation("property bag escape does not decode as UTF-8") from None


def encode_property_bag(props: list[tuple[str, str | None]]) -> str:
    """The inverse of decode_property_bag, escaping everything but unreserved characters."""
    parts = []
    for name, value in props:
        key = urllib.parse.quote(name, safe="")
        parts.append(key if value is None else f"{key}={urllib.parse.quote(value, safe='')}")
    return "&".join(parts)
