"""A connected device or module: what it may publish and subscribe to, and what that does."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

from ...errors import ProtocolViolation
from ..faults import azure as azure_faults
from ..faults import kinds as fault_kinds
from ..faults.rules import Fault
from ..mqtt import codec
from ..mqtt.codec import Publish
from ..protocol import twin as tw
from ..protocol.errors import error_code
from ..protocol.messages import PreparedBag, Telemetry, TelemetryStamp, build_telemetry
from ..protocol.numbers import NumberError, parse_int
from ..protocol.subscriptions import DESIRED_UPDATES, TWIN_RESPONSES, allowed_filters, grant
from ..protocol.topics import c2d_filters, decode_property_bag, parse_telemetry_topic
from .sessions import SessionState

if TYPE_CHECKING:
    from ..mqtt.connection import MqttConnection
    from .auth import Principal
    from .hub import Hub

log = logging.getLogger("azure_iot_harness.hub")


class DeviceSession:
    def __init__(self, hub: Hub, principal: Principal, conn: MqttConnection, state: SessionState) -> None:
        self.hub = hub
        self.principal = principal
        self.conn = conn
        self.state = state
        self.will: Telemetry | None = None
        self.kicked = False
        self._next_packet_id = 0
        self._c2d_timer: asyncio.TimerHandle | None = None
        self._twin_fault: Fault | None = None  # a twin fault for the request being answered
        # Azure's fault-injection properties act on a device's own connection; an edge's upstream
        # link (auth-chain) carries them from a leaf the edge has already acted on.
        self.honours_fault_properties = True
        # Telemetry: what the hub stamps on each message (made at the first one: an idle device
        # costs nothing for it), and the last topic's property bag.
        self._stamp: TelemetryStamp | None = None
        self._bag_key: tuple[str, bool] | None = None
        self._bag: PreparedBag | None = None

    @property
    def c2d_filters(self) -> frozenset[str]:
        """The filters that deliver this device's C2D messages (made when asked: an idle device
        does not keep them)."""
        p = self.principal
        return c2d_filters(p.device_id) if p.module_id is None else frozenset()

    @property
    def key(self) -> tuple[str, str | None]:
        return self.principal.key

    def on_connected(self, conn: MqttConnection) -> None:
        self.pump_c2d()  # a resumed session gets what was queued meanwhile

    # ---- PUBLISH from the device -------------------------------------------------------------

    async def on_publish(self, conn: MqttConnection, pub: Publish) -> None:
        if pub.qos == 2:
            raise ProtocolViolation(f"PUBLISH with QoS 2 to {pub.topic!r}: IoT Hub supports QoS 0 and 1 only")
        self.hub.registry.touch(*self.key)
        if pub.topic.startswith("$iothub/"):
            await self._on_iothub_topic(pub)
            if pub.qos == 1:
                assert pub.packet_id is not None
                conn.send(codec.encode_puback(pub.packet_id))
            return
        telemetry, texts = self.telemetry_from(pub.topic, pub.payload, pub.retain)
        if azure_faults.FAULT_TYPE in telemetry.properties and self.honours_fault_properties:
            azure_faults.apply(self.hub.faults, self.conn, telemetry.properties)
        if pub.qos == 1:  # PUBACK after the commit
            assert pub.packet_id is not None
            self.hub.store.append_telemetry_then(telemetry, texts, conn.ack_when_stored(pub.packet_id))
        else:
            self.hub.store.append_telemetry(telemetry, texts)

    def telemetry_from(self, topic: str, body: bytes, retain: bool) -> tuple[Telemetry, tuple[str, str]]:
        """The message and the JSON text of its properties; a topic (and retain flag) like the
        last one reuses its checked, decoded property bag."""
        key = (topic, retain)
        stamp, bag = self._stamp, self._bag
        if stamp is None:
            p = self.principal
            stamp = self._stamp = TelemetryStamp(p.device_id, p.module_id, p.auth, p.generation_id, p.model_id)
        if key != self._bag_key or bag is None:
            self._bag_key = None  # stays unset if this topic is refused
            bag = self._bag = stamp.prepare(telemetry_bag(self.principal, topic), retain)
            self._bag_key = key
        return stamp.build(bag, body, self.hub.clock.time())

    async def _on_iothub_topic(self, pub: Publish) -> None:
        topic = pub.topic
        if topic.startswith("$iothub/twin/"):
            fault = self._fault(fault_kinds.TWIN)
            if fault is not None and fault.kind == "throttle-twin":  # IoT Hub's answer; nothing done
                body = json.dumps({"errorCode": error_code("ThrottlingException"), "message": f"throttled (fault {fault.id})"}).encode()
                self._twin_response(429, _rid(topic), body)
                return
            self._twin_fault = fault  # drop-twin-response / delay-twin: done, its answer lost or late
        try:
            await self._on_iothub_request(pub)
        finally:
            self._twin_fault = None

    async def _on_iothub_request(self, pub: Publish) -> None:
        topic = pub.topic
        if topic.startswith("$iothub/twin/GET/"):
            twin = self.hub.twins.get(self.key)
            self._twin_response(200, _rid(topic), json.dumps(tw.device_view(twin)).encode())
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            rid = _rid(topic)
            try:
                version = await self.hub.twins.patch_reported(self.key, tw.parse_reported_patch(pub.payload))
            except tw.TwinError as exc:
                log.warning("%s: reported patch refused with 400: %s", self.principal.name, exc)
                body = json.dumps({"errorCode": error_code("ArgumentInvalid"), "message": str(exc)}).encode()
                self._twin_response(400, rid, body)
            else:
                self._twin_response(204, rid, b"", version=version)
        elif topic.startswith("$iothub/methods/res/"):
            self._on_method_response(topic, pub.payload)
        else:
            raise ProtocolViolation(f"PUBLISH to {topic!r}, which is not an IoT Hub topic")

    def _fault(self, point: str) -> Fault | None:
        faults = self.hub.faults
        if faults is None or not faults.armed:
            return None
        return faults.take(point, self.principal.device_id, self.principal.module_id, self.conn.trace_record)

    def _twin_response(self, status: int, rid: str, body: bytes, *, version: int | None = None) -> None:
        fault, self._twin_fault = self._twin_fault, None
        if fault is not None and fault.kind == "drop-twin-response":
            log.info("%s: twin response %d dropped (fault %s)", self.principal.name, status, fault.id)
            return
        if fault is not None and fault.kind == "delay-twin":
            asyncio.get_running_loop().call_later(fault.params["seconds"], lambda: self._twin_response(status, rid, body, version=version))
            return
        if TWIN_RESPONSES not in self.state.subscriptions:
            log.info("%s: twin response %d dropped: not subscribed to %s", self.principal.name, status, TWIN_RESPONSES)
            return
        topic = f"$iothub/twin/res/{status}/?$rid={rid}" + (f"&$version={version}" if version is not None else "")
        self.conn.send(codec.encode_publish(topic, body, 0, None))

    def _on_method_response(self, topic: str, body: bytes) -> None:
        rest = topic[len("$iothub/methods/res/") :]
        status_text, _, query = rest.partition("/")
        try:  # the service reads the status as a 32-bit integer
            status = parse_int(status_text, -(2**31), 2**31 - 1, name="method response status")
        except NumberError as exc:
            raise ProtocolViolation(str(exc)) from None
        rid = _param(query.lstrip("?"), "$rid")
        if rid is None or not self.hub.methods.resolve(self.key, rid, status, body):
            log.warning("%s: method response for unknown request id %r ignored", self.principal.name, rid)

    # ---- messages to the device ----------------------------------------------------------------

    def send_method_request(self, name: str, rid: str, payload: bytes) -> None:
        # IoT Hub sends method requests at QoS 0.
        packet = codec.encode_publish(f"$iothub/methods/POST/{name}/?$rid={rid}", payload, 0, None)
        fault = self._fault(fault_kinds.METHOD)
        if fault is not None and fault.kind == "method-timeout":  # never delivered: the call times out
            log.info("%s: method request %s withheld (fault %s)", self.principal.name, name, fault.id)
        elif fault is not None and fault.kind == "delay-method":
            asyncio.get_running_loop().call_later(fault.params["seconds"], self.conn.send, packet)
        else:
            self.conn.send(packet)

    def send_desired(self, body: dict, version: int) -> None:
        if DESIRED_UPDATES in self.state.subscriptions:
            topic = f"$iothub/twin/PATCH/properties/desired/?$version={version}"
            self.conn.send(codec.encode_publish(topic, json.dumps(body).encode(), 0, None))

    def pump_c2d(self) -> None:
        """Deliver every cloud-to-device message that may go out now; come back at the next
        lock expiry for those still unacknowledged."""
        qos = self._c2d_qos(self.state.subscriptions)
        if self.conn.closed or qos is None:
            return
        queues = self.hub.c2d
        now = self.hub.clock.time()
        for msg in queues.deliverable(self.principal.device_id, self.state.c2d_after, now):
            dup = msg.delivery_count > 0
            if qos == 0:  # at most once: sent is done
                self.conn.send(codec.encode_publish(msg.topic(), msg.body, 0, None))
                queues.complete(msg.device_id, msg.seq)
                continue
            packet_id = self.state.inflight.get(msg.seq) or self._packet_id()
            self.state.inflight[msg.seq] = packet_id
            self.conn.send(codec.encode_publish(msg.topic(), msg.body, 1, packet_id, dup=dup))
            queues.lock(msg, now)
        self._schedule_c2d()

    def _c2d_qos(self, subscriptions: dict[str, int]) -> int | None:
        """The QoS of the device's C2D subscription (the higher one if it holds both forms)."""
        granted = [q for t, q in subscriptions.items() if t in self.c2d_filters]
        return max(granted) if granted else None

    def _schedule_c2d(self) -> None:
        if self._c2d_timer is not None:
            self._c2d_timer.cancel()
            self._c2d_timer = None
        unlock = self.hub.c2d.next_unlock(self.principal.device_id)
        if unlock is not None:
            delay = max(0.0, unlock - self.hub.clock.time()) + 0.01
            self._c2d_timer = asyncio.get_running_loop().call_later(delay, self.pump_c2d)

    def _packet_id(self) -> int:
        used = set(self.state.inflight.values())
        for _ in range(65535):
            self._next_packet_id = self._next_packet_id % 65535 + 1
            if self._next_packet_id not in used:
                return self._next_packet_id
        raise ProtocolViolation("no free packet id: 65,535 deliveries unacknowledged")

    def on_puback(self, conn: MqttConnection, packet_id: int) -> None:
        seq = next((s for s, p in self.state.inflight.items() if p == packet_id), None)
        if seq is None:
            log.debug("%s: PUBACK %d matches no delivery", self.principal.name, packet_id)
            return
        del self.state.inflight[seq]
        self.hub.c2d.complete(self.principal.device_id, seq)

    # ---- SUBSCRIBE ------------------------------------------------------------------------------

    async def on_subscribe(self, conn: MqttConnection, packet_id: int, topics: list[tuple[str, int]]) -> None:
        subs, granted = grant(self.state.subscriptions, topics, allowed_filters(*self.principal.key))
        if self._c2d_qos(subs) is not None and self._c2d_qos(self.state.subscriptions) is None:
            # Only messages enqueued from now on are delivered to this subscription.
            self.state.c2d_after = self.hub.c2d.last_seq
        self.state.subscriptions = subs
        self.hub.session_states.save(self.key, self.state)
        log.info("%s subscribed to %s", self.principal.name, ", ".join(t for t, _ in topics))
        conn.send(codec.encode_suback(packet_id, granted))
        self.pump_c2d()

    async def on_unsubscribe(self, conn: MqttConnection, packet_id: int, topics: list[str]) -> None:
        for topic in topics:
            self.state.subscriptions.pop(topic, None)
        self.hub.session_states.save(self.key, self.state)
        conn.send(codec.encode_unsuback(packet_id))

    # ---- end ------------------------------------------------------------------------------------

    def on_closed(self, conn: MqttConnection, graceful: bool, reason: str) -> None:
        if self._c2d_timer is not None:
            self._c2d_timer.cancel()
        self.hub.session_closed(self)
        log.info("%s disconnected: %s", self.principal.name, reason)
        if self.will is not None and not graceful and not self.kicked:
            log.info("%s: publishing its will message", self.principal.name)
            fut = self.hub.store.append_telemetry(self.will)
            fut.add_done_callback(_log_will_failure)


