"""`AmqpService`: the AMQP 1.0 service side of the hub — listeners, the Event Hubs-compatible
endpoint over the telemetry log, C2D sending and feedback — built like the other services:
`AmqpService(settings, store, clock, …)`, `await start()`, `await stop()`."""

from __future__ import annotations

import logging
from typing import Any

from ...config import AmqpSettings, Policy
from ..clock import Clock
from ..hub.c2d import C2DQueues
from ..hub.feedback import Feedback
from ..store import Store
from ..tls import ServerCertificate, ServerContext, TlsConnection, TlsListener
from .c2d import C2DSender
from .connection import AmqpConnection
from .consumer_groups import ConsumerGroups
from .driver import serve_stream, serve_websocket
from .eventhub import EventHubEndpoint
from .eventlog import EventLog
from .feedback import FeedbackSender

log = logging.getLogger("azure_iot_harness.amqp")


class AmqpService:
    def __init__(
        self,
        settings: AmqpSettings,
        store: Store,
        clock: Clock,
        *,
        c2d: C2DQueues,
        feedback: Feedback,
        consumer_groups: ConsumerGroups,
        tls: ServerContext,
        server_certificate: ServerCertificate | None = None,
        websocket_port: Any = None,
    ) -> None:
        """`websocket_port()`: the HTTPS port, where a redirect of a WebSocket client points."""
        self.settings = settings
        self.clock = clock
        self.policies: tuple[Policy, ...] = settings.policies
        self.events = EventLog(store, clock, partitions=settings.partitions, retention_seconds=settings.retention_seconds)
        self.consumer_groups = consumer_groups
        self.eventhub = EventHubEndpoint(self.events, clock, name=settings.eventhub_name, consumer_groups=consumer_groups, created_ms=int(clock.time() * 1000))
        self.c2d_sender = C2DSender(c2d, clock)
        self.feedback = FeedbackSender(feedback, settings.host.split(".", 1)[0])
        self.connections: set[AmqpConnection] = set()
        self._websocket_port = websocket_port
        self.tls_listener = TlsListener(
            name="AMQPS", host=settings.bind, port=settings.port, context=tls, handler=self._serve_tls, server_certificate=server_certificate
        )
        self.plain_listener = TlsListener(name="AMQP", host=settings.bind, port=settings.plain_port, context=None, handler=self._serve_plain)

    async def start(self) -> None:
        await self.events.load()
        await self.consumer_groups.load()
        await self.tls_listener.start()
        try:
            await self.plain_listener.start()
        except BaseException:
            await self.tls_listener.stop()
            raise

    async def stop(self) -> None:
        for listener in (self.tls_listener, self.plain_listener):
            await listener.stop()
        self.events.close()

    @property
    def port(self) -> int:
        return self.tls_listener.port

    @property
    def plain_port(self) -> int:
        return self.plain_listener.port

    async def _serve_tls(self, conn: TlsConnection) -> None:
        await serve_stream(self, conn, self.port)

    async def _serve_plain(self, conn: TlsConnection) -> None:
        await serve_stream(self, conn, self.plain_port)

    async def serve_websocket(self, scope: dict, receive: Any, send: Any) -> None:
        port = self._websocket_port() if self._websocket_port is not None else self.port
        await serve_websocket(self, scope, receive, send, port)
