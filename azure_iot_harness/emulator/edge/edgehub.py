"""edgeHub's MQTT side: who may connect through the gateway, for how long, and what the hub
sends them.

Leaf devices in the edge device's scope and the edge device's modules connect with their own
IoT Hub credentials. The edge keeps each connection's credentials and checks them again on every
registry change that concerns it (the child, the edge device or the edge's modules) and when a
SAS token's `se` passes: a child that is deleted, disabled, moved out of the edge's scope or
whose token expired is disconnected at once and nothing it sends afterwards is taken. edgeHub
does the same from its scope-identities cache, which it refreshes from the hub (hourly by
default, and when its own hub connection comes back) and re-checks connections every five
minutes; the emulator shares the hub's registry, so it sees a change at the moment it is made.

What the hub sends on a child's link is passed to the child: method requests and desired
updates while it is connected (desired ones also keep the twin cache current), C2D messages
held until the child acknowledges them, which is when the edge acknowledges them to the hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ConnackCode, ConnectRefused
from ..clock import Clock
from ..hub.auth import Principal, authenticate
from ..hub.registry import Key, Registry
from ..mqtt.codec import Connect, Publish
from ..mqtt.connection import MqttConnection
from ..protocol.chains import Trust
from ..protocol.topics import HubUsername
from .counters import EdgeCounters
from .queue import EdgeQueues
from .session import EdgeSession
from .tasks import Tasks
from .twins import EdgeTwins
from .upstream import Upstream, client_id_of

if TYPE_CHECKING:
    from .routing import Router

log = logging.getLogger("azure_iot_harness.edge")


@dataclass(frozen=True)
class Credentials:
    """What a child's CONNECT proved its identity with, checked again when the registry changes."""

    username: HubUsername
    client_id: str
    password: str | None
    peer_chain: tuple[bytes, ...]  # the certificates the child sent, leaf first


@dataclass
class HeldC2D:
    """A cloud-to-device message from a child's link, until the child acknowledges it."""

    publish: Publish
    sent: bool = False  # handed to a connection of the child at least once


@dataclass
class _Held:
    messages: dict[int, HeldC2D] = field(default_factory=dict)  # link packet id -> message


