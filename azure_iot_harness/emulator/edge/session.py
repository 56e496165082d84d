"""One child's connection to the edge: what it may publish and subscribe to, and what that does.

Telemetry is routed, committed to the edge's queues, then acknowledged (or, with the store at its
limit, not taken: the connection closes without a PUBACK). Twin requests are served by the
edge's twins; method answers go up the child's link; subscriptions follow IoT Hub's rules and
those the hub serves are made on the link too. Module inputs and held C2D messages are delivered
at QoS 1 and done when the child acknowledges them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from ...errors import ConnectRefused, ProtocolViolation
from ..faults import azure as azure_faults
from ..hub.auth import Principal
from ..hub.session import telemetry_from
from ..mqtt import codec
from ..mqtt.client import ConnectionLost
from ..mqtt.codec import Publish
from ..mqtt.connection import MqttConnection
from ..protocol import subscriptions
from ..protocol import twin as tw
from ..protocol.messages import Telemetry
from ..protocol.subscriptions import DESIRED_UPDATES, METHOD_REQUESTS, TWIN_RESPONSES
from ..protocol.topics import c2d_filters, encode_property_bag
from .queue import Queued, StoreFull
from .tasks import Tasks
from .upstream import _WIRE_KEYS

if TYPE_CHECKING:
    from .edgehub import Credentials, EdgeHub, HeldC2D

log = logging.getLogger("azure_iot_harness.edge")


class EdgeSession:
    def __init__(self, edge: EdgeHub, principal: Principal, conn: MqttConnection, credentials: Credentials) -> None:
        self.edge = edge
        self.principal = principal
        self.conn = conn
        self.credentials = credentials
        self.revoked: str | None = None  # why its credentials stopped holding
        self.subscriptions: dict[str, int] = {}
        d, m = principal.device_id, principal.module_id
        self._allowed = subscriptions.allowed_filters(d, m)
        self.input_filters = subscriptions.module_input_filters(d, m) if m else frozenset()
        self.c2d_filters = c2d_filters(d) if m is None else frozenset()
        self._inflight: dict[int, Queued] = {}  # packet id -> module input message
        self._c2d_inflight: dict[int, int] = {}  # packet id -> the message's packet id on the link
        self._next_id = 0
        self._expiry: asyncio.TimerHandle | None = None
        self._tasks = Tasks()  # twin GETs waiting for the hub

    @property
    def client_id(self) -> str:
        return self.principal.name

    @property
    def wants_desired(self) -> bool:
        return DESIRED_UPDATES in self.subscriptions

    # ---- token expiry ---------------------------------------------------------------------------

    def arm_expiry(self) -> None:
        expiry = self.principal.token_expiry
        if expiry is not None:
            delay = max(0.0, expiry - self.edge.clock.time())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expired(self) -> None:
        self.edge.revoke(self, f"its SAS token expired (se={self.principal.token_expiry})")

    def _still_valid(self) -> bool:
        """False (and the connection closed) once the credentials stopped holding."""
        if self.revoked is not None or self.conn.closed:
            return False
        expiry = self.principal.token_expiry
        if expiry is not None and expiry <= self.edge.clock.time():
            self._expired()
            return False
        return True

    # ---- from the child -------------------------------------------------------------------------

    async def on_publish(self, conn: MqttConnection, pub: Publish) -> None:
        if not self._still_valid():
            log.warning("%s: PUBLISH to %s refused, its credentials no longer hold", self.client_id, pub.topic)
            return
        if pub.qos == 2:
            raise ProtocolViolation(f"PUBLISH with QoS 2 to {pub.topic!r}")
        if pub.topic.startswith("$iothub/"):
            await self._on_iothub_topic(pub)
            if pub.qos == 1 and pub.packet_id is not None:
                conn.send(codec.encode_puback(pub.packet_id))
            return
        telemetry = self._telemetry(pub)
        if azure_faults.FAULT_TYPE in telemetry.properties:
            azure_faults.apply(conn.faults, conn, telemetry.properties)
        targets = self.edge.router.targets(telemetry)
        if not targets:
            log.info("%s: no route takes this message; it is dropped", self.client_id)
            self.edge.counters.dropped("no_route", self.client_id)
            if pub.qos == 1 and pub.packet_id is not None:
                conn.send(codec.encode_puback(pub.packet_id))
            return
        try:
            fut = self.edge.queues.enqueue(telemetry, targets)
        except StoreFull as exc:
            self.edge.counters.refused("store_full", self.client_id)
            log.warning("%s: message not taken, closing the connection without PUBACK: %s", self.client_id, exc)
            conn.close("the edge's store is full")
            return
        if pub.qos == 1 and pub.packet_id is not None:
            conn.ack_when_done(fut, pub.packet_id)

    def _telemetry(self, pub: Publish) -> Telemetry:
        return telemetry_from(self.principal, pub.topic, pub.payload, pub.retain, self.edge.clock.now())

    async def _on_iothub_topic(self, pub: Publish) -> None:
        topic, key = pub.topic, self.principal.key
        twins = self.edge.twins
        if topic.startswith("$iothub/twin/GET/"):
            rid = _rid(topic)

            async def get() -> None:
                status, body = await twins.get(key)
                self._twin_response(status, rid, body)

            self._tasks.spawn(get())
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            status, body, version = await twins.patch_reported(key, pub.payload)
            self._twin_response(status, _rid(topic), body, version)
        elif topic.startswith("$iothub/methods/res/"):
            await self._relay_up(pub)
        else:
            raise ProtocolViolation(f"PUBLISH to {topic!r}, which is not an IoT Hub topic")

    def _twin_response(self, status: int, rid: str, body: bytes, version: int | None = None) -> None:
        if TWIN_RESPONSES not in self.subscriptions:
            log.info("%s: twin response %d dropped: not subscribed to %s", self.client_id, status, TWIN_RESPONSES)
            return
        topic = f"$iothub/twin/res/{status}/?$rid={rid}" + (f"&$version={version}" if version is not None else "")
        self.conn.send(codec.encode_publish(topic, body, 0, None))

    async def _relay_up(self, pub: Publish) -> None:
        try:
            client = await self.edge.upstream.client(self.principal.device_id, self.principal.module_id)
            client.publish(pub.topic, pub.payload, 0)
        except (TimeoutError, OSError, ConnectionLost, ConnectRefused) as exc:
            log.warning("%s: %s not relayed, the hub is unreachable: %s", self.client_id, pub.topic, exc)

    # ---- subscriptions --------------------------------------------------------------------------

    async def on_subscribe(self, conn: MqttConnection, packet_id: int, topics: list[tuple[str, int]]) -> None:
        subs, granted = subscriptions.grant(self.subscriptions, topics, self._allowed)
        newly_desired = DESIRED_UPDATES in subs and not self.wants_desired
        self.subscriptions = subs
        conn.send(codec.encode_suback(packet_id, granted))
        relayed = {DESIRED_UPDATES, METHOD_REQUESTS} | self.c2d_filters
        relay = [(t, subs[t]) for t, _ in topics if t in relayed]
        if relay:
            await self.edge.upstream.relay(self.principal.device_id, self.principal.module_id, relay)
        if newly_desired:
            self.edge.twins.ensure_cached(self.principal.key)
        self.pump_inputs()
        if self._c2d_qos() is not None:
            for link_packet_id, held in self.edge.held_c2d(self.principal.key).items():
                self.deliver_c2d(link_packet_id, held)

    async def on_unsubscribe(self, conn: MqttConnection, packet_id: int, topics: list[str]) -> None:
        for topic in topics:
            self.subscriptions.pop(topic, None)
        conn.send(codec.encode_unsuback(packet_id))

    # ---- to the child ---------------------------------------------------------------------------

    def forward(self, pub: Publish) -> None:
        """A method request or desired update from the hub (QoS 0, as the hub sends them)."""
        self.conn.send(codec.encode_publish(pub.topic, pub.payload, 0, None))

    def send_desired(self, patch: dict, version: int) -> None:
        if self.wants_desired and not self.conn.closed:
            body = json.dumps(tw.desired_notification(patch, version)).encode()
            self.conn.send(codec.encode_publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}", body, 0, None))

    def deliver_c2d(self, link_packet_id: int | None, held: HeldC2D) -> None:
        """Pass a C2D message on at the subscription's QoS; at QoS 1 it is completed at the hub
        when the child acknowledges it."""
        qos = self._c2d_qos()
        if qos is None or self.conn.closed:
            return  # waits for the child's subscription
        if link_packet_id is not None and link_packet_id in self._c2d_inflight.values():
            return  # on its way: the child acknowledges this one
        pub = held.publish
        if qos == 0 or link_packet_id is None:
            self.conn.send(codec.encode_publish(pub.topic, pub.payload, 0, None))
            if link_packet_id is not None:  # at most once: sent is done
                self.edge.c2d_acknowledged(self.principal.key, link_packet_id)
            return
        packet_id = self._packet_id()
        self._c2d_inflight[packet_id] = link_packet_id
        self.conn.send(codec.encode_publish(pub.topic, pub.payload, 1, packet_id, dup=held.sent))
        held.sent = True

    def _c2d_qos(self) -> int | None:
        """The QoS of the child's C2D subscription (the higher one if it holds both forms)."""
        granted = [q for t, q in self.subscriptions.items() if t in self.c2d_filters]
        return max(granted) if granted else None

    def pump_inputs(self) -> None:
        """Deliver what waits for this module's inputs (BrokeredEndpoint routes)."""
        m = self.principal.module_id
        if m is None or not self.input_filters & set(self.subscriptions) or self.conn.closed:
            return
        for endpoint in self.edge.queues.endpoints(f"/modules/{m}/inputs/"):
            while True:
                item = self.edge.queues.next(endpoint)
                if item is None:
                    break
                item.in_flight = True
                packet_id = self._packet_id()
                self._inflight[packet_id] = item
                input_name = endpoint.rsplit("/", 1)[1]
                self.conn.send(codec.encode_publish(_input_topic(self.principal, input_name, item.telemetry), item.telemetry.body, 1, packet_id))

    def _packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight and self._next_id not in self._c2d_inflight:
                return self._next_id
        raise ProtocolViolation("no free packet id")

    def on_puback(self, conn: MqttConnection, packet_id: int) -> None:
        item = self._inflight.pop(packet_id, None)
        if item is not None:
            item.in_flight = False
            self.edge.queues.done(item)
            return
        link_packet_id = self._c2d_inflight.pop(packet_id, None)
        if link_packet_id is not None:
            self.edge.c2d_acknowledged(self.principal.key, link_packet_id)

    def on_closed(self, conn: MqttConnection, graceful: bool, reason: str) -> None:
        self.cancel_expiry()
        for item in self._inflight.values():
            item.in_flight = False  # delivered again when the module returns
        self._inflight.clear()
        self._c2d_inflight.clear()  # held at the edge: delivered again when the child returns
        self._tasks.cancel()
        self.edge.session_closed(self)
        log.info("%s disconnected from the edge: %s", self.client_id, reason)


def _input_topic(principal: Principal, input_name: str, t: Telemetry) -> str:
    """`devices/{edge}/modules/{m}/inputs/{input}/{bag}`, with the sender in `$.cdid`/`$.cmid`."""
    props: list[tuple[str, str | None]] = [("$.cdid", t.device_id)]
    if t.module_id:
        props.append(("$.cmid", t.module_id))
    props += [(_WIRE_KEYS[k], v) for k, v in t.system_properties.items() if k in _WIRE_KEYS and k != "output-name"]
    props += list(t.properties.items())
    base = f"devices/{principal.device_id}/modules/{principal.module_id}/inputs/{input_name}/"
    return base + encode_property_bag(props)


def _rid(topic: str) -> str:
    _, _, query = topic.partition("?")
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if name == "$rid" and sep:
            return value
    return ""
