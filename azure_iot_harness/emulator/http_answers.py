"""What every HTTPS answer gets, whatever route made it: the request body read before an
answer goes out. ASGI middleware around the one app (web.build_app). (The standard reason
phrase on the status line is added by the TLS adapter, `tls.asgi`, which owns the connection.)

Reading the body first: an answer sent while the client is still sending (a 401, 404 or 413
decided from the headers) makes hypercorn close the connection, the client's next bytes
arrive after the TLS close_notify, and hypercorn and asyncio log that as ERROR tracebacks — in
a pytest plugin user's run they read as failures. Drained, the connection stays usable and
nothing is logged. However large the body, it is read (and dropped): leaving any of it unread
brings the tracebacks back. One INFO line notes a body larger than LARGE_BODY.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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
            await send(message)

        await self.app(scope, tracking_receive, answering_send)


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
