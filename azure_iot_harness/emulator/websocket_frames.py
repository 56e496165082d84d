"""Binary WebSocket frames out of a connection's writes, for MQTT and AMQP on the HTTPS port.

A connection writes synchronously, while an ASGI app sends frames by awaiting `send`: one task
per WebSocket takes the writes from a queue and sends them in order, then the close frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Send = Callable[[dict], Awaitable[None]]

FINISH_TIMEOUT = 5.0  # seconds the frames still queued get to go out when the connection ends


class FrameSender:
    def __init__(self, send: Send) -> None:
        self._send = send
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._pump())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._queue.put_nowait(bytes(data))

    def queued(self) -> int:
        """Writes not yet handed to the WebSocket."""
        return self._queue.qsize()

    def close(self) -> None:
        """No frames after what is queued; the close frame follows them."""
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)

    async def finish(self) -> None:
        """Close, and wait (at most FINISH_TIMEOUT) for what is queued and the close frame to go."""
        self.close()
        if self._task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), FINISH_TIMEOUT)
        except TimeoutError:
            self._task.cancel()

    async def _pump(self) -> None:
        while (data := await self._queue.get()) is not None:
            try:
                await self._send({"type": "websocket.send", "bytes": data})
            except Exception:  # the peer is gone; the reading side notices too
                return
        try:
            await self._send({"type": "websocket.close", "code": 1000})
        except Exception:
            pass
