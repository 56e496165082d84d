"""Cloud-to-device sending over AMQP: `/messages/devicebound`, into the hub's durable C2D queues.

The service SDKs address each message with `to` = `/devices/{id}/messages/devicebound` and may
set message id, correlation id, user id, content type and encoding, `absolute-expiry-time`, the
`iothub-ack` application property and their own properties. The delivery is accepted once the
message is committed; otherwise rejected with IoT Hub's AMQP error condition.
"""

from __future__ import annotations

import logging

from proton import Condition, Delivery, Message

from ...errors import ServiceError
from ..clock import Clock
from ..hub.c2d import C2DQueues
from .addresses import device_of
from .connection import ARGUMENT_ERROR, NOT_FOUND, AmqpConnection

log = logging.getLogger("azure_iot_harness.amqp")

# IoT Hub error name → AMQP error condition (as IoT Hub's AMQP error mapping answers them).
CONDITIONS = {
    "DeviceNotFound": NOT_FOUND,
    "DeviceMaximumQueueDepthExceeded": "amqp:resource-limit-exceeded",
    "RequestEntityTooLarge": "amqp:link:message-size-exceeded",
    "ArgumentInvalid": ARGUMENT_ERROR,
    "ThrottlingException": "com.microsoft:device-container-throttled",
}


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class C2DSender:
    def __init__(self, queues: C2DQueues, clock: Clock) -> None:
        self.queues = queues
        self.clock = clock

    async def receive(self, conn: AmqpConnection, dlv: Delivery, msg: Message) -> None:
        try:
            await self._enqueue(msg)
        except ServiceError as exc:
            condition = CONDITIONS.get(exc.error_code, "amqp:internal-error")
            log.info("AMQP %s: C2D message refused: %s %s", conn.peer, condition, exc.message)
            dlv.local.condition = Condition(condition, exc.message)
            dlv.update(Delivery.REJECTED)
        else:
            dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        conn.flush()

    async def _enqueue(self, msg: Message) -> None:
        device_id = device_of(_text(msg.address))
        if device_id is None:
            raise ServiceError(400, "ArgumentInvalid", f"'to' must be /devices/{{id}}/messages/devicebound, not {msg.address!r}")
        props = dict(msg.properties or {})
        ack = props.pop("iothub-ack", None)
        ttl = None
        if msg.expiry_time:
            ttl = max(1.0, float(msg.expiry_time) - self.clock.time())
        body = msg.body
        if isinstance(body, str):
            body = body.encode()
        elif body is None:
            body = b""
        elif not isinstance(body, bytes | bytearray | memoryview):
            raise ServiceError(400, "ArgumentInvalid", "the message body must be a data section")
        await self.queues.send(
            device_id,
            bytes(body),
            properties={str(k): _text(v) for k, v in props.items()},
            message_id=_text(msg.id),
            correlation_id=_text(msg.correlation_id),
            user_id=_text(msg.user_id) or None,
            content_type=_text(msg.content_type) or None,
            content_encoding=_text(msg.content_encoding) or None,
            ack=_text(ack),
            ttl=min(ttl, 48 * 3600) if ttl is not None else None,
        )
