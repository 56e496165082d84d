"""The AMQP 1.0 service side of IoT Hub, on python-qpid-proton's engine driven from asyncio.

- `service.AmqpService`: the listeners (AMQPS through the TLS adapter, plain TCP for
  `UseDevelopmentEmulator=true`, WebSocket on the HTTPS port) and what they serve.
- Sans-IO parts: `sasl` (the SASL front end proton's server lacks), `framing` (padding of short
  performatives), `engine` (proton's connection and transport fed with bytes), `addresses`
  (routing on normalized link addresses), `claims` (CBS tokens checked as the REST API checks
  them), `partitioning` (device → partition), `positions` (receivers' starting filters).
- Services: `eventlog` and `eventhub` (the Event Hubs-compatible endpoint over the durable
  telemetry log, `$management`, epochs), `events` (an event as an AMQP message), `c2d`
  (`/messages/devicebound`), `feedback` (`/messages/serviceBound/feedback`), `connection`
  (one connection: links, CBS, redirect), `driver` (bytes in and out of sockets and WebSockets).
"""

from .service import AmqpService

__all__ = ["AmqpService"]
