"""edgeHub's MQTT side: who may connect through the gateway, and what their packets do.

Leaf devices in the edge device's scope and the edge device's modules connect with their own
IoT Hub credentials. Telemetry is routed, committed to the edge's queues, then acknowledged;
twin requests, method answers and subscriptions are relayed over the child's upstream link.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...errors import ConnackCode, ConnectRefused, ProtocolViolation
from ..clock import Clock
from ..hub.auth import Principal, authenticate
from ..hub.registry import Registry
from ..hub.session import telemetry_from
from ..mqtt import codec
from ..mqtt.client import ConnectionLost
from ..mqtt.codec import Connect, Publish
from ..mqtt.connection import MqttConnection
from ..protocol.messages import Telemetry
from ..protocol.topics import HubUsername, c2d_filters, encode_property_bag
from .queue import EdgeQueues, Queued
from .upstream import Upstream

if TYPE_CHECKING:
    from .routing import Router

log = logging.getLogger("azure_iot_harness.edge")

RELAYED_FILTERS = ("$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#")


class EdgeHub:
    def __init__(
        self,
        *,
        edge_device_id: str,
        edge_host: str,
        hub_host: str,
        registry: Registry,
        policies: Any,
        trusted_cas: Any,
        queues: EdgeQueues,
        upstream: Upstream,
        router: Router,
        clock: Clock,
    ) -> None:
        self.edge_device_id = edge_device_id
        self.edge_host = edge_host
        self.hub_host = hub_host
        self.registry = registry
        self.policies = policies
        self.trusted_cas = trusted_cas
        self.queues = queues
        self.upstream = upstream
        self.router = router
        self.clock = clock
        self.sessions: dict[tuple[str, str | None], EdgeSession] = {}
        queues.on_enqueued(self._enqueued)
        upstream.on_message = self._from_upstream

    # ---- CONNECT --------------------------------------------------------------------------------

    async def connect(self, conn: MqttConnection, connect: Connect, username: Any) -> tuple[EdgeSession, bool]:
        if not isinstance(username, HubUsername):
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, "edgeHub serves IoT Hub identities, not DPS registrations")
        if not username.api_version:
            raise ConnectRefused(
                ConnackCode.NOT_AUTHORIZED, f"username {connect.username!r} has no api-version, which edgeHub requires"
            )
        principal = authenticate(
            username=username,
            client_id=connect.client_id,
            password=connect.password,
            peer_cert=conn.peer_cert,
            registry=self.registry,
            hub_host=self.hub_host,
            policies=self.policies,
            trusted_cas=self.trusted_cas,
            audience_hosts=[self.edge_host],
            now=self.clock.now(),
        )
        self._check_scope(principal)
        if principal.model_id:  # the hub learns it when the child's upstream link connects
            self.upstream.model_ids[principal.name] = principal.model_id
        session = EdgeSession(self, principal, conn)
        previous = self.sessions.get(principal.key)
        if previous is not None:
            previous.conn.close("replaced by a new connection of the same identity", graceful=True)
        self.sessions[principal.key] = session
        log.info("%s connected through the edge from %s", principal.name, conn.peer)
        return session, False

    def _check_scope(self, principal: Principal) -> None:
        if principal.module_id is not None:
            if principal.device_id != self.edge_device_id:
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{principal.name} is not a module of the edge device {self.edge_device_id}")
            if principal.auth.type != "sas":
                raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{principal.name}: edgeHub does not accept X.509 for modules")
            return
        if principal.device_id == self.edge_device_id:
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, "the edge device itself does not connect through its own edgeHub")
        edge = self.registry.get(self.edge_device_id) or {}
        leaf = self.registry.get(principal.device_id) or {}
        if edge.get("deviceScope") not in (leaf.get("parentScopes") or []):
            raise ConnectRefused(
                ConnackCode.NOT_AUTHORIZED, f"{principal.name} is not in the scope of the edge device {self.edge_device_id}"
            )

    # ---- plumbing -------------------------------------------------------------------------------

    def session_closed(self, session: EdgeSession) -> None:
        if self.sessions.get(session.principal.key) is session:
            del self.sessions[session.principal.key]

    def _enqueued(self, endpoint: str) -> None:
        for session in list(self.sessions.values()):
            if session.principal.module_id and endpoint.startswith(f"/modules/{session.principal.module_id}/inputs/"):
                session.pump_inputs()

    def _from_upstream(self, client_id: str, pub: Publish) -> None:
        device_id, _, module_id = client_id.partition("/")
        session = self.sessions.get((device_id, module_id or None))
        if session is None:
            log.info("%s: message from the hub dropped, the child is not connected: %s", client_id, pub.topic)
            return
        session.conn.send(codec.encode_publish(pub.topic, pub.payload, 0, None))


class EdgeSession:
    def __init__(self, edge: EdgeHub, principal: Principal, conn: MqttConnection) -> None:
        self.edge = edge
        self.principal = principal
        self.conn = conn
        self.subscriptions: dict[str, int] = {}
        self._inflight: dict[int, Queued] = {}
        self._next_id = 0
        d, m = principal.device_id, principal.module_id
        self.input_filters = {f"devices/{d}/modules/{m}/inputs/#", f"devices/{d}/modules/{m}/#"} if m else set()

    @property
    def client_id(self) -> str:
        return self.principal.name

    # ---- from the child -------------------------------------------------------------------------

    async def on_publish(self, conn: MqttConnection, pub: Publish) -> None:
        if pub.qos == 2:
            raise ProtocolViolation(f"PUBLISH with QoS 2 to {pub.topic!r}")
        if pub.topic.startswith("$iothub/"):
            if not pub.topic.startswith(("$iothub/twin/GET/", "$iothub/twin/PATCH/properties/reported/", "$iothub/methods/res/")):
                raise ProtocolViolation(f"PUBLISH to {pub.topic!r}, which is not an IoT Hub topic")
            await self._relay_up(pub)
            if pub.qos == 1 and pub.packet_id is not None:
                conn.send(codec.encode_puback(pub.packet_id))
            return
        telemetry = self._telemetry(pub)
        targets = self.edge.router.targets(telemetry)
        if not targets:
            log.info("%s: no route takes this message; it is dropped", self.client_id)
            if pub.qos == 1 and pub.packet_id is not None:
                conn.send(codec.encode_puback(pub.packet_id))
            return
        fut = self.edge.queues.enqueue(telemetry, targets)
        if pub.qos == 1 and pub.packet_id is not None:
            conn.ack_when_done(fut, pub.packet_id)

    def _telemetry(self, pub: Publish) -> Telemetry:
        return telemetry_from(self.principal, pub.topic, pub.payload, pub.retain, self.edge.clock.now())

    async def _relay_up(self, pub: Publish) -> None:
        try:
            client = await self.edge.upstream.client(self.principal.device_id, self.principal.module_id)
            client.publish(pub.topic, pub.payload, 0)
        except (OSError, ConnectionLost, ConnectRefused) as exc:
            log.warning("%s: %s not relayed, the hub is unreachable: %s", self.client_id, pub.topic, exc)

    # ---- subscriptions --------------------------------------------------------------------------

    async def on_subscribe(self, conn: MqttConnection, packet_id: int, topics: list[tuple[str, int]]) -> None:
        relay = []
        for topic, qos in topics:
            self.subscriptions[topic] = min(qos, 1)
            if topic in RELAYED_FILTERS or topic in c2d_filters(self.principal.device_id):
                relay.append((topic, min(qos, 1)))
            elif topic not in self.input_filters:
                log.info("%s: subscription to %r ignored (edgeHub does not know it)", self.client_id, topic)
        conn.send(codec.encode_suback(packet_id, [min(q, 1) for _, q in topics]))
        if relay:
            await self.edge.upstream.relay(self.principal.device_id, self.principal.module_id, relay)
        self.pump_inputs()

    async def on_unsubscribe(self, conn: MqttConnection, packet_id: int, topics: list[str]) -> None:
        for topic in topics:
            self.subscriptions.pop(topic, None)
        conn.send(codec.encode_unsuback(packet_id))

    # ---- module inputs --------------------------------------------------------------------------

    def pump_inputs(self) -> None:
        """Deliver what waits for this module's inputs (BrokeredEndpoint routes)."""
        m = self.principal.module_id
        if m is None or not self.input_filters & set(self.subscriptions) or self.conn.closed.is_set():
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
            if self._next_id not in self._inflight:
                return self._next_id
        raise ProtocolViolation("no free packet id")

    def on_puback(self, conn: MqttConnection, packet_id: int) -> None:
        item = self._inflight.pop(packet_id, None)
        if item is not None:
            item.in_flight = False
            self.edge.queues.done(item)

    def on_closed(self, conn: MqttConnection, graceful: bool, reason: str) -> None:
        for item in self._inflight.values():
            item.in_flight = False  # delivered again when the module returns
        self._inflight.clear()
        self.edge.session_closed(self)
        log.info("%s disconnected from the edge: %s", self.client_id, reason)


def _input_topic(principal: Principal, input_name: str, t: Telemetry) -> str:
    """`devices/{edge}/modules/{m}/inputs/{input}/{bag}`, with the sender in `$.cdid`/`$.cmid`."""
    from .upstream import _WIRE_KEYS

    props: list[tuple[str, str | None]] = [("$.cdid", t.device_id)]
    if t.module_id:
        props.append(("$.cmid", t.module_id))
    props += [(_WIRE_KEYS[k], v) for k, v in t.system_properties.items() if k in _WIRE_KEYS and k != "output-name"]
    props += list(t.properties.items())
    base = f"devices/{principal.device_id}/modules/{principal.module_id}/inputs/{input_name}/"
    return base + encode_property_bag(props)

