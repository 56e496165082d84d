"""proton's AMQP engine on the server side, fed with bytes. Sans-IO.

`Engine` owns one proton `Connection` bound to a server `Transport` without proton's SASL layer
(the `sasl` front end has run before); bytes go in with `receive`, the events proton raises go
to a handler, and what proton wants to send comes out of `output`, cut into padded frames
(`framing`). Nothing here touches a socket or the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from proton import Collector, Connection, Event, Transport

from .framing import OutputFramer

EventHandler = Callable[[Event], None]


class Engine:
    def __init__(self, handler: EventHandler, *, max_frame_size: int = 1024 * 1024) -> None:
        self.connection = Connection()
        self.transport = Transport(Transport.SERVER)
        self.transport.max_frame_size = max_frame_size
        self.transport.bind(self.connection)
        self._collector = Collector()
        self.connection.collect(self._collector)
        self._handler = handler
        self._framer = OutputFramer()

    def receive(self, data: bytes) -> None:
        """Give proton the peer's bytes (as much as it takes at a time), then handle events."""
        view = memoryview(data)
        while view:
            capacity = self.transport.capacity()
            if capacity <= 0:  # the transport's input side is closed (error or close frame)
                break
            chunk, view = view[:capacity], view[capacity:]
            self.transport.push(bytes(chunk))
            self.process()
        self.process()

    def receive_eof(self) -> None:
        self.transport.close_tail()
        self.process()

    def process(self) -> None:
        collector = self._collector
        while True:
            event = collector.peek()
            if event is None:
                return
            try:
                self._handler(event)
            finally:
                collector.pop()

    def output(self) -> bytes:
        """Every byte proton has to send now, whole frames padded."""
        chunks: list[bytes] = []
        transport = self.transport
        while True:
            pending = transport.pending()
            if pending <= 0:
                break
            data = transport.peek(pending)
            transport.pop(len(data))
            chunks.append(bytes(data))
        return self._framer.feed(b"".join(chunks)) if chunks else b""

    def tick(self, now: float) -> float:
        """Let proton send keep-alive frames and notice a silent peer; the next deadline (0: none)."""
        return float(self.transport.tick(now))

    @property
    def finished(self) -> bool:
        """Both directions of the transport are done: nothing more will be read or sent."""
        return bool(self.transport.closed)
