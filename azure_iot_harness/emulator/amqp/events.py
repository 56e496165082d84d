"""Telemetry as the Event Hubs-compatible endpoint delivers it: one AMQP message per event.

Body: one data section. Properties: message id, correlation id, user id, content type and
encoding (and expiry/creation time when the device set them). Application properties: the
device's own. Message annotations: `x-opt-sequence-number` (long), `x-opt-offset` (string),
`x-opt-enqueued-time` (timestamp) and IoT Hub's system properties
(`iothub-connection-device-id`, `-module-id`, `-auth-method`, `-auth-generation-id`,
`iothub-enqueuedtime` as a timestamp, `iothub-message-source`, `dt-dataschema`, `dt-subject`, …).
"""

from __future__ import annotations

from proton import Message, symbol, timestamp

from .eventlog import Event, PartitionInfo, iso_to_ms

# System properties carried in the message's properties section, not its annotations.
_PROPERTY_FIELDS = {
    "message-id": "id",
    "correlation-id": "correlation_id",
    "content-type": "content_type",
    "content-encoding": "content_encoding",
}
_TIMESTAMPS = {"iothub-enqueuedtime", "absolute-expiry-time", "creation-time"}


def event_message(event: Event, runtime: PartitionInfo | None = None, now_ms: int = 0) -> bytes:
    """The encoded AMQP message; with `runtime`, the delivery annotations a receiver that tracks
    the last enqueued event reads (added always: proton cannot tell whether it asked)."""
    t = event.telemetry
    msg = Message(body=t.body)
    msg.inferred = True  # bytes as a data section, not an amqp-value
    annotations: dict = {
        symbol("x-opt-sequence-number"): event.sequence,
        symbol("x-opt-offset"): str(event.offset),
        symbol("x-opt-enqueued-time"): timestamp(t.enqueued_ms or iso_to_ms(t.enqueued_time)),
    }
    for name, value in t.system_properties.items():
        field = _PROPERTY_FIELDS.get(name)
        if field is not None:
            setattr(msg, field, symbol(value) if field.startswith("content_") else value)
        elif name == "user-id":
            msg.user_id = value.encode()
        elif name == "absolute-expiry-time":
            msg.expiry_time = iso_to_ms(value) / 1000
        elif name == "creation-time":
            msg.creation_time = iso_to_ms(value) / 1000
        elif name in _TIMESTAMPS:
            annotations[symbol(name)] = timestamp(iso_to_ms(value))
        else:
            annotations[symbol(name)] = value
    msg.annotations = annotations
    if t.properties:
        msg.properties = dict(t.properties)
    if runtime is not None:
        msg.instructions = {
            symbol("last_enqueued_sequence_number"): runtime.last_sequence,
            symbol("last_enqueued_offset"): str(runtime.last_offset),
            symbol("last_enqueued_time_utc"): timestamp(runtime.last_enqueued_ms),
            symbol("runtime_info_retrieval_time_utc"): timestamp(now_ms),
        }
    return bytes(msg.encode())
