"""`monitor-events`' reader: the running emulator's Event Hubs-compatible endpoint over AMQP, as
`az iot hub monitor-events` reads IoT Hub's — one receiver per partition of `$Default`, from the
latest event (or the earliest), through proton's client on the plain AMQP port of the machine.

Each event becomes one JSON line in the shape of the emulator's telemetry API: deviceId,
moduleId, body, properties, systemProperties, enqueuedTime, and the partition's sequenceNumber.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container, Selector

from ..config import WELL_KNOWN_POLICIES
from ..emulator.protocol import sas
from .endpoints import connect_host

_PROPERTY_NAMES = {"id": "message-id", "correlation_id": "correlation-id", "content_type": "content-type", "content_encoding": "content-encoding"}


def _iso(value: Any) -> Any:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(float(value) / 1000, dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    return value


def event_json(msg: Message) -> dict:
    """An event as the emulator's telemetry API shows a message."""
    annotations = {str(k): v for k, v in (msg.annotations or {}).items()}
    system: dict[str, Any] = {}
    for attr, name in _PROPERTY_NAMES.items():
        value = getattr(msg, attr)
        if value:
            system[name] = str(value)
    if msg.user_id:
        system["user-id"] = bytes(msg.user_id).decode("utf-8", "replace")
    for name, value in annotations.items():
        if not name.startswith("x-opt-"):
            system[name] = _iso(value) if name == "iothub-enqueuedtime" else value
    raw = msg.body if isinstance(msg.body, bytes | bytearray | memoryview) else str(msg.body or "").encode()
    try:
        body: str = bytes(raw).decode("utf-8")
        encoding = None
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(bytes(raw)).decode(), "base64"
    out = {
        "sequenceNumber": annotations.get("x-opt-sequence-number"),
        "deviceId": annotations.get("iothub-connection-device-id"),
        "moduleId": annotations.get("iothub-connection-module-id"),
        "body": body,
        "properties": {str(k): (None if v is None else str(v)) for k, v in (msg.properties or {}).items()},
        "systemProperties": system,
        "enqueuedTime": system.get("iothub-enqueuedtime") or _iso(annotations.get("x-opt-enqueued-time")),
    }
    if encoding:
        out["bodyEncoding"] = encoding
    return out


class _Monitor(MessagingHandler):
    def __init__(
        self,
        info: dict,
        *,
        device: str | None,
        from_start: bool,
        count: int | None,
        deadline: float | None,
        emit: Callable[[str], None],
        ready: Callable[[], None],
    ) -> None:
        super().__init__(prefetch=300)
        self.info = info
        self.device = device
        self.from_start = from_start
        self.count = count
        self.deadline = deadline
        self.emit = emit
        self.ready = ready
        self.seen = 0
        self.opened = 0
        self.lost = False
        self.error: str | None = None
        self._connection: Any = None

    def on_start(self, event: Any) -> None:
        info = self.info
        hub = info["hubHostName"]
        policy = next(p for p in WELL_KNOWN_POLICIES if p.name == "service")
        token = sas.generate(hub, policy.key, key_name=policy.name, ttl=365 * 24 * 3600)
        user = f"{policy.name}@sas.root.{hub.split('.', 1)[0]}"
        url = f"amqp://{connect_host(info)}:{info['amqp']['plainPort']}"
        self._connection = event.container.connect(
            url, user=user, password=token, allowed_mechs="PLAIN", allow_insecure_mechs=True, reconnect=False, virtual_host=hub
        )
        start = "-1" if self.from_start else "@latest"
        name = info["eventHub"]["name"]
        for partition in info["eventHub"]["partitions"]:
            address = f"{name}/ConsumerGroups/$Default/Partitions/{partition}"
            event.container.create_receiver(self._connection, address, options=Selector(f"amqp.annotation.x-opt-offset > '{start}'"))
        if self.deadline is not None:
            event.container.schedule(max(0.0, self.deadline - time.monotonic()), self)

    def on_link_opened(self, event: Any) -> None:
        self.opened += 1
        if self.opened == len(self.info["eventHub"]["partitions"]):
            self.ready()

    def on_link_error(self, event: Any) -> None:
        condition = event.link.remote_condition
        self.error = f"{condition.name}: {condition.description}" if condition else "link closed"
        self._stop(event)

    def on_message(self, event: Any) -> None:
        entry = event_json(event.message)
        if self.device is not None and entry["deviceId"] != self.device:
            return
        self.emit(json.dumps(entry))
        self.seen += 1
        if self.count is not None and self.seen >= self.count:
            self._stop(event)

    def on_timer_task(self, event: Any) -> None:
        self._stop(event)

    def on_disconnected(self, event: Any) -> None:
        self.lost = True
        event.container.stop()

    def on_transport_error(self, event: Any) -> None:
        self.lost = True
        cond = event.transport.condition
        self.error = f"{cond.name}: {cond.description}" if cond else "connection failed"
        event.container.stop()

    def _stop(self, event: Any) -> None:
        if self._connection is not None:
            self._connection.close()
        event.container.stop()


def monitor(
    info: dict,
    *,
    device: str | None,
    from_start: bool,
    count: int | None,
    deadline: float | None,
    emit: Callable[[str], None],
    ready: Callable[[], None],
) -> tuple[int, bool, str | None, bool]:
    """(events emitted, whether the connection was lost, the error seen, whether every receiver
    had been attached) once `count` events came, the deadline passed or the connection ended."""
    handler = _Monitor(info, device=device, from_start=from_start, count=count, deadline=deadline, emit=emit, ready=ready)
    Container(handler).run()
    return handler.seen, handler.lost, handler.error, handler.opened >= len(info["eventHub"]["partitions"])


__all__ = ["event_json", "monitor"]
