"""Device-to-cloud messages as the hub hands them to its back end. Pure functions.

Names of system properties are the ones a reader of the Event Hubs-compatible endpoint sees
(`message-id`, `content-type`, `iothub-connection-device-id`, …).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from dataclasses import dataclass, field

from ...errors import ProtocolViolation

MAX_D2C_BYTES = 256 * 1024

# Property-bag keys a device may set, and the system property each one becomes.
SETTABLE_SYSTEM_PROPERTIES = {
    "$.mid": "message-id",
    "$.cid": "correlation-id",
    "$.uid": "user-id",
    "$.ct": "content-type",
    "$.ce": "content-encoding",
    "$.exp": "absolute-expiry-time",
    "$.ctime": "creation-time",
    "$.ifid": "iothub-interface-id",
    "$.sub": "dt-subject",
    "$.on": "output-name",
}
# Keys only the hub sets; a device that sends them has them ignored (anti-spoofing).
_HUB_ONLY = {"$.to", "$.cdid", "$.cmid", "iothub-operation"}
RETAIN_PROPERTY = "mqtt-retain"
MAX_MESSAGE_ID = 128


@dataclass(frozen=True)
class AuthMethod:
    scope: str  # "device", "module" or "hub" (policy token)
    type: str  # "sas" or "x509Certificate"

    def to_json(self) -> str:
        return _auth_method_json(self.scope, self.type)


@functools.cache
def _auth_method_json(scope: str, type_: str) -> str:
    # Stamped on every message: built once per (scope, type).
    return json.dumps({"scope": scope, "type": type_, "issuer": "iothub", "acceptingIpFilterRule": None}, separators=(",", ":"))


@dataclass
class Telemetry:
    device_id: str
    module_id: str | None
    body: bytes
    properties: dict[str, str | None] = field(default_factory=dict)
    system_properties: dict[str, str] = field(default_factory=dict)
    enqueued_time: str = ""
    # The enqueued time in milliseconds since the epoch, when the hub stamped the message
    # itself (0: read back or made elsewhere; parse `enqueued_time`).
    enqueued_ms: int = field(default=0, compare=False)

    def to_json(self) -> dict:
        """The shape `monitor-events` prints and the telemetry API returns."""
        try:
            body: str = self.body.decode("utf-8")
            encoding = None
        except UnicodeDecodeError:
            import base64

            body, encoding = base64.b64encode(self.body).decode(), "base64"
        out = {
            "deviceId": self.device_id,
            "moduleId": self.module_id,
            "body": body,
            "properties": self.properties,
            "systemProperties": self.system_properties,
            "enqueuedTime": self.enqueued_time,
        }
        if encoding:
            out["bodyEncoding"] = encoding
        return out


def utc_now_iso(now: dt.datetime | None = None) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, IoT Hub's timestamp form (isoformat: the cheap way, per message)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


_last: tuple[int, str] = (-1, "")  # the last whole second and its text
_MS_TEXT = tuple(f".{ms:03d}Z" for ms in range(1000))


def iso_ms(t: float) -> tuple[str, int]:
    """Epoch seconds as IoT Hub's `YYYY-MM-DDTHH:MM:SS.mmmZ`, and as whole milliseconds: the
    same text as `utc_now_iso` for that instant, but the date and time are formatted once a
    second and the milliseconds come from a table, not a datetime, a `replace()` and an
    `isoformat()` per message (7% of the event loop's time)."""
    global _last
    sec = int(t)
    if sec > t:  # before 1970: int() rounds toward zero
        sec -= 1
    ms = int((t - sec) * 1000)
    last = _last  # one tuple, replaced whole: safe across threads
    if last[0] != sec:
        last = _last = (sec, dt.datetime.fromtimestamp(sec, dt.UTC).replace(tzinfo=None).isoformat())
    return last[1] + _MS_TEXT[ms], sec * 1000 + ms


def build_telemetry(
    *,
    device_id: str,
    module_id: str | None,
    bag: list[tuple[str, str | None]],
    body: bytes,
    retain: bool,
    auth: AuthMethod,
    generation_id: str,
    model_id: str | None = None,
    now: dt.datetime | None = None,
) -> Telemetry:
    """Split a decoded property bag into application and system properties and stamp the
    properties the hub adds. Raises ProtocolViolation when the message is too large or a
    system property is invalid."""
    stamp = TelemetryStamp(device_id, module_id, auth, generation_id, model_id)
    return stamp.build(stamp.prepare(bag, retain), body, now.timestamp() if now is not None else None)[0]


@dataclass(frozen=True)
class PreparedBag:
    """A decoded property bag sorted into application and settable system properties, checked,
    with their JSON text: what every message with this bag (and retain flag) shares."""

    app: dict[str, str | None]
    system: dict[str, str]
    size: int  # the bag's bytes, counted toward the message size limit
    app_json: str
    system_json_head: str  # the system properties' JSON up to the enqueued time


class TelemetryStamp:
    """What the hub stamps on every message of one identity, built once per connection: the
    connection's system properties and their JSON text around the per-message enqueued time.

    A device publishes to one topic over and over, so its property bag is prepared once
    (`prepare`) and each message costs a timestamp, two dict copies and two string joins —
    not a topic parse, a bag decode and two `json.dumps` (a fifth of the CPU per message).
    The JSON texts are exactly what `json.dumps` makes of the message's property dicts.
    """

    def __init__(self, device_id: str, module_id: str | None, auth: AuthMethod, generation_id: str, model_id: str | None) -> None:
        self.device_id = device_id
        self.module_id = module_id
        head: dict[str, str] = {"iothub-connection-device-id": device_id}
        if module_id:
            head["iothub-connection-module-id"] = module_id
        head["iothub-connection-auth-method"] = auth.to_json()
        head["iothub-connection-auth-generation-id"] = generation_id
        tail: dict[str, str] = {"iothub-message-source": "Telemetry"}
        if model_id:
            tail["dt-dataschema"] = model_id
        self._head, self._tail = head, tail
        self._head_json = json.dumps(head)[1:-1]
        self._tail_json = '", ' + json.dumps(tail)[1:]  # closes the enqueued time

    def prepare(self, bag: list[tuple[str, str | None]], retain: bool) -> PreparedBag:
        """Raises ProtocolViolation for an invalid system property (a message id too long)."""
        app: dict[str, str | None] = {}
        system: dict[str, str] = {}
        size = 0
        for name, value in bag:
            size += len(name.encode()) + len((value or "").encode())
            if name in SETTABLE_SYSTEM_PROPERTIES:
                if value is not None:
                    system[SETTABLE_SYSTEM_PROPERTIES[name]] = value
            elif name not in _HUB_ONLY:
                app[name] = value
        mid = system.get("message-id")
        if mid is not None and (len(mid) > MAX_MESSAGE_ID or not mid.isascii()):
            raise ProtocolViolation("message id longer than 128 characters or not ASCII")
        if retain:
            app[RETAIN_PROPERTY] = "true"
        settable = json.dumps(system)[1:-1]
        head = "{" + (settable + ", " if settable else "") + self._head_json + ', "iothub-enqueuedtime": "'
        return PreparedBag(app, system, size, json.dumps(app), head)

    def build(self, bag: PreparedBag, body: bytes, now: float | None = None) -> tuple[Telemetry, tuple[str, str]]:
        """The message enqueued at `now` (epoch seconds; None: the system clock), and the JSON
        text of its properties and system properties (for the store). Raises ProtocolViolation
        when the message is too large."""
        size = bag.size + len(body)
        if size > MAX_D2C_BYTES:
            raise ProtocolViolation(f"message of {size} bytes exceeds IoT Hub's {MAX_D2C_BYTES}-byte limit")
        enqueued, ms = iso_ms(time.time() if now is None else now)  # digits and -:.TZ: nothing to escape in JSON
        system = {**bag.system, **self._head, "iothub-enqueuedtime": enqueued, **self._tail}
        telemetry = Telemetry(self.device_id, self.module_id, body, dict(bag.app), system, enqueued, ms)
        return telemetry, (bag.app_json, bag.system_json_head + enqueued + self._tail_json)