class EdgeHub:
    def __init__(
        self,
        *,
        edge_device_id: str,
        edge_host: str,
        hub_host: str,
        registry: Registry,
        policies: Any,
        trust: Callable[[], Trust],
        queues: EdgeQueues,
        upstream: Upstream,
        twins: EdgeTwins,
        router: Router,
        counters: EdgeCounters,
        clock: Clock,
    ) -> None:
        self.edge_device_id = edge_device_id
        self.edge_host = edge_host
        self.hub_host = hub_host
        self.registry = registry
        self.policies = policies
        self.trust = trust
        self.queues = queues
        self.upstream = upstream
        self.twins = twins
        self.router = router
        self.counters = counters
        self.clock = clock
        self.sessions: dict[Key, EdgeSession] = {}
        self._c2d: dict[Key, _Held] = {}
        self.tasks = Tasks()
        queues.on_enqueued(self._enqueued)
        upstream.on_message = self._from_upstream
        upstream.on_link_up = self._link_up
        registry.on_change(self._identity_changed)

    async def stop(self) -> None:
        """Stop listening to the registry (the edge stops; the registry lives on)."""
        self.registry.off_change(self._identity_changed)
        for session in list(self.sessions.values()):
            session.cancel_expiry()
        await self.tasks.stop()

    # ---- CONNECT --------------------------------------------------------------------------------

    async def connect(self, conn: MqttConnection, connect: Connect, username: Any) -> tuple[EdgeSession, bool]:
        if not isinstance(username, HubUsername):
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, "edgeHub serves IoT Hub identities, not DPS registrations")
        if not username.api_version:
            raise ConnectRefused(
                ConnackCode.NOT_AUTHORIZED, f"username {connect.username!r} has no api-version, which edgeHub requires"
            )
        credentials = Credentials(username, connect.client_id, connect.password, conn.peer_chain)
        principal = self._authenticate(credentials)
        if principal.model_id:  # the hub learns it when the child's upstream link connects
            self.upstream.model_ids[principal.name] = principal.model_id
        session = EdgeSession(self, principal, conn, credentials)
        previous = self.sessions.get(principal.key)
        if previous is not None:
            previous.cancel_expiry()
            previous.conn.close("replaced by a new connection of the same identity", graceful=True)
        self.sessions[principal.key] = session
        session.arm_expiry()
        log.info("%s connected through the edge from %s", principal.name, conn.peer)
        return session, False

    def _authenticate(self, credentials: Credentials) -> Principal:
        principal = authenticate(
            username=credentials.username,
            client_id=credentials.client_id,
            password=credentials.password,
            peer_chain=credentials.peer_chain,
            registry=self.registry,
            hub_host=self.hub_host,
            policies=self.policies,
            trust=self.trust(),
            audience_hosts=[self.edge_host],
            now=self.clock.now(),
        )
        if principal.module_id is not None and principal.auth.type != "sas":
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, f"{principal.name}: edgeHub does not accept X.509 for modules")
        if principal.module_id is None and principal.device_id == self.edge_device_id:
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, "the edge device itself does not connect through its own edgeHub")
        problem = self.scope_problem(principal.device_id, principal.module_id)
        if problem is not None:
            raise ConnectRefused(ConnackCode.NOT_AUTHORIZED, problem)
        return principal

    def scope_problem(self, device_id: str, module_id: str | None) -> str | None:
        """Why an identity is not the edge's to serve (None: it is): modules of the edge device,
        and devices whose parentScopes hold the edge device's scope."""
        name = client_id_of(device_id, module_id)
        if module_id is not None:
            return None if device_id == self.edge_device_id else f"{name} is not a module of the edge device {self.edge_device_id}"
        edge = self.registry.get(self.edge_device_id) or {}
        leaf = self.registry.get(device_id) or {}
        if edge.get("deviceScope") not in (leaf.get("parentScopes") or []):
            return f"{name} is not in the scope of the edge device {self.edge_device_id}"
        return None

    def device_problem(self, client_id: str) -> str | None:
        """What the registry says is wrong with a sender, as the edge sees it (None: nothing)."""
        device_id, _, module_id = client_id.partition("/")
        doc = self.registry.get(device_id, module_id or None)
        device = self.registry.get(device_id)
        if doc is None or device is None:
            return f"{client_id} is not registered"
        if device.get("status", "enabled") != "enabled":
            return f"{device_id} is disabled"
        return self.scope_problem(device_id, module_id or None)

    # ---- who stays connected ---------------------------------------------------------------------

    def _identity_changed(self, key: Key, doc: dict | None) -> None:
        """Check again every connection the change may concern; close those that fail."""
        for session in list(self.sessions.values()):
            if key[0] not in (session.principal.device_id, self.edge_device_id):
                continue
            try:
                self._authenticate(session.credentials)
            except ConnectRefused as exc:
                self.revoke(session, exc.reason)
        if doc is None:
            self._c2d.pop(key, None)
            self.tasks.spawn(self.twins.forget(key))

    def revoke(self, session: EdgeSession, reason: str) -> None:
        """Disconnect a child whose credentials no longer hold; its link goes too."""
        if session.revoked is not None:
            return
        session.revoked = reason
        log.warning("%s: disconnected from the edge, its credentials no longer hold: %s", session.client_id, reason)
        session.conn.close(f"credentials no longer valid: {reason}")
        if self.sessions.get(session.principal.key) is not session:
            return  # already replaced by a newer connection, whose link stays
        self.session_closed(session)  # at once, not when the TLS close completes
        self._c2d.pop(session.principal.key, None)
        self.tasks.spawn(self.upstream.drop(session.client_id))

    def session_closed(self, session: EdgeSession) -> None:
        if self.sessions.get(session.principal.key) is session:
            del self.sessions[session.principal.key]
            self.upstream.release(session.client_id)

    # ---- messages for the children --------------------------------------------------------------

    def _enqueued(self, endpoint: str) -> None:
        for session in list(self.sessions.values()):
            if session.principal.module_id and endpoint.startswith(f"/modules/{session.principal.module_id}/inputs/"):
                session.pump_inputs()

    def _from_upstream(self, client_id: str, pub: Publish) -> None:
        device_id, _, module_id = client_id.partition("/")
        key: Key = (device_id, module_id or None)
        session = self.sessions.get(key)
        topic = pub.topic
        if topic.startswith("$iothub/twin/res/"):
            if not self.twins.answer(topic, pub.payload):
                log.debug("%s: twin response %s matches no request of the edge's", client_id, topic)
            return
        if topic.startswith("$iothub/twin/PATCH/properties/desired/"):
            self.twins.desired_changed(key, pub.payload, _version(topic))
        elif topic.startswith(f"devices/{device_id}/messages/devicebound"):
            self._hold_c2d(key, client_id, pub)
            return
        if session is None:
            log.info("%s: message from the hub dropped, the child is not connected: %s", client_id, topic)
            return
        session.forward(pub)

    def _hold_c2d(self, key: Key, client_id: str, pub: Publish) -> None:
        if pub.qos == 0 or pub.packet_id is None:
            session = self.sessions.get(key)
            if session is not None:
                session.deliver_c2d(None, HeldC2D(pub))
            return
        held = self._c2d.setdefault(key, _Held()).messages
        entry = held.get(pub.packet_id)
        if entry is None:
            entry = held[pub.packet_id] = HeldC2D(pub)
        else:
            entry.publish = pub  # the hub delivered it again
        session = self.sessions.get(key)
        if session is not None:
            session.deliver_c2d(pub.packet_id, entry)
        else:
            log.info("%s: C2D message held until the child connects and acknowledges it", client_id)

    def held_c2d(self, key: Key) -> dict[int, HeldC2D]:
        held = self._c2d.get(key)
        return dict(held.messages) if held is not None else {}

    def c2d_acknowledged(self, key: Key, link_packet_id: int) -> None:
        """The child acknowledged a C2D message: complete it at the hub."""
        held = self._c2d.get(key)
        if held is not None:
            held.messages.pop(link_packet_id, None)
        if not self.upstream.ack(client_id_of(*key), link_packet_id):
            log.info("%s: C2D acknowledged by the child, but its link is gone; the hub delivers it again", client_id_of(*key))

    def _link_up(self, client_id: str) -> None:
        device_id, _, module_id = client_id.partition("/")
        key: Key = (device_id, module_id or None)
        session = self.sessions.get(key)
        self.twins.link_up(key, session.send_desired if session is not None and session.wants_desired else None)

    def status(self) -> dict:
        return {
            "clients": sorted(s.client_id for s in self.sessions.values()),
            "c2dAwaitingChildAck": {client_id_of(*k): len(h.messages) for k, h in self._c2d.items() if h.messages},
        }


def _version(topic: str) -> int | None:
    _, _, query = topic.partition("?")
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "$version" and value.isdigit():
            return int(value)
    return None
