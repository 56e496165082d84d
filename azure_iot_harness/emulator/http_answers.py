"""What every HTTPS answer gets, whatever route made it: the request body read before an
answer goes out, and the standard reason phrase on the status line. ASGI middleware around
the one app (web.build_app).

Reading the body first: an answer sent while the client is still sending (a 401, 404 or 413
decided from the headers) makes hypercorn close the connection, the client's next bytes
arrive after the TLS close_notify, and hypercorn and asyncio log that as ERROR tracebacks — in
a pytest plugin user's run they read as failures. Drained, the connection stays usable and
nothing is logged. However large the body, it is read (and dropped): leaving any of it unread
brings the tracebacks back. One INFO line notes a body larger than LARGE_BODY.

Reason phrases: h11 writes none and ASGI cannot pass one, so the phrase is added to the
response head on its way to the connection's stream writer, found the way tls_peers finds it
(hypercorn internals: tests/emulator/test_tls_peers.py fails when they change). Only that
connection's writer is wrapped; nothing is patched process-wide.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Awaitable, Callable, MutableMapping

from .protocol.http_status import with_reason_phrase
from .tls_peers import connection_writers

log = logging.getLogger("azure_iot_harness.https")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# An unread body larger than this is worth a log line (IoT Hub takes 256 KB at most).
LARGE_BODY = 1024 * 1024


class HttpAnswers:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (client, server) address -> the writer whose writes get reason phrases. An address
        # pair names one open connection at a time; a closed writer's entry is replaced.
        self._writers: dict[tuple, weakref.ref[asyncio.StreamWriter]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_left = True

        async def tracking_receive() -> Message:
            nonlocal body_left
            message = await receive()
            body_left = message["type"] == "http.request" and bool(message.get("more_body"))
            return message

        async def answering_send(message: Message) -> None:
            nonlocal body_left
            if message["type"] == "http.response.start":
                if body_left:
                    await _drain(scope, receive)
                    body_left = False
                self._add_reason_phrases(scope)
            await send(message)

        await self.app(scope, tracking_receive, answering_send)

    def _add_reason_phrases(self, scope: Scope) -> None:
        client, server = scope.get("client"), scope.get("server")
        if not client or not server:
            return
        key = (tuple(client), tuple(server))
        ref = self._writers.get(key)
        writer = ref() if ref is not None else None
        if writer is not None and not writer.is_closing():
            return  # this connection's writer already adds them
        writer = next(
            (w for w in connection_writers(server[1]) if tuple(w.get_extra_info("peername") or ())[:2] == key[0]), None
        )
        if writer is None:
            return
        write = writer.write
        setattr(writer, "write", lambda data: write(with_reason_phrase(data)))
        if len(self._writers) > 1000:  # forget closed connections now and then
            self._writers = {k: r for k, r in self._writers.items() if (w := r()) is not None and not w.is_closing()}
        self._writers[key] = weakref.ref(writer)


async def _drain(scope: Scope, receive: Receive) -> None:
    read = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        read += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if read > LARGE_BODY:
        log.info("%s %s: %d bytes of request body read and dropped before the answer", scope.get("method"), scope.get("path"), read)