def _log_will_failure(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("will not stored: %s", fut.exception())


def telemetry_bag(p: Principal, topic: str) -> list[tuple[str, str | None]]:
    """Check a telemetry topic against the identity that sent it; its decoded property bag."""
    parsed = parse_telemetry_topic(topic)
    if parsed is None:
        raise ProtocolViolation(f"PUBLISH to {topic!r}, which is not an IoT Hub topic")
    if parsed.device_id != p.device_id or parsed.module_id != p.module_id:
        raise ProtocolViolation(f"PUBLISH to {topic!r}, a topic of another identity than {p.name}")
    return decode_property_bag(parsed.bag)


def telemetry_from(p: Principal, topic: str, body: bytes, retain: bool, now: dt.datetime | None = None) -> Telemetry:
    """Check a telemetry topic against the identity that sent it and build the message,
    enqueued `now`."""
    return build_telemetry(
        device_id=p.device_id,
        module_id=p.module_id,
        bag=telemetry_bag(p, topic),
        body=body,
        retain=retain,
        auth=p.auth,
        generation_id=p.generation_id,
        model_id=p.model_id,
        now=now,
    )


def _param(query: str, name: str) -> str | None:
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if key == name and sep:
            return value
    return None


def _rid(topic: str) -> str:
    _, _, query = topic.partition("?")
    return _param(query, "$rid") or ""
