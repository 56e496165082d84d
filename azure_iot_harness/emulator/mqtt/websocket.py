"""MQTT over WebSocket at `/$iothub/websocket` on the HTTPS port (subprotocol `mqtt`).

The ASGI app receives WebSocket frames; these adapters turn them into the byte stream the MQTT
connection layer reads, and its writes into binary frames, so the same session code serves
devices on 443 (the SDKs' `websockets=True`) as on 8883.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from amqtt.adapters import WriterAdapter

from ..faults import FaultBook
from ..tls import client_chain
from ..trace import Trace
from ..websocket_frames import FrameSender, Send
from .connection import MqttConnection, Router

log = logging.getLogger("azure_iot_harness.mqtt")

PATH = "/$iothub/websocket"
CLOSE_TIMEOUT = 5.0  # how long the peer has to answer our close frame before we stop waiting
Receive = Callable[[], Awaitable[dict]]


class _FrameWriter(WriterAdapter):
    """The MQTT connection's writer on a WebSocket: its packets go out as binary frames, in order."""

    def __init__(self, send: Send, peer: tuple[str, int] | None) -> None:
        self._frames = FrameSender(send)
        self._peer = peer

    def write(self, data: bytes) -> None:
        self._frames.write(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def buffered(self) -> int:
        """Frames queued and not yet handed to the WebSocket."""
        return self._frames.queued()

    def write_eof(self) -> None:
        """No more frames after what is queued; the close frame follows them."""
        self._frames.close()

    def get_peer_info(self) -> tuple[str, int] | None:
        return self._peer

    def get_ssl_info(self) -> ssl.SSLObject | None:
        return None

    async def close(self) -> None:
        """Send what is queued (a CONNACK refusal), then the close frame."""
        await self._frames.finish()


async def serve(
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    router: Router,
    *,
    max_idle: float,
    connect_timeout: float,
    trace: Trace | None = None,
    faults: FaultBook | None = None,
) -> None:
    """One WebSocket connection carrying one MQTT connection (traced as listener "websocket")."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "mqtt" not in scope.get("subprotocols", []):
        log.info("WebSocket at %s without the 'mqtt' subprotocol refused", PATH)
        await send({"type": "websocket.close", "code": 1002})
        return
    await send({"type": "websocket.accept", "subprotocol": "mqtt"})
    stream = asyncio.StreamReader()
    client = scope.get("client")
    writer = _FrameWriter(send, tuple(client) if client else None)

    async def feed() -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.receive":
                data = event.get("bytes") or (event.get("text") or "").encode()
                stream.feed_data(data)
            elif event["type"] == "websocket.disconnect":
                break
        stream.feed_eof()

    feeder = asyncio.create_task(feed())
    peer = f"{client[0]}:{client[1]}" if client else "WebSocket peer"
    conn = MqttConnection(
        stream,
        writer,
        close_transport=lambda: writer.write_eof(),
        peer=f"{client[0]}:{client[1]} (WebSocket)" if client else "WebSocket peer",
        peer_chain=client_chain(scope),  # what the client sent in the HTTPS connection's handshake
        router=router,
        max_idle=max_idle,
        connect_timeout=connect_timeout,
        trace=trace.open("websocket", peer) if trace is not None else None,
        faults=faults,
    )
    try:
        await conn.serve()
    finally:
        await writer.close()
        # Return only once the peer has answered our close frame (or is gone): hypercorn ends the
        # TLS connection when this app returns, and a close frame that arrives after our TLS
        # close_notify makes hypercorn's connection task fail with an ssl.SSLError
        # (APPLICATION_DATA_AFTER_CLOSE_NOTIFY) that asyncio logs at ERROR.
        await asyncio.wait({feeder}, timeout=CLOSE_TIMEOUT)
        feeder.cancel()
