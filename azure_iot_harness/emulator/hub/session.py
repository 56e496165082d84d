"""A connected device or module: what it may publish and subscribe to, and what that does."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from ...errors import ProtocolViolation
from ..mqtt import codec
from ..mqtt.codec import Publish
from ..protocol.messages import Telemetry, build_telemetry
from ..protocol.topics import decode_property_bag, parse_telemetry_topic

if TYPE_CHECKING:
    from ..mqtt.connection import MqttConnection
    from .auth import Principal
    from .hub import Hub

log = logging.getLogger("azure_iot_harness.hub")

MAX_SUBSCRIPTIONS = 5


class DeviceSession:
    def __init__(self, hub: "Hub", principal: "Principal", conn: "MqttConnection", will: Telemetry | None) -> None:
        self.hub = hub
        self.principal = principal
        self.conn = conn
        self.will = will
        self.subscriptions: dict[str, int] = {}
        self.kicked = False
        d, m = principal.device_id, principal.module_id
        if m is None:
            self._allowed_filters = {
                f"devices/{d}/messages/devicebound/#",
                "$iothub/twin/res/#",
                "$iothub/twin/PATCH/properties/desired/#",
                "$iothub/methods/POST/#",
            }
        else:
            self._allowed_filters = {
                f"devices/{d}/modules/{m}/inputs/#",
                f"devices/{d}/modules/{m}/#",
                "$iothub/twin/res/#",
                "$iothub/twin/PATCH/properties/desired/#",
                "$iothub/methods/POST/#",
            }

    # ---- PUBLISH ------------------------------------------------------------------------

    async def on_publish(self, conn: "MqttConnection", pub: Publish) -> None:
        if pub.qos == 2:
            raise ProtocolViolation(f"PUBLISH with QoS 2 to {pub.topic!r}: IoT Hub supports QoS 0 and 1 only")
        self.hub.registry.touch(*self.principal.key)
        if pub.topic.startswith("$iothub/"):
            self._on_iothub_topic(pub)
            return
        telemetry = self.telemetry_from(pub.topic, pub.payload, pub.retain)
        fut = self.hub.store.append_telemetry(telemetry)
        if pub.qos == 1:
            assert pub.packet_id is not None
            conn.ack_when_done(fut, pub.packet_id)

    def telemetry_from(self, topic: str, body: bytes, retain: bool) -> Telemetry:
        """Check a telemetry topic against this identity and build the message."""
        parsed = parse_telemetry_topic(topic)
        if parsed is None:
            raise ProtocolViolation(f"PUBLISH to {topic!r}, which is not an IoT Hub topic")
        p = self.principal
        if parsed.device_id != p.device_id or parsed.module_id != p.module_id:
            raise ProtocolViolation(f"PUBLISH to {topic!r}, a topic of another identity than {p.name}")
        return build_telemetry(
            device_id=p.device_id,
            module_id=p.module_id,
            bag=decode_property_bag(parsed.bag),
            body=body,
            retain=retain,
            auth=p.auth,
            generation_id=p.generation_id,
            model_id=p.model_id,
        )

    def _on_iothub_topic(self, pub: Publish) -> None:
        topic = pub.topic
        if topic.startswith("$iothub/twin/GET/") or topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            # Twins arrive with their own issue; until then an explicit error, never silence.
            rid = _rid(topic)
            log.warning("%s: device twins are not supported by the emulator yet (%s)", self.principal.name, topic)
            body = json.dumps({"message": "device twins are not supported by the emulator yet"}).encode()
            self.conn.send(codec.encode_publish(f"$iothub/twin/res/501/?$rid={rid}", body, 0, None))
        elif topic.startswith("$iothub/methods/res/"):
            log.warning("%s: method response %r matches no pending method call", self.principal.name, topic)
        else:
            raise ProtocolViolation(f"PUBLISH to {topic!r}, which is not an IoT Hub topic")

    # ---- SUBSCRIBE ----------------------------------------------------------------------

    async def on_subscribe(self, conn: "MqttConnection", packet_id: int, topics: list[tuple[str, int]]) -> None:
        granted = []
        for topic, qos in topics:
            if topic not in self._allowed_filters:
                raise ProtocolViolation(f"SUBSCRIBE to {topic!r}, which is not an IoT Hub topic filter")
            self.subscriptions[topic] = min(qos, 1)
            granted.append(min(qos, 1))
        if len(self.subscriptions) > MAX_SUBSCRIPTIONS:
            raise ProtocolViolation(f"more than {MAX_SUBSCRIPTIONS} subscriptions on one connection")
        conn.send(codec.encode_suback(packet_id, granted))

    async def on_unsubscribe(self, conn: "MqttConnection", packet_id: int, topics: list[str]) -> None:
        for topic in topics:
            self.subscriptions.pop(topic, None)
        conn.send(codec.encode_unsuback(packet_id))

    def on_puback(self, conn: "MqttConnection", packet_id: int) -> None:
        pass  # nothing is sent at QoS 1 yet: cloud-to-device messages come with their own issue

    # ---- end ----------------------------------------------------------------------------

    def on_closed(self, conn: "MqttConnection", graceful: bool, reason: str) -> None:
        self.hub.session_closed(self)
        log.info("%s disconnected: %s", self.principal.name, reason)
        if self.will is not None and not graceful and not self.kicked:
            log.info("%s: publishing its will message", self.principal.name)
            fut = self.hub.store.append_telemetry(self.will)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception() and log.error("will not stored: %s", f.exception()))


def _rid(topic: str) -> str:
    _, _, query = topic.partition("?")
    for part in query.split("&"):
        if part.startswith("$rid="):
            return part[5:]
    return ""
