"""hypercorn's connections and their TLS client certificates, which it does not hand to the app.

hypercorn 0.18 reads a connection's TLS object only for ALPN (asyncio/tcp_server.py): the ASGI
scope has the peer's address but no certificate. Each connection is served by a task running
`worker_serve.<locals>._server_callback(reader, writer)`, whose writer knows the TLS object and
the peer address, so a request's certificate is found through the scope's `client` and `server`
addresses. This reads hypercorn's internals, which is why hypercorn is pinned;
tests/emulator/test_tls_peers.py fails when an upgrade changes them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

_CALLBACK = "worker_serve.<locals>._server_callback"


def connection_writers(port: int) -> Iterator[asyncio.StreamWriter]:
    """The stream writers of hypercorn's open connections to the local `port`."""
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        if getattr(coro, "__qualname__", "") != _CALLBACK:
            continue
        frame = getattr(coro, "cr_frame", None)
        writer = frame.f_locals.get("writer") if frame is not None else None
        sockname = writer.get_extra_info("sockname") if writer is not None else None
        if sockname and sockname[1] == port:
            yield writer


def client_certificate(scope: dict[str, Any]) -> bytes | None:
    """The DER certificate the TLS client of this request presented, or None.

    The server context must request one (mqtt.tls.request_any_client_certificate); it is not
    verified there: callers check it against what it claims to be.
    """
    client, server = scope.get("client"), scope.get("server")
    if not client or not server:
        return None
    for writer in connection_writers(server[1]):
        peer = writer.get_extra_info("peername")
        if peer and (peer[0], peer[1]) == (client[0], client[1]):
            ssl_object = writer.get_extra_info("ssl_object")
            return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return None
