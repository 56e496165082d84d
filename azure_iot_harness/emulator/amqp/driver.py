"""The network side of AMQP connections: TLS/TCP streams and WebSocket frames, fed to the SASL
front end and then to an `AmqpConnection`. The only module of the package that awaits I/O."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...errors import ServiceError
from ..tls import TlsConnection
from ..websocket_frames import FrameSender
from .claims import Claim, plain_claim
from .connection import AmqpConnection
from .sasl import PlainRefused, SaslError, SaslFrontEnd, SaslResult

if TYPE_CHECKING:
    from .service import AmqpService

log = logging.getLogger("azure_iot_harness.amqp")

READ_SIZE = 64 * 1024
SASL_TIMEOUT = 10.0  # seconds a client has for the SASL exchange, like a CONNECT timeout
WEBSOCKET_SUBPROTOCOL = "AMQPWSB10"


class _StreamSink:
    def __init__(self, conn: TlsConnection) -> None:
        self._conn = conn

    def write(self, data: bytes) -> None:
        if not self._conn.closed:
            self._conn.writer.write(data)

    def close(self) -> None:
        self._conn.close()


def _front_end(service: AmqpService) -> SaslFrontEnd:
    """A SASL front end that judges PLAIN's credentials as the REST API judges a token."""

    def judge(username: str, password: str) -> Claim:
        try:
            return plain_claim(username, password, hub_host=service.settings.host, policies=service.policies, now=service.clock.time())
        except ServiceError as exc:
            raise PlainRefused(exc.message) from None

    return SaslFrontEnd(judge)


def _claims(sasl: SaslResult) -> list[Claim]:
    """What SASL PLAIN's credentials allow (nothing for the other mechanisms: CBS follows)."""
    return [sasl.grant] if isinstance(sasl.grant, Claim) else []


async def serve_stream(service: AmqpService, conn: TlsConnection, port: int) -> None:
    """One AMQP connection over a TLS (5671) or plain TCP connection."""
    peer = conn.peer_name
    sink = _StreamSink(conn)
    front = _front_end(service)
    sasl = await _run_sasl(front, lambda: conn.reader.read(READ_SIZE), sink.write, peer)
    if sasl is None:
        return
    amqp = AmqpConnection(service, sink, peer=peer, port=port, claims=_claims(sasl))
    service.connections.add(amqp)
    try:
        amqp.data_received(front.remainder)
        while not amqp.engine.finished:
            data = await conn.reader.read(READ_SIZE)
            if not data:
                amqp.eof_received()
                break
            amqp.data_received(data)
            await conn.writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        amqp.connection_lost()
        service.connections.discard(amqp)


async def _run_sasl(front: SaslFrontEnd, read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], None], peer: str) -> SaslResult | None:
    try:
        async with asyncio.timeout(SASL_TIMEOUT):
            while front.result is None:
                data = await read()
                if not data:
                    return None
                front.feed(data)
                out = front.output()
                if out:
                    write(out)
    except SaslError as exc:
        log.info("AMQP %s: %s", peer, exc)
        if exc.answer:
            write(exc.answer)
        return None
    except TimeoutError:
        log.info("AMQP %s: no AMQP header or SASL exchange within %.0f s", peer, SASL_TIMEOUT)
        return None
    return front.result


async def serve_websocket(service: AmqpService, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]], port: int) -> None:
    """One AMQP connection over a WebSocket (subprotocol AMQPWSB10) on the HTTPS port."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": WEBSOCKET_SUBPROTOCOL})
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]} (WebSocket)" if client else "WebSocket peer"
    sink = FrameSender(send)  # AmqpConnection's sink: write, close

    async def read() -> bytes:
        while True:
            event = await receive()
            if event["type"] == "websocket.receive":
                data = event.get("bytes") or (event.get("text") or "").encode()
                if data:
                    return bytes(data)
            elif event["type"] == "websocket.disconnect":
                return b""

    front = _front_end(service)
    sasl = await _run_sasl(front, read, sink.write, peer)
    if sasl is None:
        await sink.finish()
        return
    amqp = AmqpConnection(service, sink, peer=peer, port=port, claims=_claims(sasl))
    service.connections.add(amqp)
    try:
        amqp.data_received(front.remainder)
        while not amqp.engine.finished:
            data = await read()
            if not data:
                amqp.eof_received()
                break
            amqp.data_received(data)
    finally:
        amqp.connection_lost()
        service.connections.discard(amqp)
        await sink.finish()
