"""A DPS registration connection over MQTT: subscribe, register, poll; answers on `res/{status}`.

Requests are answered on their own task, so that the connection keeps reading (PINGREQ) while a
registration is assigned. Answers are delivered only to a client subscribed to
`$dps/registrations/res/#`, as MQTT wants; DPS sessions are always clean.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from ...errors import ProtocolViolation, ProvisioningError
from ..mqtt import codec
from ..mqtt.codec import Publish
from ..protocol import dps as p

if TYPE_CHECKING:
    from ..mqtt.connection import MqttConnection
    from .dps import Dps

log = logging.getLogger("azure_iot_harness.dps")


class DpsSession:
    def __init__(self, dps: Dps, conn: MqttConnection, scope: str, registration_id: str, password: str | None) -> None:
        self.dps = dps
        self.conn = conn
        self.scope = scope
        self.registration_id = registration_id
        self._password = password
        self.granted_qos: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self._next_id = 0

    async def on_publish(self, conn: MqttConnection, pub: Publish) -> None:
        if pub.qos == 2:
            raise ProtocolViolation(f"PUBLISH with QoS 2 to {pub.topic!r}: DPS supports QoS 0 and 1 only")
        request = p.parse_request_topic(pub.topic)
        if pub.qos == 1:
            assert pub.packet_id is not None
            conn.send(codec.encode_puback(pub.packet_id))
        task = asyncio.create_task(self._answer(request, pub.payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: p.Request, body: bytes) -> None:
        try:
            if request.kind == "register":
                # The enrollment may have changed since CONNECT: attest again.
                att = self.dps.authenticate(
                    self.scope, self.registration_id, password=self._password, certificate=self.conn.peer_cert
                )
                answer = await self.dps.register(att, body, trace=self.conn.trace_record)
            else:
                assert request.operation_id is not None
                answer = self.dps.poll(self.registration_id, request.operation_id)
        except ProvisioningError as exc:
            log.info("registration %s: %s answered %d: %s", self.registration_id, request.kind, exc.status, exc.message)
            answer = p.Answer.error(exc, now=self.dps.clock.now())
        except Exception:
            log.exception("registration %s: %s failed", self.registration_id, request.kind)
            answer = p.Answer.error(p.dps_error("ServerError", "internal error of the emulator"), now=self.dps.clock.now())
        self._deliver(p.response_topic(answer.status, request.rid, answer.retry_after), json.dumps(answer.body).encode())

    def _deliver(self, topic: str, body: bytes) -> None:
        if self.granted_qos is None:
            log.warning("registration %s: not subscribed to %s, answer %s dropped", self.registration_id, p.SUBSCRIBE_FILTER, topic)
            return
        packet_id = None
        if self.granted_qos:
            self._next_id = self._next_id % 65535 + 1
            packet_id = self._next_id
        self.conn.send(codec.encode_publish(topic, body, self.granted_qos, packet_id))

    async def on_subscribe(self, conn: MqttConnection, packet_id: int, topics: list[tuple[str, int]]) -> None:
        granted = []
        for topic, qos in topics:
            if topic != p.SUBSCRIBE_FILTER:
                raise ProtocolViolation(f"SUBSCRIBE to {topic!r}: a DPS connection may subscribe to {p.SUBSCRIBE_FILTER} only")
            self.granted_qos = min(qos, 1)
            granted.append(self.granted_qos)
        conn.send(codec.encode_suback(packet_id, granted))

    async def on_unsubscribe(self, conn: MqttConnection, packet_id: int, topics: list[str]) -> None:
        if p.SUBSCRIBE_FILTER in topics:
            self.granted_qos = None
        conn.send(codec.encode_unsuback(packet_id))

    def on_puback(self, conn: MqttConnection, packet_id: int) -> None:
        pass  # answers are not redelivered: every DPS session is clean

    def on_closed(self, conn: MqttConnection, graceful: bool, reason: str) -> None:
        # Requests still being answered run to their end: cancelling one halfway through an
        # assignment would leave the registry and the store disagreeing.
        log.info("registration %s disconnected: %s", self.registration_id, reason)
        if self.dps.connections.get(self.registration_id) is conn:
            del self.dps.connections[self.registration_id]
